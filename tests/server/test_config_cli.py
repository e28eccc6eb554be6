"""Configuration and the command line: start-up refuses a bad configuration with one line and exit code 2;
`gensdk serve hash-key` makes keys the server accepts; `gensdk serve CONFIG` serves until SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from gensdk.cli import main as cli_main
from gensdk.errors import ConfigError
from gensdk.server import ServerConfig
from gensdk.server.keys import KeyRing, hash_key, new_key

REPO = Path(__file__).resolve().parents[2]


def _toml(path: Path, models: dict[str, Path], *, extra: str = "", key_hash: str | None = None, model: str = "gmm") -> Path:
    path.write_text(f"""
[server]
host = "127.0.0.1"
port = 0

[engine]
device = "cpu"
audit = "{path.parent / 'audit.db'}"

[models.tables]
path = "{models[model]}"

[[keys]]
name = "ops"
hash = "{key_hash or hash_key(new_key())}"
scopes = ["generate", "audit-read"]
{extra}
""", encoding="utf-8")
    return path


def _cli(capsys, *args):
    code = cli_main.run([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("change, named", [
    ({"models": {}}, "models"),
    ({"keys": [{"name": "a", "hash": "plaintext-key", "scopes": ["generate"]}]}, "keys.0.hash"),
    ({"keys": [{"name": "a", "hash": hash_key(new_key()), "scopes": ["admin"]}]}, "keys.0.scopes.0"),
    ({"limits": {"max_body_bytes": 10}}, "limits.max_body_bytes"),
    ({"server": {"port": 70000}}, "server.port"),
    ({"engine": {"policies": [{"id": "x", "on_fial": "block"}]}}, "engine.policies.0.on_fial"),
    ({"surprise": 1}, "surprise"),
])
def test_invalid_configuration_names_the_key(change, named):
    base = {"models": {"m": {"path": "models/m"}}, "keys": [{"name": "a", "hash": hash_key(new_key()), "scopes": ["generate"]}]}
    with pytest.raises(ConfigError, match=re.escape(named)):
        ServerConfig.parse({**base, **change})


def test_duplicate_keys_are_refused():
    entry = {"name": "a", "hash": hash_key(new_key()), "scopes": ["generate"]}
    with pytest.raises(ConfigError, match="share the name"):
        ServerConfig.parse({"models": {"m": {"path": "m"}}, "keys": [entry, {**entry, "hash": hash_key(new_key())}]})


def test_start_up_errors_are_one_line_and_exit_2(tmp_path, models, capsys):
    missing_model = _toml(tmp_path / "a.toml", {"gmm": tmp_path / "nowhere"})
    bad_toml = tmp_path / "b.toml"
    bad_toml.write_text("[server\n", encoding="utf-8")
    bad_policy = _toml(tmp_path / "c.toml", models, extra='[[engine.policies]]\nid = "no-such-policy"\n')
    for config, needle in ((missing_model, "models.tables"), (bad_toml, "cannot read server configuration"),
                           (bad_policy, "no-such-policy"), (tmp_path / "absent.toml", "does not exist")):
        code, out, err = _cli(capsys, "serve", config)
        assert code == 2, err
        assert needle in err and err.strip().count("\n") == 0 and "Traceback" not in err


def test_a_taken_port_is_a_configuration_error(tmp_path, models, capsys):
    from gensdk.server.app import bind

    with bind("127.0.0.1", 0) as taken:  # bound and listening, like another server
        config = _toml(tmp_path / "s.toml", models)
        code, _, err = _cli(capsys, "serve", config, "--port", taken.getsockname()[1])
    assert code == 2 and "cannot listen on 127.0.0.1" in err


def test_hash_key_prints_a_key_and_an_entry_the_server_accepts(capsys, tmp_path, models):
    code, out, err = _cli(capsys, "serve", "hash-key", "--name", "ci", "--scope", "detect")
    key = err.split("keep it secret): ")[1].strip()
    assert code == 0 and key not in out  # stdout (the entry, for the config file) never holds the key
    config = _toml(tmp_path / "k.toml", models, extra=out.replace("[[keys]]", "[[keys]]", 1))
    ring = KeyRing(ServerConfig.parse(config).keys)
    assert ring.identify(key).name == "ci" and ring.identify(key).scopes == {"detect"}
    assert _cli(capsys, "serve", "check", config)[0] == 0


def test_hash_key_refuses_a_hand_made_key(monkeypatch, capsys):
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO("password123\n"))
    code, _, err = _cli(capsys, "serve", "hash-key", "--stdin")
    assert code == 2 and "not a gensdk API key" in err


def test_gensdk_serve_runs_until_sigterm(tmp_path, models):
    key = new_key()
    config = _toml(tmp_path / "serve.toml", models, key_hash=hash_key(key))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(str(REPO / p) for p in ("plugins", "policies", "."))}
    process = subprocess.Popen([sys.executable, "-m", "gensdk", "serve", str(config)], stderr=subprocess.PIPE,
                               text=True, env=env, cwd=tmp_path)
    try:
        url = _wait_for_url(process)
        headers = {"Authorization": f"Bearer {key}"}
        rows = httpx.post(f"{url}/v1/tables/generate", json={"model": "tables", "n": 3}, headers=headers, timeout=60)
        assert rows.status_code == 200 and len(rows.json()["data"][0]["rows"]) == 3
        assert httpx.post(f"{url}/v1/audit/verify", headers=headers, timeout=60).json()["records"] == 1
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    # drained and closed, then the signal re-raised (uvicorn's way): a service manager sees a clean SIGTERM stop
    assert process.returncode == -signal.SIGTERM and "Application shutdown complete" in err, err
    assert key not in err and "POST /v1/tables/generate -> 200" in err


def _wait_for_url(process: subprocess.Popen) -> str:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        found = re.search(r"on (http://127\.0\.0\.1:\d+)", line)
        if found:
            return found.group(1)
        if not line and process.poll() is not None:
            raise AssertionError(f"gensdk serve exited with {process.returncode}")
    raise AssertionError("gensdk serve did not report its address")


def test_the_example_configuration_is_valid():
    config = ServerConfig.parse(REPO / "examples" / "serve.toml")
    assert set(config.models) == {"shakespeare", "adult"} and config.keys[0].scopes == ["generate", "detect", "audit-read"]


def test_the_documented_python_client_example_runs(server, api_keys, capsys):
    doc = (REPO / "docs" / "server.md").read_text(encoding="utf-8")
    example = doc.split("```python\nimport httpx\n", 1)[1].split("```", 1)[0]
    code = "import httpx\n" + example.replace("http://localhost:8000", server.url).replace('"shakespeare"', '"lm"')
    exec(compile(code, "docs/server.md", "exec"), {"KEY": api_keys["gen"]})
    printed = capsys.readouterr().out
    assert "pass" in printed or "watermark" in printed


def test_importing_gensdk_and_its_cli_does_not_import_the_web_stack():
    code = ("import sys, gensdk, gensdk.server, gensdk.batching\n"
            "from gensdk.cli.main import build_cli\nbuild_cli(load_entrypoints=False)\n"
            "heavy = [m for m in ('fastapi', 'uvicorn', 'sse_starlette', 'starlette', 'torch') if m in sys.modules]\n"
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=120)
