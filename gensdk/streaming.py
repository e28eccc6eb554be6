"""Streaming that never leaks: the client sees text only after the output policies have seen it.

    stream = engine.stream("models/shakespeare", prompts=["ROMEO:"], seed=1)
    for chunk in stream:
        print(chunk, end="", flush=True)
    stream.result.audit_record_id          # the committed record of the whole completion

How text is released. The family yields raw chunks (`family.stream(request, context)`). They accumulate in a
`ReleaseBuffer`; whenever more than `lookback` characters are unreleased, `transform_output` and
`inspect_output` run over the whole text so far (one `TextOutput`, through the same `PolicyRunner` as
`Engine.generate`, with scratch outcomes so partial checks do not pile findings into the audit record). Then:

* a blocking verdict stops the stream: generation is cancelled, the audit record (the partial output, its
  verdict `block`, the findings that blocked it) is committed and `OutputBlocked` is raised;
* otherwise the client gets the *checked* text up to `lookback` characters before its end. The last `lookback`
  characters stay back because a policy may not recognise what they start until more text arrives: a card
  number split over two chunks is redacted before any of its digits leaves the buffer, provided `lookback`
  is at least as long as the longest span an output policy matches.

At the end the full pipeline runs on the complete text exactly as in `Engine.generate` (its findings are the
audit record's), the record is committed, and only then is the held-back tail released.

The look-back is the largest of 64 characters and every enabled policy's `lookback_chars` (the PII policy
needs 280: the longest entity with its left context).

Latency: the client sees each character `lookback` characters after the model wrote it (64 characters are
about 16 tokens of English), plus one pass of the output policies per release. Text the client has
already received can no longer be changed, so a transform that rewrites text further back than `lookback`
(a non-local policy) ends the stream with a GenerationError and an audit record saying so, rather than
letting the released text and the audited text differ silently. If the client stops reading, the generation
is cancelled and a record of the text it had received is committed.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

from gensdk.errors import ConfigError, GenerationError, OutputBlocked, RequestError
from gensdk.outputs import TextOutput
from gensdk.pipeline import BatchVerdicts, FirstBatch
from gensdk.request import GenerationContext, Request
from gensdk.verdicts import PolicyOutcome, Verdict

if TYPE_CHECKING:
    from gensdk.engine import Engine, _Run
    from gensdk.family import ModelFamily
    from gensdk.result import Result

__all__ = ["DEFAULT_LOOKBACK", "ReleaseBuffer", "TextStream", "stream"]

# Characters held back: longer than a card number with separators (23), an IBAN (34) or a typical e-mail
# address, so the usual PII patterns complete inside the window.
DEFAULT_LOOKBACK = 64


class ReleaseBuffer:
    """Generated text, and how much of it (in its checked form) the client has received."""

    def __init__(self, lookback: int = DEFAULT_LOOKBACK):
        if lookback < 0:
            raise ConfigError(f"lookback must be 0 or more characters, not {lookback}")
        self.lookback = lookback
        self.raw = ""  # everything the model wrote so far
        self.released = ""  # what the client has received: a prefix of the checked text

    def push(self, chunk: str) -> None:
        self.raw += chunk

    def due(self) -> bool:
        """True when enough unreleased text has built up to be worth a policy pass."""
        return len(self.raw) - self.lookback > len(self.released)

    def consistent(self, checked: str) -> bool:
        """Whether the checked text still begins with what was released (transforms stayed local)."""
        return checked.startswith(self.released)

    def release(self, checked: str, final: bool = False) -> str:
        """The next piece of `checked` (the policies' version of `raw`) the client may have: all of it but
        the last `lookback` characters, or the rest when `final`."""
        if not self.consistent(checked):
            raise GenerationError(
                f"a policy changed text already released to the client (more than {self.lookback} characters "
                "back); raise the streaming look-back"
            )
        end = len(checked) if final else len(checked) - self.lookback
        if end <= len(self.released):
            return ""
        piece = checked[len(self.released) : end]
        self.released += piece
        return piece


class TextStream:
    """An iterator of released text chunks; `result` is the committed Result once it is exhausted.

    Closing it early (or leaving a `with` block) cancels the generation and commits a record of what was
    received."""

    def __init__(self, engine: Engine, run: _Run, buffer: ReleaseBuffer):
        self.result: Result | None = None
        self._chunks = _released(engine, run, buffer, self)

    def __iter__(self) -> TextStream:
        return self

    def __next__(self) -> str:
        return next(self._chunks)

    def close(self) -> None:
        self._chunks.close()  # type: ignore[attr-defined]

    def __enter__(self) -> TextStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def stream(engine: Engine, model: ModelFamily | str | Path, request: Request | Mapping[str, Any] | None = None,
           *, lookback: int | None = None, **fields: Any) -> TextStream:
    """`Engine.stream`: validate now, generate and release lazily, as the returned stream is read."""
    run = engine._start_run(model, request, fields)
    family = run.model
    if not family.can_stream or not callable(getattr(family, "stream", None)):
        raise RequestError(f"model family {family.id!r} cannot stream; use Engine.generate")
    units = len(run.request.prompts or run.request.messages or [None])
    if units != 1 or run.request.n != 1:
        raise RequestError("streaming generates one completion: give one prompt (or one conversation) and n=1")
    return TextStream(engine, run, ReleaseBuffer(_lookback(engine, run, lookback)))


def _lookback(engine: Engine, run: _Run, asked: int | None) -> int:
    """At least what every taking-part policy needs to see whole (`Policy.lookback_chars`): a smaller
    look-back could release the first half of an e-mail address before the PII policy can recognise it."""
    needed = max([0, *(p.lookback_chars for p in engine.policies
                       if run.outcomes[p.id].status not in ("disabled", "not_applicable"))])
    if asked is not None and asked < needed:
        raise ConfigError(f"a streaming look-back of {asked} characters is shorter than the {needed} the "
                          "enabled policies need to see whole")
    return max(DEFAULT_LOOKBACK if asked is None else asked, needed)


def _released(engine: Engine, run: _Run, buffer: ReleaseBuffer, sink: TextStream) -> Iterator[str]:
    runner = engine._runner
    ctx = engine._context(run, 0, run.request)
    first = FirstBatch(run.request, ctx, BatchVerdicts(0))
    checks = runner.check_request(run.request, ctx, run.outcomes, first)
    run.add_policy_seconds(checks.seconds)
    floor = checks.floor
    if not floor.releases:
        _block(engine, run, sink, None)  # blocked before anything was generated
    pre, owners = first.verdicts, checks.prepared
    if owners is None:  # a check found something that does not block: prepare on its own
        pre = BatchVerdicts(0, floor=floor)
        owners = runner.prepare(run.request, ctx, run.outcomes, pre)
    chunks = _open_family_stream(engine, run, ctx)
    unapplied = BatchVerdicts(0, floor=pre.floor)
    runner.fail_unapplied(ctx, owners, run.outcomes, unapplied, run.model.id)
    if not unapplied.floor.releases:  # a policy could not act: nothing may be released
        _close(chunks)
        _block(engine, run, sink, None)
    prompt = _prompt_of(run.request)
    try:
        for chunk in _timed(chunks, run):
            buffer.push(chunk)
            if not buffer.due():
                continue
            checked, verdict, scratch = _check_partial(engine, run, ctx, buffer.raw, prompt, unapplied.floor)
            if not verdict.releases:
                run.outcomes = scratch  # the findings that stopped the stream are the record's
                _block(engine, run, sink, TextOutput(buffer.raw, prompt=prompt))
            piece = buffer.release(checked)
            if piece:
                yield piece
    except GeneratorExit:  # the client stopped reading: record what it received
        _commit_abandoned(engine, run, buffer, prompt)
        raise
    except OutputBlocked:
        raise  # its record is committed
    except Exception as exc:  # the family failed, or a transform rewrote released text: record it
        _commit_error(engine, run, str(exc) if isinstance(exc, GenerationError) else f"{type(exc).__name__}: {exc}")
        raise
    finally:
        _close(chunks)  # cancels the generation when it has not finished
    yield from _finish(engine, run, ctx, buffer, prompt, unapplied.floor, sink)


def _open_family_stream(engine: Engine, run: _Run, ctx: GenerationContext) -> Iterator[str]:
    try:
        return run.model.stream(run.request, ctx)  # type: ignore[attr-defined, no-any-return]
    except GenerationError as exc:
        _commit_error(engine, run, str(exc))
        raise


def _close(chunks: Iterator[str]) -> None:
    close = getattr(chunks, "close", None)
    if close is not None:
        close()


def _timed(chunks: Iterator[str], run: _Run) -> Iterator[str]:
    """The family's chunks, timing the generation (excluding the policy passes in between)."""
    while True:
        started = time.perf_counter()
        try:
            chunk = next(chunks)
        except StopIteration:
            return
        finally:
            run.add_time("generate", started)
        yield chunk


def _check_partial(engine: Engine, run: _Run, ctx: GenerationContext, text: str, prompt: str | None,
                   floor: Verdict) -> tuple[str, Verdict, dict[str, PolicyOutcome]]:
    """transform_output + inspect_output over the text so far, on scratch copies of the outcomes."""
    scratch = {pid: dataclasses.replace(o, findings=list(o.findings)) for pid, o in run.outcomes.items()}
    output = TextOutput(text, prompt=prompt)
    verdicts = BatchVerdicts(1, floor=floor)
    started = time.perf_counter()
    # Policies that count outputs (a bias window) must not count the same text once per chunk: they see
    # `partial` and skip, and count the final text, which is checked without it.
    ctx.state["partial"] = True
    try:
        engine._runner.after_generation([output], ctx, scratch, verdicts)
    finally:
        ctx.state.pop("partial", None)
    run.add_time("stream_checks", started)
    return output.text, verdicts.final()[0], scratch


def _finish(engine: Engine, run: _Run, ctx: GenerationContext, buffer: ReleaseBuffer, prompt: str | None,
            floor: Verdict, sink: TextStream) -> Iterator[str]:
    """The full pipeline on the complete text, the record committed, then the tail released."""
    output = TextOutput(buffer.raw, prompt=prompt)
    verdicts = BatchVerdicts(1, floor=floor)
    run.add_policy_seconds(engine._runner.after_generation([output], ctx, run.outcomes, verdicts))
    run.outputs, run.verdicts = [output], verdicts.final()
    if run.verdicts[0].releases and not buffer.consistent(output.text):
        run.error = (f"the final policy pass changed text already streamed to the client (more than "
                     f"{buffer.lookback} characters back); raise the streaming look-back")
    sink.result = engine._commit(run)
    if run.error:
        raise GenerationError(run.error)
    sink.result.raise_for_verdict()
    tail = buffer.release(output.text, final=True)
    if tail:
        yield tail


def _block(engine: Engine, run: _Run, sink: TextStream, output: TextOutput | None) -> None:
    """Commit the record of a blocked stream and raise OutputBlocked (never returns)."""
    run.outputs = [output] if output is not None else []
    run.verdicts = [Verdict.BLOCK] if output is not None else []
    sink.result = engine._commit(run)
    sink.result.raise_for_verdict()
    raise OutputBlocked(f"stream blocked; audit record {sink.result.audit_record_id}", sink.result)


def _commit_error(engine: Engine, run: _Run, message: str) -> None:
    run.error = message
    run.outputs, run.verdicts = [], []
    engine._commit(run)


def _commit_abandoned(engine: Engine, run: _Run, buffer: ReleaseBuffer, prompt: str | None) -> None:
    """The client closed the stream: the record holds exactly the text it received."""
    run.outputs = [TextOutput(buffer.released, prompt=prompt)]
    run.verdicts = [Verdict.PASS]
    run.error = (f"stream closed by the client after {len(buffer.released)} released characters "
                 f"({len(buffer.raw)} generated); the record's output is the released text")
    engine._commit(run)


def _prompt_of(request: Request) -> str | None:
    if request.prompts:
        return request.prompts[0]
    return None
