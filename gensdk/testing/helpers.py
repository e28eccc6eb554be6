"""Engines for tests: only the plugins you name, an audit trail in a temporary directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from gensdk.engine import Engine
from gensdk.policy import Policy


def make_engine(
    tmp_path: Path,
    *,
    policies: Sequence[Policy] = (),
    plugins: Iterable[Any] = (),
    config: Mapping[str, Any] | None = None,
    audit_name: str = "audit.db",
) -> Engine:
    from gensdk.testing import plugin as testing_plugin

    return Engine(
        config,
        plugins=[testing_plugin, *plugins],
        load_entrypoints=False,
        policies=policies,
        audit=str(tmp_path / audit_name),
    )
