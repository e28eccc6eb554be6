"""`gensdk verify` and `gensdk provenance keygen`, in process. Until pyproject.toml declares the `provenance`
entry point, the tests add it to what gensdk discovers."""

from __future__ import annotations

import json
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any, Callable

import pytest

import gensdk_provenance.plugin
from gensdk.cli import main as cli_main
from gensdk.testing import MockFamily, make_engine
from gensdk_provenance.manifest import SIDECAR_SUFFIX, write_outputs

ENTRY_POINT = EntryPoint(name="provenance", value="gensdk_provenance.plugin", group="gensdk")


@pytest.fixture
def gensdk(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    import gensdk.plugins

    monkeypatch.setenv("GENSDK_LOAD_PLUGINS", "provenance")
    if "provenance" not in entry_points(group="gensdk").names:
        monkeypatch.setattr(gensdk.plugins, "entry_points", lambda group: [*entry_points(group=group), ENTRY_POINT])

    def run(*args: Any) -> tuple[int, str, str]:
        code = cli_main.run([str(a) for a in args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


@pytest.fixture
def written(tmp_path: Path, signing_key: Path) -> tuple[Path, Path]:
    config = {"policies": [{"id": "provenance", "options": {"key_file": str(signing_key)}}]}
    audit = tmp_path / "audit.db"
    with make_engine(tmp_path, plugins=[gensdk_provenance.plugin], config=config) as engine:
        result = engine.generate(MockFamily().enqueue("a generated text"), n=1, seed=1)
    return write_outputs(result.outputs, tmp_path / "out")[0], audit


def test_verify_readable_and_json(gensdk: Any, written: tuple[Path, Path], public_key: Path) -> None:
    path, audit = written
    code, stdout, _ = gensdk("verify", path, "--public-key", public_key, "--audit", audit)
    assert code == 0 and "VERIFIED" in stdout and "mock model" in stdout and "CC" not in stdout
    code, stdout, _ = gensdk("verify", path, "--json")
    row = json.loads(stdout)[0]
    assert code == 0 and row["ok"] and not row["key_pinned"] and row["manifest"]["audit"]["seq"] == 1


def test_verify_failures(gensdk: Any, written: tuple[Path, Path], tmp_path: Path) -> None:
    path, _ = written
    sidecar = path.with_name(path.name + SIDECAR_SUFFIX)
    manifest = json.loads(sidecar.read_text())
    manifest["verdict"] = "block"
    sidecar.write_text(json.dumps(manifest))
    code, stdout, _ = gensdk("verify", path)
    assert code == 1 and "TAMPERED" in stdout
    bare = tmp_path / "bare.txt"
    bare.write_text("no manifest here")
    code, stdout, _ = gensdk("verify", bare)
    assert code == 1 and "NO MANIFEST" in stdout
    code, _, stderr = gensdk("verify", tmp_path / "missing.txt")
    assert code == 2 and "does not exist" in stderr


def test_keygen(gensdk: Any, tmp_path: Path) -> None:
    code, stdout, _ = gensdk("provenance", "keygen", tmp_path / "sign.pem")
    assert code == 0 and (tmp_path / "sign.pem.pub").is_file() and (tmp_path / "sign.pem").stat().st_mode & 0o777 == 0o600
    code, _, stderr = gensdk("provenance", "keygen", tmp_path / "sign.pem")
    assert code == 2 and "never overwritten" in stderr
