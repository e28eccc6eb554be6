"""Keyed text watermarks applied while the model samples, and their detectors.

Two schemes, chosen by the policy's `scheme` option:

* ``kgw`` (default): the green-list watermark of Kirchenbauer et al. (2023). At each step the previous
  `context_width` tokens and the key pick a pseudo-random "green" share `gamma` of the vocabulary, and `delta`
  is added to the green logits. Membership is a keyed hash, computed for the whole (batch, vocabulary) matrix
  at once on the logits' own device: ``green(v | ctx) = (h[v] * s(ctx) mod 2**64) < gamma * 2**64`` with
  ``h`` a keyed per-token hash (computed once per vocabulary) and ``s`` an odd keyed hash of the context, i.e.
  one multiply and one compare per logit.
  Detection re-tokenizes the text, counts green tokens among the scored ones and reports the one-proportion
  z-score and the exact binomial p-value. Each distinct (context, token) pair is scored once: repeated
  n-grams would otherwise count the same coin flip many times and make repetitive text look watermarked.
* ``synthid``: transformers' SynthID-Text logits processor (tournament sampling), with keys derived from the
  same master key. Detection uses the unweighted mean of the g-values over non-repeated contexts, whose null
  distribution is Binomial(n * depth, 1/2); SynthID's trained Bayesian detector is not used (it needs training
  data and a model download).

Detection needs the tokenizer the model used. Both detectors ignore text whose tokens cannot be scored
(shorter than the context) and say so: a verdict of "inconclusive" is not "not watermarked".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from pydantic import Field, SecretStr

from gensdk._markers import hookimpl
from gensdk.errors import ConfigError
from gensdk.outputs import Output
from gensdk.policy import Policy, PolicyOptions
from gensdk.request import GenerationContext, Request
from gensdk.verdicts import Finding
from gensdk_watermark.keys import WatermarkKey, require, resolve_key

__all__ = ["KGW", "SynthID", "TextDetection", "TextWatermarkPolicy", "binomial_sf"]

# Below this many scored tokens a detection is "inconclusive" (a p-value exists but means little).
MIN_SCORED_TOKENS = 16
_MASK64 = (1 << 64) - 1


def _signed(x: int) -> int:
    """An unsigned 64-bit constant as the signed int64 torch stores."""
    x &= _MASK64
    return x - (1 << 64) if x >= 1 << 63 else x


def _mix64(x: Any) -> Any:
    """splitmix64's finaliser on an int64 tensor (wrapping arithmetic, logical shifts)."""
    x = x ^ ((x >> 30) & ((1 << 34) - 1))
    x = x * _signed(0xBF58476D1CE4E5B9)
    x = x ^ ((x >> 27) & ((1 << 37) - 1))
    x = x * _signed(0x94D049BB133111EB)
    return x ^ ((x >> 31) & ((1 << 33) - 1))


def binomial_sf(successes: int, trials: int, p: float) -> float:
    """P(X >= successes) for X ~ Binomial(trials, p), exact (log-space sum)."""
    import torch

    if successes <= 0:
        return 1.0
    if successes > trials:
        return 0.0
    k = torch.arange(successes, trials + 1, dtype=torch.float64)
    n = torch.tensor(float(trials), dtype=torch.float64)
    log_pmf = (torch.lgamma(n + 1) - torch.lgamma(k + 1) - torch.lgamma(n - k + 1)
               + k * math.log(p) + (n - k) * math.log1p(-p))
    return float(torch.logsumexp(log_pmf, 0).exp().clamp(max=1.0))


@dataclass(frozen=True)
class TextDetection:
    scheme: str
    detected: bool
    verdict: Literal["watermarked", "not watermarked", "inconclusive"]
    z: float
    p_value: float
    scored: int  # tokens (kgw) or token x depth g-values (synthid) that entered the test
    hits: int  # green tokens, or g-values equal to 1
    tokens: int

    def to_dict(self) -> dict[str, Any]:
        return {"scheme": self.scheme, "detected": self.detected, "verdict": self.verdict, "z": round(self.z, 4),
                "p_value": self.p_value, "scored": self.scored, "hits": self.hits, "tokens": self.tokens}


def _verdict(scheme: str, hits: int, scored: int, rate: float, tokens: int, alpha: float, min_scored: int) -> TextDetection:
    z = (hits - rate * scored) / math.sqrt(scored * rate * (1 - rate)) if scored else 0.0
    p = binomial_sf(hits, scored, rate) if scored else 1.0
    if scored < min_scored:
        return TextDetection(scheme, False, "inconclusive", z, p, scored, hits, tokens)
    detected = p < alpha
    return TextDetection(scheme, detected, "watermarked" if detected else "not watermarked", z, p, scored, hits, tokens)


# -- KGW ----------------------------------------------------------------------------------------------------------


class KGW:
    """The green-list scheme under one key: a logits processor factory and the detector."""

    def __init__(self, key: WatermarkKey, gamma: float = 0.25, delta: float = 2.0, context_width: int = 1):
        if not 0 < gamma < 1:
            raise ConfigError(f"gamma must be in (0, 1), got {gamma}")
        self.gamma, self.delta, self.context_width = gamma, delta, context_width
        self.token_key = _signed(key.derive_int("text/kgw/token/v1", 64))
        self.context_key = _signed(key.derive_int("text/kgw/context/v1", 64))
        # green iff the signed 64-bit product is below this: a share gamma of the int64 range
        self.threshold = int(gamma * 2**64) - 2**63
        self._token_hashes: dict[tuple[int, str], Any] = {}

    def token_hashes(self, tokens: Any) -> Any:
        return _mix64(_mix64(tokens ^ self.token_key))

    def vocabulary_hashes(self, vocab_size: int, device: Any) -> Any:
        """token_hashes of 0..vocab_size-1, computed once per vocabulary size and device."""
        import torch

        cache_key = (vocab_size, str(device))
        if cache_key not in self._token_hashes:
            self._token_hashes[cache_key] = self.token_hashes(torch.arange(vocab_size, dtype=torch.int64, device=device))
        return self._token_hashes[cache_key]

    def context_seeds(self, context: Any) -> Any:
        """(..., context_width) int64 token ids -> (...) odd int64 seeds."""
        seed = context.new_full(context.shape[:-1], self.context_key)
        for j in range(context.shape[-1]):
            seed = _mix64(seed ^ context[..., j])
        return seed | 1  # odd, so multiplying by it permutes the hashes

    def green_vocabulary(self, context: Any, vocab_size: int) -> Any:
        """(B, V) green mask for the next token after each row's (B, context_width) context."""
        return self.vocabulary_hashes(vocab_size, context.device)[None, :] * self.context_seeds(context)[:, None] < self.threshold

    def green_tokens(self, context: Any, tokens: Any) -> Any:
        """Green mask of given tokens after given contexts: (n, context_width), (n,) -> (n,)."""
        return self.token_hashes(tokens) * self.context_seeds(context) < self.threshold

    def processor(self) -> Any:
        return _kgw_processor_class()(self)

    def detect(self, token_ids: list[int], alpha: float = 1e-3, min_scored: int = MIN_SCORED_TOKENS) -> TextDetection:
        import torch

        ids = torch.tensor(token_ids, dtype=torch.int64)
        h = self.context_width
        if len(ids) <= h:
            return _verdict("kgw", 0, 0, self.gamma, len(ids), alpha, min_scored)
        windows = torch.unique(ids.unfold(0, h + 1, 1), dim=0)  # each distinct (context, token) pair once
        green = self.green_tokens(windows[:, :h], windows[:, h])
        return _verdict("kgw", int(green.sum()), len(windows), self.gamma, len(ids), alpha, min_scored)


@lru_cache(maxsize=1)
def _kgw_processor_class() -> type:
    from transformers import LogitsProcessor

    class KGWLogitsProcessor(LogitsProcessor):
        """Adds `delta` to the keyed green list of every row; vectorised over batch and vocabulary."""

        def __init__(self, scheme: KGW):
            self.scheme = scheme

        def __call__(self, input_ids: Any, scores: Any) -> Any:
            import torch

            s = self.scheme
            green = s.green_vocabulary(input_ids[:, -s.context_width :], scores.shape[-1])
            return torch.add(scores, green, alpha=s.delta)  # one pass over (batch, vocabulary)

    return KGWLogitsProcessor


# -- SynthID ------------------------------------------------------------------------------------------------------


class SynthID:
    """transformers' SynthID-Text processor with keys derived from the master key, and a mean-score detector."""

    TABLE_SIZE = 2**16
    HISTORY = 1024

    def __init__(self, key: WatermarkKey, ngram_len: int = 5, depth: int = 30):
        self.ngram_len, self.depth = ngram_len, depth
        self.keys = [key.derive_int(f"text/synthid/key/{i}/v1", 48) for i in range(depth)]
        self.table_seed = key.derive_int("text/synthid/table/v1", 48)

    def processor(self, device: Any = "cpu") -> Any:
        from transformers import SynthIDTextWatermarkLogitsProcessor

        return SynthIDTextWatermarkLogitsProcessor(
            ngram_len=self.ngram_len, keys=self.keys, sampling_table_size=self.TABLE_SIZE,
            sampling_table_seed=self.table_seed, context_history_size=self.HISTORY, device=device,
        )

    def detect(self, token_ids: list[int], alpha: float = 1e-3, min_scored: int = MIN_SCORED_TOKENS) -> TextDetection:
        import torch

        if len(token_ids) < self.ngram_len:
            return _verdict("synthid", 0, 0, 0.5, len(token_ids), alpha, min_scored * self.depth)
        proc = self.processor("cpu")
        ids = torch.tensor([token_ids], dtype=torch.int64)
        g = proc.compute_g_values(ids)[0]  # (positions, depth)
        fresh = proc.compute_context_repetition_mask(ids)[0].bool()  # (positions,)
        g = g[fresh]
        return _verdict("synthid", int(g.sum()), g.numel(), 0.5, len(token_ids), alpha, min_scored * self.depth)


# -- the policy ---------------------------------------------------------------------------------------------------


class TextWatermarkPolicy(Policy):
    """Watermarks generated text while it is sampled (policy id ``watermark-text``).

    The model family must apply the `transformers.LogitsProcessor` this policy contributes; a family that does
    not (one that is not a transformers LM) gets its outputs blocked by the engine, never released unmarked.
    """

    id = "watermark-text"
    version = "1"
    modalities = frozenset({"text"})

    class Options(PolicyOptions):
        key_file: str | None = None
        key: SecretStr | None = None  # hex; never written to describe() or the audit trail
        scheme: Literal["kgw", "synthid"] = "kgw"
        gamma: float = Field(0.25, gt=0, lt=1)  # kgw: green share of the vocabulary
        delta: float = Field(2.0, gt=0, le=20)  # kgw: logit bias of green tokens
        context_width: int = Field(1, ge=1, le=8)  # kgw: previous tokens that seed the green list
        ngram_len: int = Field(5, ge=2, le=16)  # synthid
        depth: int = Field(30, ge=1, le=64)  # synthid: tournament layers
        alpha: float = Field(1e-3, gt=0, lt=1)  # p-value threshold of the self-check reported per output

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        require("torch", "transformers", purpose="The text watermark")
        o = self.options
        self.key = resolve_key(o.key, o.key_file, what=f"policy {self.id!r}")
        self.scheme: KGW | SynthID = (
            KGW(self.key, o.gamma, o.delta, o.context_width) if o.scheme == "kgw" else SynthID(self.key, o.ngram_len, o.depth)
        )

    def describe_mark(self) -> dict[str, Any]:
        o = self.options
        params = {"gamma": o.gamma, "delta": o.delta, "context_width": o.context_width} if o.scheme == "kgw" else {"ngram_len": o.ngram_len, "depth": o.depth}
        return {"policy": self.id, "scheme": o.scheme, "key_id": self.key.key_id, **params}

    @hookimpl
    def prepare_generation(self, request: Request, context: GenerationContext) -> list[Any]:
        if isinstance(self.scheme, KGW):
            return [self.scheme.processor()]
        return [self.scheme.processor(context.device)]  # stateful: a fresh one per micro-batch

    @hookimpl
    def transform_output(self, outputs: list[Output], context: GenerationContext) -> list[Finding]:
        tokenizer = getattr(context.model, "tokenizer", None)
        findings = []
        for i, output in enumerate(outputs):
            mark = self.describe_mark()
            if tokenizer is not None:
                ids = tokenizer(output.text, add_special_tokens=False)["input_ids"]  # type: ignore[attr-defined]
                mark["self_check"] = self.scheme.detect(ids, self.options.alpha).to_dict()
            output.metadata["watermark"] = mark
            findings.append(Finding("watermark-embedded", f"text watermarked ({mark['scheme']}, key {mark['key_id']})",
                                    output_index=i, details=mark))
        return findings
