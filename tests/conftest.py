"""Shared fixtures. Tests never pick up whatever happens to be installed unless they say so: engines are
built with `gensdk.testing.make_engine` (only the plugins passed in) and the audit trail lives in tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test writes to the user's audit trail or inherits plugin switches from the caller's shell."""
    monkeypatch.setenv("GENSDK_AUDIT", str(tmp_path / "default-audit.db"))
    for name in ("GENSDK_LOAD_PLUGINS", "GENSDK_DISABLE_PLUGINS", "GENSDK_TRACE_PLUGINS", "GENSDK_CONFIG"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def adult_sample():
    """2,000 rows of UCI Adult from the copy shipped in gensdk.datasets (no dependence on ../shared)."""
    from gensdk.datasets import load_adult

    return load_adult().sample(2000, random_state=0).reset_index(drop=True)
