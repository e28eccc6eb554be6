"""The policy runner: every output through every enabled policy, each policy isolated, failures blocking.

Each configured policy instance is registered with the engine's plugin manager; for each (policy, hook) the
runner keeps a pluggy subset caller that reaches that policy alone, so tracing and signature validation are
pluggy's, while ordering, time limits and error isolation are the runner's. This module is essential: there is
no switch that skips it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

import pluggy

from gensdk.device import inference_mode
from gensdk.errors import MandatoryPolicyError, PluginError, RequestError
from gensdk.outputs import Output
from gensdk.policy import PIPELINE_HOOKS, Policy
from gensdk.request import GenerationContext, Request
from gensdk.verdicts import Finding, PolicyOutcome, Verdict, most_severe

__all__ = ["BatchVerdicts", "PolicyRunner"]

log = logging.getLogger("gensdk.pipeline")


class PolicyTimeout(Exception):
    pass


def call_with_timeout(fn: Callable[[], Any], timeout_s: float | None) -> Any:
    """Run fn on the calling thread's policy worker and give up after timeout_s. A hung policy thread cannot
    be killed in Python: its worker is abandoned (a daemon) and its outputs blocked, so it delays nothing but
    its own request; the next call gets a fresh worker."""
    if timeout_s is None:
        with inference_mode():
            return fn()
    return _PolicyWorker.for_this_thread().call(fn, timeout_s)


class _PolicyWorker:
    """A daemon thread that runs policy calls for one caller thread.

    Starting a thread per hook call cost ~0.15 ms, most of what a no-op policy added to a generate() call;
    a long-lived worker per caller thread cuts that to a queue hand-off. Per caller thread, because
    concurrent requests (the HTTP server) must not queue behind each other's hung policy. A worker idle for
    IDLE_EXIT_S exits, so threads that stop generating do not leave workers behind.
    """

    IDLE_EXIT_S = 30.0
    _local = threading.local()

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], dict[str, Any], threading.Event]] = queue.SimpleQueue()
        self._lock = threading.Lock()  # a job is never queued on a worker that has decided to exit
        self.alive = True
        threading.Thread(target=self._serve, daemon=True, name="gensdk-policy").start()

    @classmethod
    def for_this_thread(cls) -> _PolicyWorker:
        worker = getattr(cls._local, "worker", None)
        if worker is None or not worker.alive:
            worker = cls._local.worker = cls()
        return worker

    def call(self, fn: Callable[[], Any], timeout_s: float) -> Any:
        box: dict[str, Any] = {}
        done = threading.Event()
        worker = self
        while not worker._submit((fn, box, done)):  # it exited while idle: start another
            worker = self._local.worker = _PolicyWorker()
        if not done.wait(min(timeout_s, threading.TIMEOUT_MAX)):  # beyond TIMEOUT_MAX, wait() overflows
            worker.alive = False  # stuck in fn: never hand it another job
            raise PolicyTimeout(f"did not finish within {timeout_s:g} s")
        if "error" in box:
            raise box["error"]
        return box["value"]

    def _submit(self, job: tuple[Callable[[], Any], dict[str, Any], threading.Event]) -> bool:
        with self._lock:
            if self.alive:
                self._jobs.put(job)
            return self.alive

    def _serve(self) -> None:
        while True:
            try:
                job = self._jobs.get(timeout=self.IDLE_EXIT_S)
            except queue.Empty:
                with self._lock:
                    if self._jobs.empty():
                        self.alive = False
                        return
                continue
            self._run(*job)

    @staticmethod
    def _run(fn: Callable[[], Any], box: dict[str, Any], done: threading.Event) -> None:
        try:
            with inference_mode():  # inference_mode is thread-local: enter it in the worker too
                box["value"] = fn()
        except BaseException as exc:  # handed to the caller's thread in call()
            box["error"] = exc
        finally:
            done.set()


@dataclass
class BatchVerdicts:
    """Verdicts of the outputs of one micro-batch; `floor` applies to all of them."""

    size: int
    floor: Verdict = Verdict.PASS
    per_output: list[Verdict] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.per_output = [Verdict.PASS] * self.size

    def raise_all(self, verdict: Verdict) -> None:
        self.floor = most_severe([self.floor, verdict])

    def raise_one(self, index: int, verdict: Verdict) -> None:
        self.per_output[index] = most_severe([self.per_output[index], verdict])

    def final(self) -> list[Verdict]:
        return [most_severe([self.floor, v]) for v in self.per_output]


class PolicyRunner:
    def __init__(self, pm: pluggy.PluginManager, policies: Sequence[Policy]):
        self.policies = list(policies)
        _reject_duplicates(self.policies)
        for policy in self.policies:
            pm.register(policy, name=f"policy:{policy.id}")
        _reject_non_policy_pipeline_hooks(pm)
        self._callers = {
            (policy.id, hook): pm.subset_hook_caller(hook, [p for p in pm.get_plugins() if p is not policy])
            for policy in self.policies
            for hook in PIPELINE_HOOKS
            if any(impl.plugin is policy for impl in getattr(pm.hook, hook).get_hookimpls())
        }

    def start(self, request: Request, modality: str) -> dict[str, PolicyOutcome]:
        """Fresh outcomes for one request; refuses to switch off a mandatory policy."""
        by_id = {p.id: p for p in self.policies}
        for pid in request.disable_policies:
            if pid not in by_id:
                raise RequestError(f"cannot disable policy {pid!r}: it is not enabled on this engine")
            if by_id[pid].settings.mandatory:
                raise MandatoryPolicyError(f"policy {pid!r} is mandatory in this engine's configuration")
        outcomes = {}
        for policy in self.policies:
            outcome = PolicyOutcome(policy.id, policy.version, policy.config_digest)
            if policy.id in request.disable_policies:
                log.warning("policy %r switched off by the request; recorded in the audit trail", policy.id)
                outcome.status = "disabled"
            elif not policy.applies_to(modality):
                outcome.status = "not_applicable"
            outcomes[policy.id] = outcome
        return outcomes

    def check_request(self, request: Request, ctx: GenerationContext, outcomes: dict[str, PolicyOutcome]) -> Verdict:
        verdicts = BatchVerdicts(0)
        self._run_findings("check_request", {"request": request, "context": ctx}, ctx, outcomes, verdicts)
        return verdicts.floor

    def mark_skipped(self, outcomes: dict[str, PolicyOutcome]) -> None:
        """After a request-level block: the policies that never saw an output say so, not 'ok'."""
        for outcome in outcomes.values():
            if outcome.status == "ok" and not outcome.findings:
                outcome.status = "skipped"

    def prepare(self, request: Request, ctx: GenerationContext, outcomes: dict[str, PolicyOutcome], verdicts: BatchVerdicts) -> dict[int, str]:
        """Collect processors into ctx.processors; returns id(processor) -> policy id."""
        owners: dict[int, str] = {}
        for policy, result in self._run("prepare_generation", {"request": request, "context": ctx}, ctx, outcomes, verdicts):
            for processor in result or []:
                ctx.processors.append(processor)
                owners[id(processor)] = policy.id
        return owners

    def transform(self, outputs: list[Output], ctx: GenerationContext, outcomes: dict[str, PolicyOutcome], verdicts: BatchVerdicts) -> None:
        self._run_findings("transform_output", {"outputs": outputs, "context": ctx}, ctx, outcomes, verdicts)

    def inspect(self, outputs: list[Output], ctx: GenerationContext, outcomes: dict[str, PolicyOutcome], verdicts: BatchVerdicts) -> None:
        self._run_findings("inspect_output", {"outputs": outputs, "context": ctx}, ctx, outcomes, verdicts)

    def _run_findings(self, hook: str, kwargs: dict[str, Any], ctx: GenerationContext, outcomes: dict[str, PolicyOutcome], verdicts: BatchVerdicts) -> None:
        for policy, result in self._run(hook, kwargs, ctx, outcomes, verdicts):
            self._record_findings(policy, result, ctx, outcomes[policy.id], verdicts)

    def _run(self, hook: str, kwargs: dict[str, Any], ctx: GenerationContext, outcomes: dict[str, PolicyOutcome], verdicts: BatchVerdicts) -> list[tuple[Policy, Any]]:
        """Call `hook` on each active policy in order; errors and time-outs are recorded, never raised."""
        results = []
        for policy in self.policies:
            caller = self._callers.get((policy.id, hook))
            outcome = outcomes[policy.id]
            if caller is None or outcome.status in ("disabled", "not_applicable"):
                continue
            started = time.perf_counter()
            try:
                returned = call_with_timeout(lambda: caller(**kwargs), policy.settings.timeout_s)
            except PolicyTimeout as exc:
                # A transform still running in its abandoned thread may yet change the outputs: they can no
                # longer match any digest we record, so they are blocked even under on_error="allow".
                self._fail(policy, outcome, "timeout", f"{hook}: {exc}", verdicts, force_block=hook == "transform_output")
            except Exception as exc:
                self._fail(policy, outcome, "error", f"{hook}: {type(exc).__name__}: {exc}", verdicts)
            else:
                results.append((policy, returned[0] if returned else None))
            finally:
                outcome.elapsed_ms += (time.perf_counter() - started) * 1000
        return results

    def _fail(self, policy: Policy, outcome: PolicyOutcome, status: str, message: str, verdicts: BatchVerdicts, force_block: bool = False) -> None:
        allowed = policy.settings.on_error == "allow" and not force_block
        verdict = Verdict.BYPASSED if allowed else Verdict.BLOCK
        log.error("policy %r %s (%s): %s", policy.id, status, "bypassed" if allowed else "output blocked", message)
        outcome.status = status  # type: ignore[assignment]
        outcome.error = message if outcome.error is None else f"{outcome.error}; {message}"
        outcome.verdict = most_severe([outcome.verdict, verdict])
        verdicts.raise_all(verdict)

    def _record_findings(self, policy: Policy, result: Any, ctx: GenerationContext, outcome: PolicyOutcome, verdicts: BatchVerdicts) -> None:
        for item in result or []:
            if not isinstance(item, Finding):
                self._fail(policy, outcome, "error", f"returned {type(item).__name__}, not a Finding", verdicts)
                continue
            self._record_one(policy, item, ctx, outcome, verdicts)

    def _record_one(self, policy: Policy, finding: Finding, ctx: GenerationContext, outcome: PolicyOutcome, verdicts: BatchVerdicts) -> None:
        local = finding.output_index
        if local is not None and not 0 <= local < verdicts.size:
            self._fail(policy, outcome, "error", f"finding {finding.code!r} names output {local}, which does not exist", verdicts)
            return
        glob = None if local is None else local + ctx.batch_offset
        outcome.findings.append(replace(finding, policy_id=policy.id, output_index=glob))
        if not finding.violation:
            return
        verdict = Verdict.BLOCK if policy.settings.on_fail == "block" else Verdict.WARN
        if outcome.status == "ok":
            outcome.status = "violation"
        outcome.verdict = most_severe([outcome.verdict, verdict])
        if local is None:
            verdicts.raise_all(verdict)
        else:
            verdicts.raise_one(local, verdict)

    def fail_unapplied(self, ctx: GenerationContext, owners: dict[int, str], outcomes: dict[str, PolicyOutcome], verdicts: BatchVerdicts, family_id: str) -> None:
        """A processor the family did not apply means its policy never acted: block (fail closed)."""
        by_id = {p.id: p for p in self.policies}
        for processor in ctx.untaken():
            pid = owners[id(processor)]
            message = f"model family {family_id!r} did not apply processor {type(processor).__name__}"
            self._fail(by_id[pid], outcomes[pid], "error", message, verdicts)


def _reject_duplicates(policies: Sequence[Policy]) -> None:
    seen: set[str] = set()
    for policy in policies:
        if not isinstance(policy, Policy):
            raise PluginError(f"{policy!r} is not a gensdk.Policy instance")
        if policy.id in seen:
            raise PluginError(f"policy {policy.id!r} is enabled twice; enable each policy once")
        seen.add(policy.id)


def _reject_non_policy_pipeline_hooks(pm: pluggy.PluginManager) -> None:
    for hook in PIPELINE_HOOKS:
        for impl in getattr(pm.hook, hook).get_hookimpls():
            if not isinstance(impl.plugin, Policy):
                raise PluginError(
                    f"plugin {impl.plugin_name!r} implements the pipeline hook {hook!r} outside a Policy; "
                    "write a gensdk.Policy subclass and add it with register_policies"
                )
