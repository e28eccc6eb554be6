"""The LLM family with the first-party text policies: the KGW watermark (a logits processor) in batch and
streaming mode, and verbatim-replay detection against the training text the family reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import gensdk_llm.plugin
from gensdk import Verdict
from gensdk.testing import make_engine
from gensdk_llm import LLMFamily

text_watermark = pytest.importorskip("gensdk_watermark.text")

KEY = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"


def _watermark() -> Any:
    return text_watermark.TextWatermarkPolicy({"key": KEY, "delta": 4.0})


def test_watermark_is_applied_in_batch_and_detected(tiny_lm: LLMFamily, tmp_path: Path) -> None:
    policy = _watermark()
    params = {"max_new_tokens": 60}
    with make_engine(tmp_path, plugins=[gensdk_llm.plugin], policies=[policy]) as engine:
        marked = engine.generate(tiny_lm, prompts=["First Citizen:", "To be"], seed=3, params=params)
    with make_engine(tmp_path, plugins=[gensdk_llm.plugin], audit_name="plain.db") as engine:
        plain = engine.generate(tiny_lm, prompts=["First Citizen:", "To be"], seed=3, params=params)
    assert marked.verdict is Verdict.PASS  # the processor was taken, so nothing is blocked
    detect = lambda text: policy.scheme.detect(tiny_lm.tokenizer(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    assert all(detect(t).detected for t in marked.texts), [detect(t) for t in marked.texts]
    assert not any(detect(t).detected for t in plain.texts)


def test_watermark_is_applied_while_streaming(tiny_lm: LLMFamily, tmp_path: Path) -> None:
    policy = _watermark()
    with make_engine(tmp_path, plugins=[gensdk_llm.plugin], policies=[policy]) as engine:
        stream = engine.stream(tiny_lm, prompts=["First Citizen:"], seed=5, params={"max_new_tokens": 60})
        text = "".join(stream)
    ids = tiny_lm.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert stream.result.verdict is Verdict.PASS and policy.scheme.detect(ids).detected


def test_replay_policy_finds_the_training_text(tiny_lm: LLMFamily, tiny_text: Path, tmp_path: Path, force_text: Any) -> None:
    replay = pytest.importorskip("gensdk_privacy.replay")
    assert tiny_lm.training_text_path() == str(tiny_text.resolve())
    verbatim = tiny_text.read_text(encoding="utf-8")[1000:1120]
    policies = [force_text(verbatim), replay.ReplayPolicy()]
    with make_engine(tmp_path, plugins=[gensdk_llm.plugin], policies=policies) as engine:
        result = engine.generate(tiny_lm, prompts=["To be"], seed=1, params={"max_new_tokens": 60})
    assert result.verdict is Verdict.BLOCK
    assert any(f.code == "verbatim-replay" for f in result.findings)
