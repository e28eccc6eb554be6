"""Malformed input from a caller never escapes as anything but a gensdk error.

Arbitrary requests (random keys, wrong types, out-of-range numbers, nested junk) and arbitrary configurations
(random top-level keys, random policy entries and options) go to `Engine` and `Engine.generate` with the mock
family. Only `GensdkError` subclasses may come out; whatever does succeed must still keep the engine's
promises (every released output audited, the trail verifies).
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gensdk import Request
from gensdk.errors import GensdkError
from gensdk.request import MAX_OUTPUTS_PER_REQUEST
from gensdk.testing import KeywordPolicy, MockFamily, NoopPolicy, make_engine

FUZZ = settings(max_examples=200, deadline=None, database=None)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
junk = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.text(max_size=8), inner, max_size=3),
    ),
    max_leaves=6,
)


def _cheap(value: Any) -> bool:
    """Keep generation cheap: no value that pydantic would accept as an n above 20 (huge n is tested only above
    the request limit, where it is refused before anything is generated)."""
    if isinstance(value, str):
        try:
            value = int(value.strip().replace("_", ""))
        except ValueError:
            return True
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    return not (isinstance(value, int) and 20 < value <= MAX_OUTPUTS_PER_REQUEST)


counts = st.one_of(
    st.integers(min_value=1, max_value=20),
    st.integers(max_value=0),
    st.integers(min_value=MAX_OUTPUTS_PER_REQUEST + 1),
    st.floats().filter(_cheap),
    st.text(alphabet=st.characters(blacklist_categories=["Nd"]), max_size=6),  # no digits: no "99999"
    st.lists(st.integers(1, 3), max_size=2),
    st.none(),
)
request_fields: dict[str, st.SearchStrategy[Any]] = {
    "n": counts,
    "seed": st.one_of(st.integers(min_value=-5, max_value=2**64), junk),
    "prompts": st.one_of(st.lists(st.text(max_size=20), max_size=3), junk),
    "messages": st.one_of(
        st.lists(st.lists(st.fixed_dictionaries({"role": st.text(max_size=5), "content": st.text(max_size=10)}), max_size=2), max_size=2),
        junk,
    ),
    "conditions": st.one_of(st.just({}), junk),
    "params": st.one_of(st.just({}), junk),
    "request_id": st.one_of(st.text(max_size=250), junk),
    "disable_policies": st.one_of(st.lists(st.sampled_from(["keyword", "noop", "nope", ""]), max_size=3), junk),
}


@st.composite
def requests(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.one_of(scalars, st.lists(junk, max_size=3)))  # not a mapping at all
    known = draw(st.lists(st.sampled_from(sorted(request_fields)), unique=True, max_size=len(request_fields)))
    data: dict[Any, Any] = {key: draw(request_fields[key]) for key in known}
    if draw(st.booleans()):
        data.update(draw(st.dictionaries(st.one_of(st.text(max_size=8), st.integers()), junk, max_size=2)))
    if not _cheap(data.get("n")):  # unknown junk keys can be spelt "n" too
        data["n"] = draw(st.integers(1, 20))
    return data


def _check_result(engine: Any, result: Any) -> None:
    assert len(result.outputs) == sum(v.releases for v in result.output_verdicts)
    assert all(o.metadata["audit_record_id"] == result.audit_record_id for o in result.outputs)


def test_malformed_requests_raise_only_gensdk_errors() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(
            Path(tmp),
            policies=[KeywordPolicy({"words": ["zz"]}, {"mandatory": False}), NoopPolicy()],
        )
        model = MockFamily()
        outcomes = {"ok": 0, "error": 0}

        @FUZZ
        @given(request=requests(), as_kwargs=st.booleans())
        def check(request: Any, as_kwargs: bool) -> None:
            try:
                if as_kwargs and isinstance(request, dict) and all(isinstance(k, str) for k in request):
                    result = engine.generate(model, **request)
                else:
                    result = engine.generate(model, request)
            except GensdkError:
                outcomes["error"] += 1
                return
            outcomes["ok"] += 1
            _check_result(engine, result)

        check()
        report = engine.audit.verify()
        engine.close()
    assert report.ok, report.problem
    assert report.records == outcomes["ok"]
    assert outcomes["ok"] > 0 and outcomes["error"] > 0  # the strategy reaches both sides


def test_request_objects_round_trip_unchanged() -> None:
    @FUZZ
    @given(n=st.integers(1, 50), seed=st.one_of(st.none(), st.integers(0, 2**63 - 1)), prompts=st.one_of(st.none(), st.lists(st.text(max_size=5), max_size=3)))
    def check(n: int, seed: int | None, prompts: list[str] | None) -> None:
        request = Request(n=n, seed=seed, prompts=prompts)
        assert Request.model_validate(request.model_dump()) == request
        assert Request.model_validate(request.model_dump()).digest() == request.digest()

    check()


POLICY_IDS = ["keyword", "noop", "raising", "processor", "recording", "keywrod", "", "no-such-policy"]
option_keys = st.sampled_from(["words", "hook", "message", "marker", "seconds", "wrods"])
policy_entries = st.one_of(
    junk,
    st.fixed_dictionaries(
        {"id": st.one_of(st.sampled_from(POLICY_IDS), junk)},
        optional={
            "on_fail": st.one_of(st.sampled_from(["block", "warn"]), junk),
            "on_error": st.one_of(st.sampled_from(["block", "allow"]), junk),
            "timeout_s": st.one_of(st.none(), st.floats(), st.integers(-3, 10**12), junk),
            "mandatory": st.one_of(st.booleans(), junk),
            "options": st.one_of(st.dictionaries(option_keys, junk, max_size=3), junk),
            "extra": junk,
        },
    ),
)
config_fields: dict[str, st.SearchStrategy[Any]] = {
    "device": st.one_of(st.sampled_from(["auto", "cpu", "cuda:x", "tpu", "cuda:99"]), junk),
    "dtype": st.one_of(st.sampled_from(["auto", "float32", "bfloat16", "float8"]), junk),
    "max_batch_size": st.one_of(st.integers(-2, 50), junk),
    "audit": st.one_of(st.text(max_size=10), junk),
    "audit_options": st.one_of(
        st.dictionaries(st.sampled_from(["synchronous", "busy_timeout", "checkpoint_every", "create", "nope"]), junk, max_size=2),
        junk,
    ),
    "policies": st.one_of(st.lists(policy_entries, max_size=3), junk),
}


@st.composite
def configs(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.one_of(scalars, st.lists(junk, max_size=2)))
    known = draw(st.lists(st.sampled_from(sorted(config_fields)), unique=True, max_size=len(config_fields)))
    data: dict[Any, Any] = {key: draw(config_fields[key]) for key in known}
    if draw(st.integers(0, 4)) == 0:
        data.update(draw(st.dictionaries(st.text(max_size=8), junk, max_size=2)))
    return data


def test_malformed_configurations_raise_only_gensdk_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        monkeypatch.chdir(tmp)  # a junk key_path or audit path can only land in here
        counter = iter(range(10**6))
        outcomes = {"ok": 0, "error": 0}

        @FUZZ
        @given(config=configs())
        def check(config: Any) -> None:
            try:
                engine = make_engine(Path(tmp), config=config, audit_name=f"audit-{next(counter)}.db")
            except GensdkError:
                outcomes["error"] += 1
                return
            try:
                result = engine.generate(MockFamily(), n=3, seed=1)
            except GensdkError:
                outcomes["error"] += 1
                return
            finally:
                engine.close()
            outcomes["ok"] += 1
            _check_result(engine, result)

        check()
    assert outcomes["ok"] > 0 and outcomes["error"] > 0
