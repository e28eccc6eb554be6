"""`gensdk train llm` and `gensdk generate` on an LLM: in process, and once through a real subprocess.

Until pyproject.toml declares the `llm` entry point, the in-process tests add it to what gensdk discovers, and
the subprocess test puts a throw-away dist-info declaring it on PYTHONPATH.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any, Callable

import pytest

from gensdk.cli import main as cli_main

REPO = Path(__file__).resolve().parents[3]
LLM_ENTRY_POINT = EntryPoint(name="llm", value="gensdk_llm.plugin", group="gensdk")


def _declared() -> bool:
    return "llm" in entry_points(group="gensdk").names


@pytest.fixture
def gensdk(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """Run `gensdk ARGS...` in process; returns (exit code, stdout, stderr)."""
    import gensdk.plugins

    if not _declared():
        monkeypatch.setattr(gensdk.plugins, "entry_points",
                            lambda group: [*entry_points(group=group), LLM_ENTRY_POINT])

    def run(*args: Any) -> tuple[int, str, str]:
        code = cli_main.run([str(a) for a in args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def test_train_llm_command(gensdk: Any, tiny_text: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli-lm"
    code, stdout, stderr = gensdk("train", "llm", "--data", tiny_text, "--out", out, "--steps", 3, "--layers", 1,
                                  "--width", 16, "--heads", 2, "--context", 32, "--vocab-size", 300, "--batch-size", 4)
    assert code == 0, stderr
    assert "held-out perplexity" in stdout
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(out, local_files_only=True).config.n_layer == 1


def test_train_llm_refuses_non_utf8(gensdk: Any, tmp_path: Path) -> None:
    data = tmp_path / "bad.txt"
    data.write_bytes(b"\xff\xfe not text" * 100)
    code, _, stderr = gensdk("train", "llm", "--data", data, "--out", tmp_path / "never")
    assert code == 2 and "not UTF-8" in stderr


def test_generate_writes_jsonl(gensdk: Any, tiny_lm_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    code, stdout, stderr = gensdk("generate", tiny_lm_dir, "--prompt", "To be", "--prompt", "O", "--n", 2,
                                  "--seed", 1, "--param", "max_new_tokens=5", "--out", out)
    assert code == 0, stderr
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["prompt"] for r in rows] == ["To be", "To be", "O", "O"]


def test_generate_stream_prints_the_same_text(gensdk: Any, tiny_lm_dir: Path, tmp_path: Path) -> None:
    common = ("generate", tiny_lm_dir, "--prompt", "First Citizen:", "--seed", 3, "--param", "max_new_tokens=30")
    code, batch_out, stderr = gensdk(*common, "--out", tmp_path / "batch.jsonl")
    assert code == 0, stderr
    text = json.loads((tmp_path / "batch.jsonl").read_text(encoding="utf-8"))["text"]
    code, streamed, stderr = gensdk(*common, "--stream")
    assert code == 0, stderr
    assert streamed.startswith(text + "\n")
    assert "verdict pass" in streamed


def test_generate_chat_file(gensdk: Any, tiny_lm_dir: Path, tmp_path: Path) -> None:
    chat = tmp_path / "chat.jsonl"
    chat.write_text(json.dumps([{"role": "user", "content": "Speak."}]) + "\n\n"
                    + json.dumps({"messages": [{"role": "user", "content": "Again."}]}) + "\n", encoding="utf-8")
    out = tmp_path / "chat-out.jsonl"
    code, _, stderr = gensdk("generate", tiny_lm_dir, "--chat", chat, "--seed", 1, "--param", "max_new_tokens=4", "--out", out)
    assert code == 0, stderr
    prompts = [json.loads(line)["prompt"] for line in out.read_text(encoding="utf-8").splitlines()]
    assert prompts == ["user: Speak.\nassistant:", "user: Again.\nassistant:"]


@pytest.mark.parametrize("content, message", [
    (b"\xff\xfe[]\n", "not UTF-8"), (b"{oops\n", "chat.jsonl:1 is not JSON"), (b'"hello"\n', "not a list of messages"),
])
def test_bad_chat_files(gensdk: Any, tiny_lm_dir: Path, tmp_path: Path, content: bytes, message: str) -> None:
    chat = tmp_path / "chat.jsonl"
    chat.write_bytes(content)
    code, _, stderr = gensdk("generate", tiny_lm_dir, "--chat", chat)
    assert code == 2 and message in stderr


def test_generate_bad_input_exit_codes(gensdk: Any, tiny_lm_dir: Path, tmp_path: Path) -> None:
    code, _, stderr = gensdk("generate", tiny_lm_dir, "--prompt", "")
    assert code == 2 and "prompt 0 is empty" in stderr
    code, _, stderr = gensdk("generate", tiny_lm_dir, "--prompt", "x", "--param", "top_p=2")
    assert code == 2 and "top_p" in stderr
    code, _, stderr = gensdk("generate", tmp_path / "missing", "--prompt", "x")
    assert code == 1 and "does not exist" in stderr


def test_generate_allow_pickle_flag(gensdk: Any, tiny_lm: Any, model_copy: Any) -> None:
    import torch

    path = model_copy("pickled")
    (path / "model.safetensors").unlink()
    torch.save(tiny_lm.model.state_dict(), path / "pytorch_model.bin")
    code, _, stderr = gensdk("generate", path, "--prompt", "To be", "--param", "max_new_tokens=3")
    assert code == 1 and "--allow-pickle" in stderr
    code, _, stderr = gensdk("generate", path, "--prompt", "To be", "--param", "max_new_tokens=3", "--allow-pickle")
    assert code == 0, stderr


@pytest.mark.slow
def test_real_cli_subprocess(tiny_lm_dir: Path, tmp_path: Path) -> None:
    """`python -m gensdk generate --stream`, with the entry point declared the way an installed package does."""
    paths = [str(REPO / "plugins")]
    if not _declared():
        dist = tmp_path / "site" / "gensdk_llm_entrypoint-0.dist-info"
        dist.mkdir(parents=True)
        (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: gensdk-llm-entrypoint\nVersion: 0\n", encoding="utf-8")
        (dist / "entry_points.txt").write_text("[gensdk]\nllm = gensdk_llm.plugin\n", encoding="utf-8")
        paths.insert(0, str(dist.parent))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "GENSDK_AUDIT": str(tmp_path / "audit.db")}
    base = [sys.executable, "-m", "gensdk", "generate", str(tiny_lm_dir)]
    done = subprocess.run([*base, "--prompt", "To be", "--stream", "--seed", "1", "--param", "max_new_tokens=6"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "verdict pass" in done.stdout
    # a prompt that is not UTF-8 on the command line: a RequestError (exit 2), not a crash
    bad = subprocess.run([*[a.encode() for a in base], b"--prompt", b"caf\xe9"], capture_output=True, env=env, timeout=300)
    assert bad.returncode == 2 and b"not valid UTF-8" in bad.stderr
