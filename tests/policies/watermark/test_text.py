"""Text watermark: the KGW processor and detector, SynthID, calibration, attacks, and the engine path."""

from __future__ import annotations

import random
from typing import Any

import pytest

import gensdk_llm.plugin
import gensdk_watermark.plugin
from gensdk import Verdict
from gensdk.errors import ConfigError
from gensdk.testing import MockFamily, make_engine
from gensdk_watermark.keys import WatermarkKey
from gensdk_watermark.text import KGW, SynthID, TextWatermarkPolicy, binomial_sf

PROMPTS = ["the world", "a man", "we have", "one day"]


def _generate(lm: Any, processors: list[Any], n: int, tokens: int = 120, seed: int = 0) -> list[list[int]]:
    """Sample `n` continuations of `tokens` tokens straight from the model (no engine), as token ids."""
    import torch
    from transformers import LogitsProcessorList

    torch.manual_seed(seed)
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(n)]
    batch = lm.tokenizer(prompts, return_tensors="pt", padding=True)
    out = lm.model.generate(**batch, do_sample=True, top_k=0, max_new_tokens=tokens, min_new_tokens=tokens,
                            logits_processor=LogitsProcessorList(processors), pad_token_id=0)
    return out[:, batch["input_ids"].shape[1]:].tolist()


def test_processor_is_the_vectorised_green_list(key: WatermarkKey) -> None:
    """The (batch, vocabulary) mask equals the per-token definition, and about gamma of it is green."""
    import torch

    kgw = KGW(key, gamma=0.25, delta=2.0, context_width=2)
    context = torch.randint(0, 5000, (6, 2))
    mask = kgw.green_vocabulary(context, 5000)
    tokens = torch.arange(5000)
    for row in range(6):
        expected = kgw.green_tokens(context[row].expand(5000, 2), tokens)
        assert torch.equal(mask[row], expected)
    assert abs(mask.float().mean().item() - 0.25) < 0.02
    scores = torch.zeros(6, 5000)
    biased = kgw.processor()(torch.cat([torch.zeros(6, 3, dtype=torch.long), context], 1), scores)
    assert torch.equal(biased, mask.float() * 2.0)


def test_watermarked_text_is_detected_and_unmarked_is_not(tiny_lm: Any, key: WatermarkKey) -> None:
    kgw = KGW(key)
    marked = _generate(tiny_lm, [kgw.processor()], 8)
    plain = _generate(tiny_lm, [], 8, seed=1)
    assert all(kgw.detect(ids).detected for ids in marked)
    assert not any(kgw.detect(ids).detected for ids in plain)
    result = kgw.detect(marked[0])
    assert result.z > 4 and result.p_value < 1e-6 and result.verdict == "watermarked"


def test_wrong_key_finds_nothing(tiny_lm: Any, key: WatermarkKey) -> None:
    marked = _generate(tiny_lm, [KGW(key).processor()], 4)
    other = KGW(WatermarkKey(b"another key of 16+ bytes"))
    assert not any(other.detect(ids).detected for ids in marked)


def test_survives_replacing_a_fifth_of_the_tokens(tiny_lm: Any, key: WatermarkKey) -> None:
    kgw = KGW(key)
    rng = random.Random(0)
    vocab = len(tiny_lm.tokenizer)
    for ids in _generate(tiny_lm, [kgw.processor()], 6, tokens=200):
        attacked = [rng.randrange(2, vocab) if rng.random() < 0.2 else t for t in ids]
        assert kgw.detect(attacked).detected


def test_p_values_are_calibrated_on_unmarked_text(tiny_lm: Any, key: WatermarkKey) -> None:
    """Under "no watermark" P(p < a) <= a: 300 unmarked sequences, none (or at most a few) below 0.01."""
    kgw = KGW(key)
    p_values = [kgw.detect(ids).p_value for ids in _generate(tiny_lm, [], 300, tokens=60, seed=3)]
    assert sum(p < 0.01 for p in p_values) <= 8  # expected <= 3; 8 is P(Binomial(300, 0.01) >= 8) < 1%
    assert 0.3 < sorted(p_values)[150] < 0.8  # the median p-value of a calibrated test is about 0.5


def test_repeated_ngrams_are_counted_once(key: WatermarkKey) -> None:
    """Repetitive text must not look watermarked: a green bigram repeated 100 times counts once."""
    import torch

    kgw = KGW(key)
    a, b = next((a, b) for a in range(2, 500) for b in range(2, 500)
                if a != b and kgw.green_tokens(torch.tensor([[a]]), torch.tensor([b])).item()
                and kgw.green_tokens(torch.tensor([[b]]), torch.tensor([a])).item())
    result = kgw.detect([a, b] * 100)
    assert result.scored == 2 and result.verdict == "inconclusive" and not result.detected


def test_truncated_text_is_inconclusive_not_negative(tiny_lm: Any, key: WatermarkKey) -> None:
    kgw = KGW(key)
    ids = _generate(tiny_lm, [kgw.processor()], 1)[0]
    assert kgw.detect(ids[:8]).verdict == "inconclusive"
    assert kgw.detect([]).verdict == "inconclusive"
    assert kgw.detect(ids[:60]).detected  # a truncated but still long text keeps its mark


def test_binomial_tail_is_exact() -> None:
    assert binomial_sf(0, 10, 0.3) == 1.0
    assert binomial_sf(11, 10, 0.3) == 0.0
    assert binomial_sf(10, 10, 0.5) == pytest.approx(0.5**10)
    assert binomial_sf(3, 4, 0.5) == pytest.approx(5 / 16)


def test_synthid_scheme_round_trip(tiny_lm: Any, key: WatermarkKey) -> None:
    synthid = SynthID(key, ngram_len=4, depth=12)
    marked = _generate(tiny_lm, [synthid.processor()], 4, tokens=100)
    plain = _generate(tiny_lm, [], 4, tokens=100, seed=5)
    assert all(synthid.detect(ids).detected for ids in marked)
    assert not any(synthid.detect(ids).detected for ids in plain)


def test_policy_needs_a_key(tmp_path: Any) -> None:
    with pytest.raises(ConfigError, match="needs a key"):
        TextWatermarkPolicy({})
    with pytest.raises(ConfigError, match="not a hex string"):
        TextWatermarkPolicy({"key": "not hex at all"})
    with pytest.raises(ConfigError, match="gama"):
        TextWatermarkPolicy({"key_file": "k", "gama": 0.3})


def test_the_key_never_reaches_the_configuration(key: WatermarkKey) -> None:
    policy = TextWatermarkPolicy({"key": key.secret.hex()})
    assert key.secret.hex() not in repr(policy.describe())
    assert policy.key.key_id == key.key_id and key.key_id not in key.secret.hex()
    assert TextWatermarkPolicy({"key": key.secret.hex(), "delta": 3.0}).config_digest != policy.config_digest


def test_engine_marks_every_released_text(tmp_path: Any, tiny_lm: Any, key_file: Any) -> None:
    config = {"policies": [{"id": "watermark-text", "options": {"key_file": str(key_file)}}]}
    with make_engine(tmp_path, plugins=[gensdk_watermark.plugin, gensdk_llm.plugin], config=config) as engine:
        result = engine.generate(tiny_lm, prompts=PROMPTS, n=1, seed=7, params={"max_new_tokens": 80})
        record = next(iter(engine.audit.records()))["body"]
    assert result.verdict is Verdict.PASS and len(result.outputs) == len(PROMPTS)
    policy = engine.policy("watermark-text")
    for output in result.outputs:
        ids = tiny_lm.tokenizer(output.text, add_special_tokens=False)["input_ids"]
        assert policy.scheme.detect(ids).detected
        assert output.metadata["watermark"]["key_id"] == policy.key.key_id
        assert output.metadata["watermark"]["self_check"]["detected"]
    findings = [f for p in record["policies"] if p["id"] == "watermark-text" for f in p["findings"]]
    assert {f["details"]["key_id"] for f in findings} == {policy.key.key_id}
    assert key_file.read_text().strip() not in repr(record)  # the key id goes to the audit trail, never the key


def test_a_family_that_cannot_apply_the_processor_gets_blocked(tmp_path: Any, key_file: Any) -> None:
    """Fail closed: a model that does not apply the logits processor releases nothing unmarked."""
    config = {"policies": [{"id": "watermark-text", "options": {"key_file": str(key_file)}}]}
    with make_engine(tmp_path, plugins=[gensdk_watermark.plugin], config=config) as engine:
        result = engine.generate(MockFamily(), n=2, seed=1)
    assert result.verdict is Verdict.BLOCK and result.outputs == []
    outcome = next(o for o in result.outcomes if o.policy_id == "watermark-text")
    assert "did not apply processor" in (outcome.error or "")
