"""The policy runner: every output through every enabled policy, each policy isolated, failures blocking.

Each configured policy instance is registered with the engine's plugin manager; for each (policy, hook) the
runner keeps a pluggy subset caller that reaches that policy alone, so tracing and signature validation are
pluggy's, while ordering, time limits and error isolation are the runner's. This module is essential: there is
no switch that skips it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

import pluggy

from gensdk.errors import MandatoryPolicyError, PluginError, RequestError
from gensdk.outputs import Output
from gensdk.policy import PIPELINE_HOOKS, Policy
from gensdk.policy_worker import CallOutcome, PolicyCall, PolicyTimeout, call_with_timeout, run_calls
from gensdk.request import GenerationContext, Request
from gensdk.verdicts import Finding, PolicyOutcome, Verdict, most_severe

__all__ = ["BatchVerdicts", "FirstBatch", "PolicyRunner", "PolicyTimeout", "RequestChecks", "call_with_timeout"]

log = logging.getLogger("gensdk.pipeline")


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


Stage = tuple[str, dict[str, Any], BatchVerdicts]  # hook, its keyword arguments, the verdicts its failures raise


@dataclass
class FirstBatch:
    """The first micro-batch, prepared in the request checks' hand-off when they come back clean."""

    request: Request
    context: GenerationContext
    verdicts: BatchVerdicts


@dataclass
class RequestChecks:
    floor: Verdict
    prepared: dict[int, str] | None  # the first batch's processor owners, when prepare_generation ran too
    seconds: dict[str, float]  # per hook that ran


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

    def check_request(self, request: Request, ctx: GenerationContext, outcomes: dict[str, PolicyOutcome],
                      first_batch: FirstBatch | None = None) -> RequestChecks:
        """check_request on every policy. With `first_batch`, prepare_generation for it runs in the same
        hand-off when every check came back clean (no violation, no error: almost every request), and
        `prepared` holds its processors' owners; otherwise `prepared` is None and the batch needs `prepare`."""
        verdicts = BatchVerdicts(0)
        stages: list[Stage] = [("check_request", {"request": request, "context": ctx}, verdicts)]
        if first_batch is not None:
            stages.append(("prepare_generation", {"request": first_batch.request, "context": first_batch.context}, first_batch.verdicts))
        seconds: dict[str, float] = {}
        results = self._run(stages, outcomes, seconds, gate_clean=_clean_check)
        self._record_all([r for r in results if r[1] == "check_request"], ctx, outcomes, verdicts)
        prepared = None
        if first_batch is not None and "prepare_generation" in seconds:
            prepared = self._collect_processors(first_batch.context, [r for r in results if r[1] == "prepare_generation"])
        return RequestChecks(verdicts.floor, prepared, seconds)

    def mark_skipped(self, outcomes: dict[str, PolicyOutcome]) -> None:
        """After a request-level block: the policies that never saw an output say so, not 'ok'."""
        for outcome in outcomes.values():
            if outcome.status == "ok" and not outcome.findings:
                outcome.status = "skipped"

    def prepare(self, request: Request, ctx: GenerationContext, outcomes: dict[str, PolicyOutcome], verdicts: BatchVerdicts) -> dict[int, str]:
        """Collect processors into ctx.processors; returns id(processor) -> policy id."""
        return self._collect_processors(ctx, self._run([("prepare_generation", {"request": request, "context": ctx}, verdicts)], outcomes))

    @staticmethod
    def _collect_processors(ctx: GenerationContext, results: list[tuple[Policy, str, Any]]) -> dict[int, str]:
        owners: dict[int, str] = {}
        for policy, _, result in results:
            for processor in result or []:
                ctx.processors.append(processor)
                owners[id(processor)] = policy.id
        return owners

    def after_generation(self, outputs: list[Output], ctx: GenerationContext, outcomes: dict[str, PolicyOutcome],
                         verdicts: BatchVerdicts) -> dict[str, float]:
        """transform_output then inspect_output, every policy's calls in one hand-off to the worker; returns
        the seconds each of the two stages took."""
        kwargs = {"outputs": outputs, "context": ctx}
        seconds: dict[str, float] = {}
        results = self._run([("transform_output", kwargs, verdicts), ("inspect_output", kwargs, verdicts)], outcomes, seconds)
        self._record_all(results, ctx, outcomes, verdicts)
        return seconds

    def _record_all(self, results: list[tuple[Policy, str, Any]], ctx: GenerationContext, outcomes: dict[str, PolicyOutcome], verdicts: BatchVerdicts) -> None:
        for policy, _, result in results:
            self._record_findings(policy, result, ctx, outcomes[policy.id], verdicts)

    def _run(self, stages: list[Stage], outcomes: dict[str, PolicyOutcome], seconds: dict[str, float] | None = None,
             gate_clean: Callable[[CallOutcome], bool] | None = None) -> list[tuple[Policy, str, Any]]:
        """Each stage's hook on each active policy, in order, in one hand-off; errors and time-outs are recorded
        (against the stage's verdicts), never raised.

        Returns (policy, hook, first result) for the calls that returned; fills `seconds` with how long each
        stage that ran took, hand-overs included. With `gate_clean`, the stages after the first run only if
        every call of the first satisfies it."""
        planned = [(policy, hook, self._callers[(policy.id, hook)], kwargs, verdicts) for hook, kwargs, verdicts in stages
                   for policy in self.policies
                   if (policy.id, hook) in self._callers and outcomes[policy.id].status not in ("disabled", "not_applicable")]
        started = time.perf_counter()
        gate = sum(step[1] == stages[0][0] for step in planned) if gate_clean is not None else None
        done = run_calls([PolicyCall(_bind(caller, kwargs), policy.settings.timeout_s) for policy, _, caller, kwargs, _ in planned],
                         gate=gate, clean=gate_clean)
        if seconds is not None:
            ran = [stage[0] for stage in stages] if len(done) == len(planned) else [stages[0][0]]
            seconds.update(_stage_seconds(ran, [step[1] for step in planned], done, started))
        results = []
        for (policy, hook, _, _, verdicts), outcome in zip(planned, done):
            outcomes[policy.id].elapsed_ms += outcome.elapsed_s * 1000
            if outcome.timed_out:
                # A transform still running in its abandoned thread may yet change the outputs: they can no
                # longer match any digest we record, so they are blocked even under on_error="allow".
                message = f"{hook}: did not finish within {policy.settings.timeout_s:g} s"
                self._fail(policy, outcomes[policy.id], "timeout", message, verdicts, force_block=hook == "transform_output")
            elif isinstance(outcome.error, Exception):
                error = outcome.error
                self._fail(policy, outcomes[policy.id], "error", f"{hook}: {type(error).__name__}: {error}", verdicts)
            elif outcome.error is not None:
                raise outcome.error  # KeyboardInterrupt, SystemExit: not the policy's failure to record
            else:
                results.append((policy, hook, outcome.value[0] if outcome.value else None))
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


def _clean_check(outcome: CallOutcome) -> bool:
    """A check_request call that cannot lower the floor: it returned, and found no violation."""
    if outcome.error is not None or outcome.timed_out:
        return False
    found = outcome.value[0] if outcome.value else None
    return all(isinstance(f, Finding) and not f.violation and f.output_index is None for f in found or [])


def _bind(caller: Any, kwargs: dict[str, Any]) -> Any:
    return lambda: caller(**kwargs)


def _stage_seconds(stages: list[str], hooks: list[str], done: list[CallOutcome], started: float) -> dict[str, float]:
    """Split the time from hand-over to return at each stage's last call; the last stage takes the rest."""
    seconds, mark, returned = {}, started, time.perf_counter()
    for stage in stages:
        ends = [outcome.finished_at for hook, outcome in zip(hooks, done) if hook == stage]
        end = returned if stage == stages[-1] else max(ends, default=mark)
        seconds[stage], mark = end - mark, end
    return seconds


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
