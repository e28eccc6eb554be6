"""The `finalize_output` hook: called once after the audit commit, with the released outputs and the committed
record, on the policies that took part only; a failure there is a PluginError, never a silent release."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import pytest

from gensdk import Policy, Verdict, hookimpl
from gensdk.errors import PluginError
from gensdk.testing import KeywordPolicy, MockFamily, make_engine


class Finalizer(Policy):
    id = "finalizer"
    version = "1"

    def __init__(self, *args: Any, fail: bool = False, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.calls: list[tuple[list[str], dict[str, Any]]] = []
        self.fail = fail

    @hookimpl
    def finalize_output(self, outputs: list[Any], record: dict[str, Any]) -> None:
        if self.fail:
            raise RuntimeError("signing service down")
        self.calls.append(([o.text for o in outputs], record))
        for output in outputs:
            output.metadata["finalized_with"] = record["hash"]


def test_called_after_commit_with_released_outputs_and_the_record(tmp_path: Path) -> None:
    finalizer = Finalizer()
    with make_engine(tmp_path, policies=[KeywordPolicy({"words": ["bad"]}), finalizer]) as engine:
        result = engine.generate(MockFamily().enqueue("good", "bad", "fine"), n=3, seed=1)
        stored = next(iter(engine.audit.records()))
    assert len(finalizer.calls) == 1
    texts, record = finalizer.calls[0]
    assert texts == ["good", "fine"]  # the blocked output is not finalised
    assert record["hash"] == result.audit_hash == stored["hash"] and record["seq"] == stored["seq"]
    assert record["record_id"] == result.audit_record_id and record["body"]["outputs"] == stored["body"]["outputs"]
    assert all(o.metadata["finalized_with"] == result.audit_hash for o in result.outputs)


def test_not_called_for_policies_that_did_not_take_part(tmp_path: Path) -> None:
    off = Finalizer(settings={"mandatory": False})
    with make_engine(tmp_path, policies=[off]) as engine:
        engine.generate(MockFamily(), n=1, seed=1, disable_policies=["finalizer"])
    assert off.calls == []

    class TableOnly(Finalizer):
        id = "table-only"
        modalities = frozenset({"table"})

    table_only = TableOnly()
    with make_engine(tmp_path, policies=[table_only], audit_name="b.db") as engine:
        engine.generate(MockFamily(), n=1, seed=1)
    assert table_only.calls == []


def test_not_called_when_nothing_is_released(tmp_path: Path) -> None:
    finalizer = Finalizer()
    with make_engine(tmp_path, policies=[KeywordPolicy({"words": ["bad"]}), finalizer]) as engine:
        result = engine.generate(MockFamily().enqueue("bad"), n=1, seed=1)
    assert result.verdict is Verdict.BLOCK and finalizer.calls == []


def test_a_failure_withholds_the_outputs_after_the_commit(tmp_path: Path) -> None:
    with make_engine(tmp_path, policies=[Finalizer(fail=True)]) as engine:
        with pytest.raises(PluginError, match="finalize_output failed after audit record .* signing service down"):
            engine.generate(MockFamily().enqueue("text"), n=1, seed=1)
        assert len(list(engine.audit.records())) == 1  # the record was committed before the hook ran


def test_distribution_plugins_may_implement_it(tmp_path: Path) -> None:
    seen: list[str] = []
    plugin = types.ModuleType("finalize_plugin")

    @hookimpl
    def finalize_output(outputs: list[Any], record: dict[str, Any]) -> None:
        seen.append(record["record_id"])

    plugin.finalize_output = finalize_output  # type: ignore[attr-defined]
    with make_engine(tmp_path, plugins=[plugin]) as engine:
        result = engine.generate(MockFamily(), n=1, seed=1)
    assert seen == [result.audit_record_id]
