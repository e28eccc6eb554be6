"""Dynamic batching: concurrent requests for one model share one model call, each keeping its own checks,
verdicts and audit record.

    batcher = Batcher(engine, engine.load_model("models/shakespeare"), max_batch=8, wait_s=0.005)
    result = batcher.generate(prompts=["ROMEO:"], params={"max_new_tokens": 32})   # from any thread

Many threads call `generate` at once (an HTTP server's workers). Each call runs in its own thread:

1. `check_request` on its own request, under each policy's time limit; a block ends it here (record committed).
2. Its run joins the model's queue. The batcher thread takes the oldest queued run and every queued run that
   can share its model call (same family parameters, conditions and `n`), waiting up to `wait_s` for more, up
   to `max_batch` runs and the family's micro-batch size. It runs `prepare_generation` once for the merged
   micro-batch (processors are micro-batch scoped, like the engine's own micro-batches), the model once, and
   hands every run its slice of the outputs.
3. Back in its own thread, each run goes through `transform_output` and `inspect_output` on its own slice,
   then its own audit record is committed. A policy that hangs on one request holds up that request only.

What can share a call. A family says how its requests merge in `merge_requests`: "prompts" (outputs follow
the prompts one to one, `n` per prompt: the LLM family) or "count" (n independent items: the image
families); absent, the built-in table `MERGE_KINDS` decides, and a family in neither runs every request on
its own. A request with a `seed` always runs alone: the same seed must give the same outputs, and a batch
shares one seed with strangers. So does a request that switches a policy off, or one too big for one
micro-batch. The audit record of a batched request says so (`"batch"`: the shared call's id, seed, size and
the request's position), so its outputs can be traced to the model call that made them.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Mapping

from gensdk._canonical import digest_of
from gensdk.device import inference_mode
from gensdk.errors import ConfigError, GenerationError, GensdkError
from gensdk.pipeline import BatchVerdicts
from gensdk.request import GenerationContext, Request, fresh_seed, parse_request
from gensdk.verdicts import PolicyOutcome, Verdict, most_severe

if TYPE_CHECKING:
    from gensdk.engine import Engine, _Run
    from gensdk.family import ModelFamily
    from gensdk.outputs import Output
    from gensdk.result import Result

__all__ = ["MERGE_KINDS", "Batcher", "merge_kind"]

log = logging.getLogger("gensdk.batching")

MergeKind = Literal["prompts", "count"]
# Built-in families whose requests can share a model call. A family class overrides this with its own
# `merge_requests` attribute (None: never merge).
MERGE_KINDS: dict[str, MergeKind] = {"llm": "prompts", "gan-image": "count", "vae-image": "count"}


def merge_kind(model: ModelFamily) -> MergeKind | None:
    declared = getattr(type(model), "merge_requests", "undeclared")
    return MERGE_KINDS.get(model.id) if declared == "undeclared" else declared


@dataclass
class _Pending:
    """One request waiting for its share of a model call."""

    run: _Run
    key: str
    units: int
    done: threading.Event = field(default_factory=threading.Event)
    outputs: list[Output] = field(default_factory=list)
    floor: Verdict = Verdict.PASS  # from the shared prepare_generation / unapplied processors
    shared: dict[str, PolicyOutcome] = field(default_factory=dict)
    error: BaseException | None = None


class Batcher:
    """Merges concurrent `generate` calls for one model into shared model calls (see the module docstring)."""

    def __init__(self, engine: Engine, model: ModelFamily, *, max_batch: int = 8, wait_s: float = 0.005):
        if max_batch < 1 or wait_s < 0:
            raise ConfigError(f"batching needs max_batch >= 1 and wait_s >= 0, got {max_batch} and {wait_s}")
        self.engine, self.model = engine, model
        self.kind = merge_kind(model)
        self.max_batch, self.wait_s = max_batch, wait_s
        self.capacity = engine.config.max_batch_size or model.default_batch_size  # units of one micro-batch
        self._queue: list[_Pending] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        self.calls = 0  # shared model calls made, and requests served by them: for tests and benchmarks
        self.batched_requests = 0

    # -- the caller's side ------------------------------------------------------------------------------------

    def generate(self, request: Request | Mapping[str, Any] | None = None, **fields: Any) -> Result:
        """Like `Engine.generate` on this batcher's model; thread-safe, and batched when it can be."""
        req = parse_request(request, fields)
        if not self._mergeable(req):
            return self.engine.generate(self.model, req)
        engine, runner = self.engine, self.engine._runner
        run = engine._start_run(self.model, req, {})
        started = time.perf_counter()
        floor = runner.check_request(run.request, engine._context(run, 0), run.outcomes)
        run.add_time("check_request", started)
        if not floor.releases:
            runner.mark_skipped(run.outcomes)
            return engine._commit(run)  # blocked before anything was generated
        pending = self._submit(run)
        if pending.error is not None:
            return self._fail(run, pending.error)
        return self._finish(pending, floor)

    def _mergeable(self, request: Request) -> bool:
        return (self.kind is not None and request.seed is None and not request.disable_policies
                and self.max_batch > 1 and _units(request, self.kind) <= self.capacity)

    def _submit(self, run: _Run) -> _Pending:
        pending = _Pending(run, _merge_key(run.request, self.kind), _units(run.request, self.kind))  # type: ignore[arg-type]
        with self._cond:
            if self._closed:
                raise GensdkError("the batcher is closed")
            self._queue.append(pending)
            self._cond.notify_all()
            self._ensure_thread()
        pending.done.wait()
        return pending

    def _finish(self, pending: _Pending, floor: Verdict) -> Result:
        """transform_output, inspect_output and the commit, in the caller's thread, on its own outputs."""
        engine, runner, run = self.engine, self.engine._runner, pending.run
        _adopt(run.outcomes, pending.shared)
        ctx = engine._context(run, 0, run.request)
        verdicts = BatchVerdicts(len(pending.outputs), floor=most_severe([floor, pending.floor]))
        started = time.perf_counter()
        runner.transform(pending.outputs, ctx, run.outcomes, verdicts)
        run.add_time("transform", started)
        started = time.perf_counter()
        runner.inspect(pending.outputs, ctx, run.outcomes, verdicts)
        run.add_time("inspect", started)
        run.outputs, run.verdicts = pending.outputs, verdicts.final()
        return engine._commit(run)

    def _fail(self, run: _Run, error: BaseException) -> Result:
        run.error = str(error) if isinstance(error, GenerationError) else f"{type(error).__name__}: {error}"
        run.outputs, run.verdicts = [], []
        self.engine._commit(run)
        if isinstance(error, GenerationError):
            raise error
        raise GenerationError(f"the shared model call failed: {run.error}") from error

    # -- the batcher thread -----------------------------------------------------------------------------------

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, daemon=True, name=f"gensdk-batcher-{self.model.id}")
            self._thread.start()

    def _loop(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._run_batch(batch)

    def _next_batch(self) -> list[_Pending] | None:
        """The oldest queued request and every one that can join it, waiting up to wait_s for more."""
        with self._cond:
            while not self._queue:
                if self._closed:
                    return None
                self._cond.wait()
            deadline = time.monotonic() + self.wait_s
            batch = [self._queue.pop(0)]
            while True:
                self._take_compatible(batch)
                left = deadline - time.monotonic()
                if len(batch) >= self.max_batch or left <= 0 or self._closed:
                    return batch
                self._cond.wait(left)

    def _take_compatible(self, batch: list[_Pending]) -> None:
        units = sum(p.units for p in batch)
        for pending in list(self._queue):
            if len(batch) >= self.max_batch:
                return
            if pending.key == batch[0].key and units + pending.units <= self.capacity:
                self._queue.remove(pending)
                batch.append(pending)
                units += pending.units

    def _run_batch(self, batch: list[_Pending]) -> None:
        try:
            self._generate_shared(batch)
        except BaseException as exc:  # every caller gets the failure and records it in its own thread
            for pending in batch:
                pending.error = exc
        finally:
            for pending in batch:
                pending.done.set()

    def _generate_shared(self, batch: list[_Pending]) -> None:
        """prepare_generation once, the model once, then each request's slice of the outputs."""
        engine, runner, model = self.engine, self.engine._runner, self.model
        merged = _merge([p.run.request for p in batch], self.kind)  # type: ignore[arg-type]
        ctx = GenerationContext(request=merged, seed=fresh_seed(), device=engine.device, dtype=engine.dtype,
                                modality=model.modality, model_info=batch[0].run.identity, model=model,
                                record_event=engine.record_event)
        shared = runner.start(merged, model.modality)
        pre = BatchVerdicts(0)
        started = time.perf_counter()
        owners = runner.prepare(merged, ctx, shared, pre)
        prepared = time.perf_counter()
        with inference_mode():
            outputs = model.generate(merged, ctx)
        generated = time.perf_counter()
        runner.fail_unapplied(ctx, owners, shared, pre, model.id)
        self._hand_out(batch, outputs, ctx.seed, pre.floor, shared, (prepared - started, generated - prepared))

    def _hand_out(self, batch: list[_Pending], outputs: list[Output], seed: int, floor: Verdict,
                  shared: dict[str, PolicyOutcome], seconds: tuple[float, float]) -> None:
        expected = sum(p.run.request.n * _prompt_count(p.run.request, self.kind) for p in batch)
        if len(outputs) != expected:
            raise GenerationError(f"{self.model.id} returned {len(outputs)} outputs for a shared call that asked for {expected}")
        call_id, offset = uuid.uuid4().hex, 0
        self.calls += 1
        self.batched_requests += len(batch)
        for position, pending in enumerate(batch):
            count = pending.run.request.n * _prompt_count(pending.run.request, self.kind)
            pending.outputs, pending.floor, pending.shared = outputs[offset : offset + count], floor, shared
            offset += count
            run = pending.run
            run.timings["prepare"] = run.timings.get("prepare", 0.0) + seconds[0] * 1000
            run.timings["generate"] = run.timings.get("generate", 0.0) + seconds[1] * 1000
            run.record_extra["batch"] = {"call_id": call_id, "seed": seed, "requests": len(batch), "position": position}

    def close(self) -> None:
        """Stop the batcher thread once the queue is empty (queued requests are still served)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=60)


def _prompt_count(request: Request, kind: MergeKind) -> int:
    return len(request.prompts or request.messages or []) if kind == "prompts" else 1


def _units(request: Request, kind: MergeKind | None) -> int:
    """Sequences (prompts x n) or items this request puts into a micro-batch."""
    return request.n * (_prompt_count(request, kind) if kind else 1)


def _merge_key(request: Request, kind: MergeKind) -> str:
    """Requests with equal keys can share one model call."""
    shape: dict[str, Any] = {"params": request.params, "conditions": request.conditions}
    if kind == "prompts":
        shape.update(n=request.n, chat=request.messages is not None)
    else:
        shape.update(prompts=request.prompts, messages=request.messages)
    return digest_of(shape)


def _merge(requests: list[Request], kind: MergeKind) -> Request:
    first = requests[0]
    common = {"params": first.params, "conditions": first.conditions}
    if kind == "count":
        return Request(n=sum(r.n for r in requests), prompts=first.prompts, messages=first.messages, **common)
    if first.messages is not None:
        return Request(n=first.n, messages=[m for r in requests for m in r.messages or []], **common)
    return Request(n=first.n, prompts=[p for r in requests for p in r.prompts or []], **common)


def _adopt(outcomes: dict[str, PolicyOutcome], shared: dict[str, PolicyOutcome]) -> None:
    """What the shared prepare_generation did (errors, time-outs, unapplied processors) is every request's."""
    for pid, common in shared.items():
        mine = outcomes[pid]
        mine.elapsed_ms += common.elapsed_ms
        if common.status in ("error", "timeout"):
            mine.status = common.status
            mine.error = common.error if mine.error is None else f"{mine.error}; {common.error}"
            mine.verdict = most_severe([mine.verdict, common.verdict])
