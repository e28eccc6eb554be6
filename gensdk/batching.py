"""Dynamic batching: concurrent requests for one model share one model call, each keeping its own checks,
verdicts and audit record.

    batcher = Batcher(engine, engine.load_model("models/shakespeare"), max_batch=8, wait_s=0.005)
    result = batcher.generate(prompts=["ROMEO:"], params={"max_new_tokens": 32})   # from any thread

Many threads call `generate` at once (an HTTP server's workers). Each call runs in its own thread:

1. `check_request` on its own request, under each policy's time limit; a block ends it here (record committed).
2. Its run joins the model's queue. One shared call runs at a time per model, made by the thread of the
   oldest queued run (no batcher thread: a request that finds the model idle makes its own call without a
   hand-off). That leader takes every queued run that can share its call (same family parameters,
   conditions and `n`), up to `max_batch` runs and the family's micro-batch size, and waits for more only
   while waiting is likely to pay (below). It runs `prepare_generation` once for the merged micro-batch
   (processors are micro-batch scoped, like the engine's own micro-batches), the model once, and hands
   every run its slice of the outputs; then the oldest run still queued leads the next call. Calls one at
   a time is what lets requests pile up into batches; it also keeps a CPU process from running several
   small model calls at once in threads that mostly wait for each other's GIL (measured: a tiny GAN's
   requests cost twice the CPU when their calls ran side by side).
3. Back in its own thread, each run goes through `transform_output` and `inspect_output` on its own slice,
   then its own audit record is committed. A policy that hangs on one request holds up that request only.

How long a leader waits for company: up to `wait_s` while a request that could join is still in its
`check_request`, since it will arrive within one policy pass; not at all while requests that cannot join
are queued (the model is then the bottleneck: idling it delays them, and a latecomer joins the next call);
up to `wait_s` before the first call (its cost is not known yet); otherwise at most a quarter of the
model's recent call time (capped by `wait_s`). Waiting 5 ms for company that may not come costs more than it saves
when a call takes 2 ms (a small image GAN: the old fixed window made batching slower than none), and little
when a call takes 100 ms (an LM writing 16 tokens).

What can share a call. A family says how its requests merge in `merge_requests`: "prompts" (outputs follow
the prompts one to one, `n` per prompt: the LLM family), "count" (n independent items, same conditions) or
"items" (n independent items whose conditions may differ: the merged request has none, and the context's
`item_conditions` gives each output's own: the image families, so requests for different classes share
one call); absent, the built-in table `MERGE_KINDS` decides, and a family in neither runs every request on
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
from collections import Counter
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

MergeKind = Literal["prompts", "count", "items"]
# Built-in families whose requests can share a model call. A family class overrides this with its own
# `merge_requests` attribute (None: never merge).
# Image families merge items: requests with the same prompt (diffusion) and sampling settings share a call, each
# keeping its own class. Measured on a tiny class-conditional DDPM: eight 2-image calls cost 961 ms of CPU,
# one 16-image call 150 ms; with one class per call, eight requests for eight digits never shared one.
MERGE_KINDS: dict[str, MergeKind] = {"llm": "prompts", "gan-image": "items", "vae-image": "items", "diffusion": "items"}
# A leader with no peer in sight waits at most this share of the model's recent call time for company.
WAIT_SHARE = 0.25


def merge_kind(model: ModelFamily) -> MergeKind | None:
    declared = getattr(type(model), "merge_requests", "undeclared")
    return MERGE_KINDS.get(model.id) if declared == "undeclared" else declared


@dataclass
class _Pending:
    """One request waiting for its share of a model call."""

    run: _Run
    key: str
    units: int
    # Set once, for one of two reasons: its call is done (`done`), or it is to lead its lane's next call.
    wake: threading.Event = field(default_factory=threading.Event)
    done: bool = False
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
        # Each thread sleeps on its own event, woken only when it has something to do (its call is done, or
        # it leads the next): waking every waiting thread on every arrival costs GIL hand-offs that add
        # up to more CPU than a small model's call.
        self._lock = threading.Lock()
        self._queue: list[_Pending] = []  # runs waiting while another run's call is gathered or made
        self._busy = False  # a shared call is being gathered or made
        self._gathering: threading.Event | None = None  # set to wake the leader waiting for company
        self._checking: Counter[str] = Counter()  # merge keys of runs still in check_request
        self._closed = False
        self._call_s: float | None = None  # moving average of a shared call's time; None before the first
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
        key = _merge_key(run.request, self.kind)  # type: ignore[arg-type]
        with self._lock:
            self._checking[key] += 1
        try:
            started = time.perf_counter()
            floor = runner.check_request(run.request, engine._context(run, 0), run.outcomes).floor
            run.add_time("check_request", started)
        finally:
            with self._lock:
                self._checking[key] -= 1
                if not self._checking[key]:
                    del self._checking[key]  # keys come from request params: do not keep them all
                self._nudge()  # a leader waiting for this run stops waiting if it was blocked
        if not floor.releases:
            runner.mark_skipped(run.outcomes)
            return engine._commit(run)  # blocked before anything was generated
        pending = self._submit(_Pending(run, key, _units(run.request, self.kind)))
        if pending.error is not None:
            return self._fail(run, pending.error)
        return self._finish(pending, floor)

    def _mergeable(self, request: Request) -> bool:
        return (self.kind is not None and request.seed is None and not request.disable_policies
                and self.max_batch > 1 and _units(request, self.kind) <= self.capacity)

    def _submit(self, pending: _Pending) -> _Pending:
        """Lead a call at once when the model is idle; else queue the run and sleep until a call has taken
        it or the last leader hands it the next call."""
        with self._lock:
            if self._closed:
                raise GensdkError("the batcher is closed")
            lead = not self._busy
            if lead:
                self._busy = True
            else:
                self._queue.append(pending)
                self._nudge()
        if not lead:
            pending.wake.wait()
        if not pending.done:
            self._lead(pending)
        return pending

    def _finish(self, pending: _Pending, floor: Verdict) -> Result:
        """transform_output, inspect_output and the commit, in the caller's thread, on its own outputs."""
        engine, runner, run = self.engine, self.engine._runner, pending.run
        _adopt(run.outcomes, pending.shared)
        ctx = engine._context(run, 0, run.request)
        verdicts = BatchVerdicts(len(pending.outputs), floor=most_severe([floor, pending.floor]))
        run.add_policy_seconds(runner.after_generation(pending.outputs, ctx, run.outcomes, verdicts))
        run.outputs, run.verdicts = pending.outputs, verdicts.final()
        return engine._commit(run)

    def _fail(self, run: _Run, error: BaseException) -> Result:
        run.error = str(error) if isinstance(error, GenerationError) else f"{type(error).__name__}: {error}"
        run.outputs, run.verdicts = [], []
        self.engine._commit(run)
        if isinstance(error, GenerationError):
            raise error
        raise GenerationError(f"the shared model call failed: {run.error}") from error

    # -- the leader's side ------------------------------------------------------------------------------------

    def _lead(self, head: _Pending) -> None:
        """Gather the runs that can join, make the shared call, wake every run of it, hand the model on."""
        batch = [head]
        try:
            self._gather(batch)
            started = time.perf_counter()
            self._generate_shared(batch)
            elapsed = time.perf_counter() - started
            self._call_s = elapsed if self._call_s is None else 0.8 * self._call_s + 0.2 * elapsed
        except BaseException as exc:  # every caller gets the failure and records it in its own thread
            for pending in batch:
                pending.error = exc
        finally:
            for pending in batch:
                pending.done = True
                pending.wake.set()
            self._hand_over()

    def _gather(self, batch: list[_Pending]) -> None:
        """Add the queued runs that can join to `batch`, waiting for more while company is likely."""
        key, started = batch[0].key, time.monotonic()
        while True:
            with self._lock:
                self._take_compatible(batch)
                left = started + self._patience(key) - time.monotonic()
                if len(batch) >= self.max_batch or left <= 0 or self._closed:
                    return
                arrival = self._gathering = threading.Event()
            arrival.wait(left)
            with self._lock:
                self._gathering = None

    def _patience(self, key: str) -> float:
        """How long, from the start of gathering, the leader may wait for company (called with the lock held,
        after the compatible queued runs were taken)."""
        if self._checking.get(key):  # a run that can join is in check_request: it will be here shortly
            return self.wait_s
        if self._queue:  # runs that cannot join are waiting for the model: every moment it idles delays
            return 0.0  # them, and a latecomer joins the next call anyway (diffusion, one class a request)
        if self._call_s is None:  # the call's cost is not known yet
            return self.wait_s
        return min(self.wait_s, WAIT_SHARE * self._call_s)

    def _nudge(self) -> None:
        """Wake the leader if it is waiting for company (call with the lock held)."""
        if self._gathering is not None:
            self._gathering.set()

    def _hand_over(self) -> None:
        """The oldest queued run leads the next call; with none, the model is idle."""
        with self._lock:
            if self._queue:
                self._queue.pop(0).wake.set()
            else:
                self._busy = False

    def _take_compatible(self, batch: list[_Pending]) -> None:
        units = sum(p.units for p in batch)
        for pending in list(self._queue):
            if len(batch) >= self.max_batch:
                return
            if pending.key == batch[0].key and units + pending.units <= self.capacity:
                self._queue.remove(pending)
                batch.append(pending)
                units += pending.units

    def _generate_shared(self, batch: list[_Pending]) -> None:
        """prepare_generation once, the model once, then each request's slice of the outputs."""
        engine, runner, model = self.engine, self.engine._runner, self.model
        merged = _merge([p.run.request for p in batch], self.kind)  # type: ignore[arg-type]
        ctx = GenerationContext(request=merged, seed=fresh_seed(), device=engine.device, dtype=engine.dtype,
                                modality=model.modality, model_info=batch[0].run.identity, model=model,
                                record_event=engine.record_event, item_conditions=_item_conditions(batch, self.kind))
        shared = runner.start(merged, model.modality)
        pre = BatchVerdicts(0)
        started = time.perf_counter()
        owners = runner.prepare(merged, ctx, shared, pre)
        prepared = time.perf_counter()
        with inference_mode():
            outputs = model.generate(merged, ctx)
        generated = time.perf_counter()
        if ctx.unread_item_conditions():  # every output would have been made without its own conditions
            raise GenerationError(f"model family {model.id!r} merges requests as 'items' but did not read each "
                                  "item's conditions (GenerationContext.conditions_per_item)")
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
        """Refuse new requests; those already queued are still served (by their own threads)."""
        with self._lock:
            self._closed = True
            self._nudge()


def _prompt_count(request: Request, kind: MergeKind) -> int:
    return len(request.prompts or request.messages or []) if kind == "prompts" else 1


def _units(request: Request, kind: MergeKind | None) -> int:
    """Sequences (prompts x n) or items this request puts into a micro-batch."""
    return request.n * (_prompt_count(request, kind) if kind else 1)


def _merge_key(request: Request, kind: MergeKind) -> str:
    """Requests with equal keys can share one model call."""
    shape: dict[str, Any] = {"params": request.params}
    if kind != "items":
        shape["conditions"] = request.conditions
    if kind == "prompts":
        shape.update(n=request.n, chat=request.messages is not None)
    else:
        shape.update(prompts=request.prompts, messages=request.messages)
    return digest_of(shape)


def _merge(requests: list[Request], kind: MergeKind) -> Request:
    first = requests[0]
    common = {"params": first.params, "conditions": {} if kind == "items" else first.conditions}
    if kind in ("count", "items"):
        return Request(n=sum(r.n for r in requests), prompts=first.prompts, messages=first.messages, **common)
    if first.messages is not None:
        return Request(n=first.n, messages=[m for r in requests for m in r.messages or []], **common)
    return Request(n=first.n, prompts=[p for r in requests for p in r.prompts or []], **common)


def _item_conditions(batch: list[_Pending], kind: MergeKind | None) -> list[dict[str, Any]] | None:
    """Each output's conditions for an "items" call, in output order (each request's n items in turn)."""
    if kind != "items":
        return None
    return [dict(p.run.request.conditions) for p in batch for _ in range(p.run.request.n)]


def _adopt(outcomes: dict[str, PolicyOutcome], shared: dict[str, PolicyOutcome]) -> None:
    """What the shared prepare_generation did (errors, time-outs, unapplied processors) is every request's."""
    for pid, common in shared.items():
        mine = outcomes[pid]
        mine.elapsed_ms += common.elapsed_ms
        if common.status in ("error", "timeout"):
            mine.status = common.status
            mine.error = common.error if mine.error is None else f"{mine.error}; {common.error}"
            mine.verdict = most_severe([mine.verdict, common.verdict])
