"""Registers the test doubles. Pass this module to `Engine(plugins=[...])` or use `make_engine`."""

from __future__ import annotations

from typing import Any

from gensdk._markers import hookimpl


@hookimpl
def register_model_families(register: Any) -> None:
    from gensdk.testing.doubles import MockFamily

    register(MockFamily)


@hookimpl
def register_policies(register: Any) -> None:
    from gensdk.testing import doubles

    for policy in (doubles.NoopPolicy, doubles.RecordingPolicy, doubles.RaisingPolicy, doubles.SlowPolicy,
                   doubles.KeywordPolicy, doubles.ProcessorPolicy):
        register(policy)
