"""Meta-tests that keep the plugin contract honest (after datasette's test_plugin_hooks_have_tests and
test_plugin_hooks_are_documented): every hook is documented under a heading with its exact signature, and every
hook is exercised by at least one test."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from gensdk import hookspecs
from gensdk._markers import PROJECT_NAME

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs" / "plugin_hooks.md"
TESTS = REPO / "tests"


def hook_specs() -> dict[str, object]:
    return {
        name: fn
        for name, fn in vars(hookspecs).items()
        if callable(fn) and getattr(fn, f"{PROJECT_NAME}_spec", None) is not None
    }


def signature_heading(name: str) -> str:
    """`### name(arg1, arg2)`: the parameter names of the spec, in order, without annotations."""
    params = ", ".join(inspect.signature(hook_specs()[name]).parameters)  # type: ignore[arg-type]
    return f"### {name}({params})"


def test_hookspecs_are_found() -> None:
    # Guards the two tests below against passing vacuously.
    assert {"register_model_families", "inspect_output"} <= set(hook_specs())


@pytest.mark.parametrize("name", sorted(hook_specs()))
def test_plugin_hooks_are_documented(name: str) -> None:
    headings = [line.strip() for line in DOCS.read_text(encoding="utf-8").splitlines() if line.startswith("### ")]
    assert signature_heading(name) in headings, f"docs/plugin_hooks.md needs the heading {signature_heading(name)!r}"


def test_documented_hooks_exist() -> None:
    text = DOCS.read_text(encoding="utf-8")
    documented = set(re.findall(r"^### (\w+)\(", text, flags=re.MULTILINE))
    assert documented - set(hook_specs()) == set(), "docs/plugin_hooks.md documents hooks gensdk does not define"


@pytest.mark.parametrize("name", sorted(hook_specs()))
def test_plugin_hooks_have_tests(name: str) -> None:
    this_file = Path(__file__).resolve()
    sources = [p.read_text(encoding="utf-8") for p in TESTS.rglob("test_*.py") if p.resolve() != this_file]
    assert any(re.search(rf"\b{name}\b", src) for src in sources), f"no test under tests/ mentions the hook {name}"
