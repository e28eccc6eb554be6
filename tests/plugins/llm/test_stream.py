"""Streaming: chunks reach the client only after the output policies saw them, through the look-back buffer."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar, Iterator, Sequence

import pytest

import gensdk_llm.plugin
from gensdk import Finding, ModelFamily, Policy, TextOutput, Verdict, hookimpl
from gensdk.errors import ConfigError, GenerationError, OutputBlocked, RequestError
from gensdk.streaming import ReleaseBuffer
from gensdk.testing import KeywordPolicy, MockFamily, ProcessorPolicy, make_engine
from gensdk_llm import LLMFamily

CARD = re.compile(r"\b(?:\d[ -]?){12,18}\d\b")  # 13 to 19 digits, spaces or dashes between
CARD_TEXT = "Sure, my card is 4111 1111 1111 1111, thanks."
# The card number straddles the first two chunks; the rest is ordinary text longer than the look-back.
CHUNKS = ["Sure, my card is 4111 11", "11 1111 1111, thanks.",
          " Now some more words, long enough to push everything before them well out of the window."]


class RedactCards(Policy):
    """Replaces card numbers with [CARD] (a transform: the output is released, redacted)."""

    id = "redact-cards"
    version = "1"
    modalities = frozenset({"text"})

    @hookimpl
    def transform_output(self, outputs: list[Any], context: Any) -> list[Finding]:
        findings = []
        for i, output in enumerate(outputs):
            output.text, count = CARD.subn("[CARD]", output.text)
            if count:
                findings.append(Finding("card-redacted", f"{count} card numbers redacted", output_index=i))
        return findings


class ScriptedStream(ModelFamily):
    """Streams the chunks it is given, so tests choose exactly where chunk boundaries fall."""

    id: ClassVar[str] = "scripted"
    modality: ClassVar[str] = "text"  # type: ignore[assignment]
    can_stream: ClassVar[bool] = True

    def __init__(self, chunks: Sequence[str]):
        self.chunks = list(chunks)
        self.read = 0
        self.closed = False

    def _generate(self, request: Any, params: Any, context: Any) -> list[TextOutput]:
        return [TextOutput("".join(self.chunks), prompt=request.prompts[0])]

    def stream(self, request: Any, context: Any) -> Iterator[str]:
        def chunks() -> Iterator[str]:
            try:
                for chunk in self.chunks:
                    self.read += 1
                    yield chunk
            finally:
                self.closed = True

        return chunks()

    def save(self, path: Any) -> Path:
        raise NotImplementedError

    @classmethod
    def load(cls, path: Any) -> ScriptedStream:
        raise NotImplementedError


def _engine(tmp_path: Path, *policies: Policy) -> Any:
    return make_engine(tmp_path, plugins=[gensdk_llm.plugin], policies=policies)


def _record(engine: Any, record_id: str) -> dict:
    return next(r["body"] for r in engine.audit.records() if r["record_id"] == record_id)


# -- the release buffer ----------------------------------------------------------------------------------------

def test_buffer_holds_back_the_last_lookback_characters() -> None:
    buffer = ReleaseBuffer(lookback=5)
    buffer.push("abcdefgh")
    assert buffer.due()
    assert buffer.release(buffer.raw) == "abc"
    assert not buffer.due()
    buffer.push("ij")
    assert buffer.release(buffer.raw) == "de"
    assert buffer.release(buffer.raw, final=True) == "fghij"


def test_buffer_releases_the_checked_text_and_refuses_to_rewrite_the_past() -> None:
    buffer = ReleaseBuffer(lookback=2)
    buffer.push("my 1234 x")
    assert buffer.release("my [N] x") == "my [N]"
    with pytest.raises(GenerationError, match="already released"):
        buffer.release("my 1234 x and more")


def test_negative_lookback_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="lookback"):
        ReleaseBuffer(-1)


# -- the engine's stream, with chunk boundaries chosen by the test --------------------------------------------

def test_card_number_split_across_chunks_never_reaches_the_client(tmp_path: Path) -> None:
    with _engine(tmp_path, RedactCards()) as engine:
        stream = engine.stream(ScriptedStream(CHUNKS), prompts=["p"], seed=1)
        received = list(stream)
        record = _record(engine, stream.result.audit_record_id)
    seen = "".join(received)
    assert not re.search(r"\d", seen), received  # not one digit of the card at any point
    assert seen == "".join(CHUNKS).replace("4111 1111 1111 1111", "[CARD]")
    assert stream.result.texts == [seen]
    assert record["outputs"][0]["digest"] == TextOutput(seen).digest()
    assert record["policies"][0]["findings"][0]["code"] == "card-redacted"
    assert len(record["policies"][0]["findings"]) == 1  # partial passes leave no duplicate findings


def test_without_look_back_the_split_card_number_leaks_and_the_stream_fails_loudly(tmp_path: Path) -> None:
    """The control experiment: with lookback=0 the first chunk's digits go out before the number is
    recognisable; once it is, the redaction contradicts released text and the stream ends in an error that
    the audit trail records."""
    received: list[str] = []
    with _engine(tmp_path, RedactCards()) as engine:
        with pytest.raises(GenerationError, match="already released"):
            for chunk in engine.stream(ScriptedStream(CHUNKS), prompts=["p"], seed=1, lookback=0):
                received.append(chunk)
        last = [r["body"] for r in engine.audit.records()][-1]
    assert "4111 11" in received[0]
    assert "already released" in last["error"]


def test_a_blocking_finding_stops_the_stream_before_the_word_is_released(tmp_path: Path) -> None:
    chunks = ["The plan is ", "a sec", "ret one, and then more and more words follow it here."]
    family = ScriptedStream(chunks)
    received: list[str] = []
    with _engine(tmp_path, KeywordPolicy({"words": ["secret"]})) as engine:
        stream = engine.stream(family, prompts=["p"], seed=1, lookback=8)
        with pytest.raises(OutputBlocked):
            for chunk in stream:
                received.append(chunk)
        record = _record(engine, stream.result.audit_record_id)
    assert "sec" not in "".join(received)
    assert record["verdict"] == "block" and record["outputs"][0]["verdict"] == "block"
    assert family.closed  # the family's stream was closed: generation cancelled


def test_a_blocked_request_streams_nothing(tmp_path: Path) -> None:
    with _engine(tmp_path, KeywordPolicy({"words": ["secret"]})) as engine:
        stream = engine.stream(ScriptedStream(CHUNKS), prompts=["tell me the secret"], seed=1)
        with pytest.raises(OutputBlocked):
            next(stream)
    assert stream.result.verdict is Verdict.BLOCK


def test_closing_early_commits_a_record_of_what_was_received(tmp_path: Path) -> None:
    family = ScriptedStream(["x" * 100, "y" * 100, "z" * 100])
    with _engine(tmp_path) as engine:
        stream = engine.stream(family, prompts=["p"], seed=1, lookback=10)
        first = next(stream)
        stream.close()
        bodies = [r["body"] for r in engine.audit.records()]
    assert family.closed and family.read < 3
    assert "closed by the client" in bodies[-1]["error"]
    assert bodies[-1]["outputs"][0]["digest"] == TextOutput(first).digest()


def test_families_that_cannot_stream_are_refused(tmp_path: Path) -> None:
    with _engine(tmp_path) as engine, pytest.raises(RequestError, match="cannot stream"):
        engine.stream(MockFamily(), prompts=["p"])


def test_streaming_takes_one_prompt(tiny_lm: LLMFamily, tmp_path: Path) -> None:
    with _engine(tmp_path) as engine, pytest.raises(RequestError, match="one prompt"):
        engine.stream(tiny_lm, prompts=["a", "b"])


# -- the LLM family streaming ----------------------------------------------------------------------------------

def test_stream_gives_the_same_text_as_generate(tiny_lm: LLMFamily, tmp_path: Path) -> None:
    request = {"prompts": ["First Citizen:"], "seed": 11, "params": {"max_new_tokens": 40}}
    with _engine(tmp_path) as engine:
        batch = engine.generate(tiny_lm, request).texts[0]
        stream = engine.stream(tiny_lm, request, lookback=4)
        chunks = list(stream)
    assert len(chunks) > 1 and "".join(chunks) == batch
    assert stream.result.texts == [batch] and stream.result.verdict is Verdict.PASS


def test_stream_honours_stop_strings(tiny_lm: LLMFamily, tmp_path: Path) -> None:
    params = {"max_new_tokens": 40, "temperature": 0}
    with _engine(tmp_path) as engine:
        full = engine.generate(tiny_lm, prompts=["First Citizen:"], params=params).texts[0]
        stop = full[12:15]
        streamed = "".join(engine.stream(tiny_lm, prompts=["First Citizen:"], params={**params, "stop": [stop]}))
    assert streamed == full[: full.index(stop)]


def test_forced_card_number_is_redacted_in_the_llm_stream(tiny_lm: LLMFamily, tmp_path: Path, force_text: Any) -> None:
    """A real model, a policy's logits processor and a redacting policy, all in streaming mode."""
    forced = force_text(" " + CARD_TEXT + " And then it goes on and on for a good long while.")
    with _engine(tmp_path, forced, RedactCards()) as engine:
        stream = engine.stream(tiny_lm, prompts=["To be"], seed=2, params={"max_new_tokens": 80})
        received = list(stream)
    assert len(received) > 3
    assert not re.search(r"\d", "".join(received))
    assert "".join(received).startswith(" Sure, my card is [CARD], thanks.")


def test_llm_stream_blocks_a_processor_it_cannot_apply(tiny_lm: LLMFamily, tmp_path: Path) -> None:
    with _engine(tmp_path, ProcessorPolicy()) as engine:
        stream = engine.stream(tiny_lm, prompts=["To be"], seed=2, params={"max_new_tokens": 8})
        with pytest.raises(OutputBlocked):
            next(stream)
    assert "did not apply processor" in stream.result.outcomes[0].error


class RedactLongTokens(Policy):
    """Redacts 90-character tokens: longer than the default look-back, so it declares what it needs."""

    id = "redact-long"
    version = "1"
    modalities = frozenset({"text"})
    lookback_chars = 100
    TOKEN = re.compile(r"TOKEN[a-z]{85}")

    @hookimpl
    def transform_output(self, outputs: list[Any], context: Any) -> None:
        for output in outputs:
            output.text = self.TOKEN.sub("[TOKEN]", output.text)


def test_the_stream_holds_back_what_the_longest_policy_needs(tmp_path: Path) -> None:
    token = "TOKEN" + "q" * 85
    chunks = ["Here it is: " + token[:70], token[70:] + " done.", " And then plenty more ordinary words follow. " * 4]
    with _engine(tmp_path, RedactLongTokens()) as engine:
        received = list(engine.stream(ScriptedStream(chunks), prompts=["p"], seed=1))
    assert "TOKENq" not in "".join(received) and "[TOKEN]" in "".join(received)


def test_a_look_back_shorter_than_a_policy_needs_is_refused(tmp_path: Path) -> None:
    with _engine(tmp_path, RedactLongTokens()) as engine:
        with pytest.raises(ConfigError, match="shorter than the 100"):
            engine.stream(ScriptedStream(["x"]), prompts=["p"], seed=1, lookback=64)
