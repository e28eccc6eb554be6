"""Policy hooks run on a worker thread, each under its own time limit, several per hand-off.

A hung policy cannot be killed in Python: when a call passes its limit the caller stops waiting, the worker
is abandoned (a daemon) with the hung call, and the calls after it run on a fresh worker, so a hang delays
nothing but its own request. Handing a call to another thread and back costs 0.1-0.3 ms here (two thread
wake-ups), so the runner hands over every policy's call of a stage, or of two stages, at once: the worker
runs them in order and the caller sleeps until the running call's deadline, not once per call.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from gensdk.device import inference_mode

__all__ = ["CallOutcome", "PolicyCall", "PolicyTimeout", "call_with_timeout", "run_calls"]

NO_LIMIT_POLL_S = 0.5  # how often a caller looks at a batch whose running call has no limit


class PolicyTimeout(Exception):
    pass


@dataclass(frozen=True)
class PolicyCall:
    fn: Callable[[], Any]
    timeout_s: float | None  # None: no limit


@dataclass
class CallOutcome:
    value: Any = None
    error: BaseException | None = None
    timed_out: bool = False
    elapsed_s: float = 0.0
    finished_at: float = 0.0  # time.perf_counter() when it returned (or was given up)


def run_calls(calls: Sequence[PolicyCall], *, gate: int | None = None,
              clean: Callable[[CallOutcome], bool] | None = None) -> list[CallOutcome]:
    """Run `calls` in order and return one outcome each; never raises for what a call does.

    With `gate`, the calls from index `gate` on run only when `clean` holds for every outcome before them
    (the request checks came back clean, so preparing the generation in the same hand-off is not wasted);
    otherwise the result stops at `gate`. Calls without a limit run on the calling thread when none of the
    batch has one (no hand-off at all)."""
    if all(call.timeout_s is None for call in calls):
        return _run_inline(calls, gate, clean)
    outcomes: list[CallOutcome] = []
    while len(outcomes) < len(calls):
        if outcomes and outcomes[-1].timed_out:  # the rest run on a fresh worker; a time-out is never clean
            calls = calls[:gate] if gate is not None and len(outcomes) <= gate else calls
            if len(outcomes) == len(calls):
                break
        batch_gate = None if gate is None or len(outcomes) > gate else gate - len(outcomes)
        done, stopped = _PolicyWorker.for_this_thread().run(calls[len(outcomes):], batch_gate, clean)
        outcomes += done
        if stopped:
            break
    return outcomes


def _run_inline(calls: Sequence[PolicyCall], gate: int | None, clean: Callable[[CallOutcome], bool] | None) -> list[CallOutcome]:
    outcomes: list[CallOutcome] = []
    with inference_mode():
        for index, call in enumerate(calls):
            if index == gate and not all(map(clean, outcomes)):  # type: ignore[arg-type]
                break
            outcomes.append(_invoke(call))
    return outcomes


def call_with_timeout(fn: Callable[[], Any], timeout_s: float | None) -> Any:
    """One call: its value, its exception re-raised, or PolicyTimeout."""
    (outcome,) = run_calls([PolicyCall(fn, timeout_s)])
    if outcome.timed_out:
        raise PolicyTimeout(f"did not finish within {timeout_s:g} s")
    if outcome.error is not None:
        raise outcome.error
    return outcome.value


def _invoke(call: PolicyCall) -> CallOutcome:
    started = time.perf_counter()
    try:
        outcome = CallOutcome(value=call.fn())
    except BaseException as exc:  # handed to the caller as an outcome
        outcome = CallOutcome(error=exc)
    outcome.finished_at = time.perf_counter()
    outcome.elapsed_s = outcome.finished_at - started
    return outcome


class _Batch:
    """Calls handed to a worker together; the worker appends outcomes, the caller watches the deadline."""

    def __init__(self, calls: Sequence[PolicyCall], gate: int | None, clean: Callable[[CallOutcome], bool] | None):
        self.calls, self.gate, self.clean = calls, gate, clean
        self.stopped = False  # at the gate: an earlier outcome was not clean
        # A later call's deadline is at least its limit away, so the caller must look again by then: the
        # worker may reach a call with a shorter limit while the caller sleeps on the running one's.
        self.later_limit = [min((c.timeout_s for c in calls[i + 1:] if c.timeout_s is not None), default=float("inf"))
                            for i in range(len(calls))]
        self.outcomes: list[CallOutcome] = []
        self.running_since = time.perf_counter()  # of call len(outcomes); queueing counts against call 0
        self.abandoned = False
        self.lock = threading.Lock()
        self.finished = threading.Lock()  # released by the worker when every call has an outcome
        self.finished.acquire()

    def execute(self) -> None:
        with inference_mode():  # inference_mode is thread-local: enter it in the worker too
            for index, call in enumerate(self.calls):
                with self.lock:
                    if self.abandoned:
                        return
                    if index == self.gate and not all(map(self.clean, self.outcomes)):  # type: ignore[arg-type]
                        self.stopped = True
                        break
                    self.running_since = time.perf_counter()
                outcome = _invoke(call)
                with self.lock:
                    if self.abandoned:  # given up on while it ran: the caller has moved on
                        return
                    self.outcomes.append(outcome)
                    self.running_since = time.perf_counter()  # the next call's clock: never the last one's start
        self.finished.release()

    def wait(self) -> bool:
        """Outcomes for every call (True), or a time-out recorded for the running one (False)."""
        while True:
            with self.lock:
                index, since = len(self.outcomes), self.running_since
                if index == len(self.calls) or self.stopped:
                    return True
                limit = self.calls[index].timeout_s
                now = time.perf_counter()
                if limit is not None and now - since >= limit:
                    self.abandoned = True
                    self.outcomes.append(CallOutcome(timed_out=True, elapsed_s=now - since, finished_at=now))
                    return False
            pause = min(NO_LIMIT_POLL_S if limit is None else since + limit - now, self.later_limit[index])
            if self.finished.acquire(timeout=min(pause, threading.TIMEOUT_MAX)):  # beyond TIMEOUT_MAX it overflows
                return True


class _PolicyWorker:
    """A daemon thread that runs policy calls for one caller thread.

    Starting a thread per hook call cost ~0.15 ms; a long-lived worker per caller thread cuts that to a queue
    hand-off. Per caller thread, because concurrent requests (the HTTP server) must not queue behind each
    other's hung policy. A worker idle for IDLE_EXIT_S exits, so threads that stop generating do not leave
    workers behind.
    """

    IDLE_EXIT_S = 30.0
    _local = threading.local()

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[_Batch] = queue.SimpleQueue()
        self._lock = threading.Lock()  # a job is never queued on a worker that has decided to exit
        self.alive = True
        threading.Thread(target=self._serve, daemon=True, name="gensdk-policy").start()

    @classmethod
    def for_this_thread(cls) -> _PolicyWorker:
        worker = getattr(cls._local, "worker", None)
        if worker is None or not worker.alive:
            worker = cls._local.worker = cls()
        return worker

    def run(self, calls: Sequence[PolicyCall], gate: int | None = None,
            clean: Callable[[CallOutcome], bool] | None = None) -> tuple[list[CallOutcome], bool]:
        """Outcomes of a prefix of `calls` (all of them, up to and including the first that timed out, or up
        to the gate), and whether the gate stopped it."""
        batch = _Batch(calls, gate, clean)
        worker = self
        while not worker._submit(batch):  # it exited while idle: start another
            worker = self._local.worker = _PolicyWorker()
        if not batch.wait():
            worker.alive = False  # stuck in a call: never hand it another job
        return batch.outcomes, batch.stopped

    def _submit(self, batch: _Batch) -> bool:
        with self._lock:
            if self.alive:
                self._jobs.put(batch)
            return self.alive

    def _serve(self) -> None:
        while True:
            try:
                batch = self._jobs.get(timeout=self.IDLE_EXIT_S)
            except queue.Empty:
                with self._lock:
                    if self._jobs.empty():
                        self.alive = False
                        return
                continue
            batch.execute()
