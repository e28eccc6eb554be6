"""The engine: one call that returns outputs already checked, transformed and logged.

    with Engine("gensdk.toml") as engine:
        result = engine.generate("models/adult-gmm", n=1000, seed=7)
        frame = result.raise_for_verdict().table()

Data flow per request (see DESIGN.md): resolve the model -> check_request -> for each micro-batch:
prepare_generation -> family.generate -> transform_output -> inspect_output -> verdicts -> audit append
(committed) -> finalize_output (released outputs) -> Result. Nothing is returned before its audit record is committed.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from gensdk.audit import AuditSink, open_audit_sink
from gensdk.config import EngineConfig
from gensdk.device import batch_seed, inference_mode, resolve_device, resolve_dtype
from gensdk.errors import ConfigError, GenerationError, GensdkError, ModelLoadError, PluginError, UnknownComponentError
from gensdk.family import MANIFEST_NAME, ModelFamily, read_manifest
from gensdk.outputs import Output
from gensdk.pipeline import BatchVerdicts, FirstBatch, PolicyRunner
from gensdk.plugins import get_plugin_host
from gensdk.policy import Policy
from gensdk.request import GenerationContext, Request, fresh_seed, parse_request
from gensdk.result import Result
from gensdk.verdicts import PolicyOutcome, Verdict, most_severe

if TYPE_CHECKING:
    from gensdk.streaming import TextStream

__all__ = ["Engine"]

log = logging.getLogger("gensdk.engine")


STAGE_OF_HOOK = {"check_request": "check_request", "prepare_generation": "prepare",
                 "transform_output": "transform", "inspect_output": "inspect"}


@dataclass
class _Run:
    """Everything one generate() call accumulates before it is written to the audit trail."""

    request: Request
    seed: int
    model: ModelFamily
    outcomes: dict[str, PolicyOutcome]
    identity: dict[str, Any] = field(default_factory=dict)  # the model's, taken once per request
    outputs: list[Output] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    # Extra top-level fields of the audit record: gensdk.batching records the model call a request shared.
    record_extra: dict[str, Any] = field(default_factory=dict)

    def add_time(self, stage: str, started: float) -> None:
        self.add_ms(stage, (time.perf_counter() - started) * 1000)

    def add_ms(self, stage: str, ms: float) -> None:
        self.timings[stage] = self.timings.get(stage, 0.0) + ms

    def add_policy_seconds(self, seconds: dict[str, float]) -> None:
        """The runner's per-hook seconds under the record's stage names."""
        for hook, secs in seconds.items():
            self.add_ms(STAGE_OF_HOOK[hook], secs * 1000)


class Engine:
    def __init__(
        self,
        config: EngineConfig | Mapping[str, Any] | str | Path | None = None,
        *,
        plugins: Iterable[Any] = (),
        load_entrypoints: bool = True,
        policies: Sequence[Policy] = (),
        audit: AuditSink | str | Path | None = None,
    ):
        """`plugins` are registered beside (or, with load_entrypoints=False, instead of) installed ones;
        `policies` are policy instances enabled after those the configuration names."""
        self.config = EngineConfig.parse(config)
        self.host = get_plugin_host(plugins, load_entrypoints)
        # "auto" needs torch to look for CUDA, and importing torch takes seconds: resolve it on first use so
        # a bad model path or request fails fast. An explicit device is checked now.
        self._device = None if self.config.device == "auto" else resolve_device(self.config.device)
        self.policies = [*self._configured_policies(), *policies]
        self._runner = PolicyRunner(self.host.pm, self.policies)
        self.audit = audit if isinstance(audit, AuditSink) else self._open_audit(audit)
        self._models: dict[str, ModelFamily] = {}

    @property
    def device(self) -> str:
        if self._device is None:
            self._device = resolve_device(self.config.device)
        return self._device

    @property
    def dtype(self) -> str:
        return resolve_dtype(self.config.dtype, self.device)

    def _configured_policies(self) -> list[Policy]:
        return [
            self.host.policies.get(pc.id)(pc.options, settings=pc.settings())
            for pc in self.config.policies
        ]

    def _open_audit(self, target: str | Path | None) -> AuditSink:
        sinks = {reg.id: reg.component for reg in self.host.sinks}
        try:
            return open_audit_sink(target or self.config.audit, sinks=sinks, **self.config.audit_options)
        except (TypeError, ValueError) as exc:  # an unknown or ill-typed audit_options key
            raise ConfigError(f"invalid audit_options {sorted(self.config.audit_options)}: {exc}") from None

    # -- models ---------------------------------------------------------------------------------------------

    def load_model(self, path: str | Path, **options: Any) -> ModelFamily:
        """Load (once per path and options; cached on the engine) a model directory through the family that
        owns it. `options` go to `family.load(path, **options)`: e.g. the LLM family's `allow_pickle=True` or
        `trust_remote_code=True`, which its audit identity records."""
        key = repr((str(Path(path).resolve()), sorted(options.items())))
        if key not in self._models:
            self._models[key] = self._load_uncached(Path(path), options)
        return self._models[key]

    def _load_uncached(self, path: Path, options: Mapping[str, Any]) -> ModelFamily:
        family = self._family_for(path)
        try:
            return family.load(path, **options)
        except GensdkError:
            raise
        except Exception as exc:
            raise ModelLoadError(f"cannot load {path} as a {family.id} model: {type(exc).__name__}: {exc}") from exc

    def _family_for(self, path: Path) -> type[ModelFamily]:
        if not path.is_dir():
            raise ModelLoadError(f"model directory {path} does not exist or is not a directory")
        if (path / MANIFEST_NAME).exists():
            return self.host.families.get(read_manifest(path)["family"])
        claimants = [reg.component for reg in self.host.families if reg.component.recognizes(path)]
        if len(claimants) == 1:
            return claimants[0]
        if not claimants:
            installed = ", ".join(reg.id for reg in self.host.families) or "none"
            raise ModelLoadError(
                f"{path} is not a model directory: it has no {MANIFEST_NAME} and no installed model family "
                f"recognises its layout (installed: {installed})"
            )
        names = ", ".join(c.id for c in claimants)
        raise ModelLoadError(f"{path} is claimed by several model families ({names}); load it with one of them")

    def family(self, family_id: str) -> type[ModelFamily]:
        return self.host.families.get(family_id)

    def policy(self, policy_id: str) -> Policy:
        for policy in self.policies:
            if policy.id == policy_id:
                return policy
        raise UnknownComponentError(f"policy {policy_id!r} is not enabled on this engine")

    # -- generation -----------------------------------------------------------------------------------------

    def generate(
        self,
        model: ModelFamily | str | Path,
        request: Request | Mapping[str, Any] | None = None,
        **fields: Any,
    ) -> Result:
        """Generate through every enabled policy; return only after the audit record is committed."""
        run = self._start_run(model, request, fields)
        try:
            self._execute(run)
        except GenerationError as exc:
            run.error = str(exc)
            run.outputs, run.verdicts = [], []
            self._commit(run)
            raise
        return self._commit(run)

    def stream(
        self,
        model: ModelFamily | str | Path,
        request: Request | Mapping[str, Any] | None = None,
        *,
        lookback: int | None = None,
        **fields: Any,
    ) -> TextStream:
        """Stream one completion's text through every enabled policy (see gensdk.streaming): chunks are
        released `lookback` characters behind the model, the audit record is committed before the last one,
        and the stream's `.result` holds the Result once it is exhausted."""
        from gensdk.streaming import stream

        return stream(self, model, request, lookback=lookback, **fields)

    def _start_run(self, model: ModelFamily | str | Path, request: Request | Mapping[str, Any] | None, fields: Mapping[str, Any]) -> _Run:
        """Resolve the model, validate the request, pick the seed and open the policies' outcomes."""
        family = model if isinstance(model, ModelFamily) else self.load_model(model)
        req = parse_request(request, fields)
        family.check_request(req)  # once, on the whole request, before it is split into micro-batches
        seed = req.seed if req.seed is not None else fresh_seed()
        return _Run(req, seed, family, self._runner.start(req, family.modality), identity=family.identity())

    def _execute(self, run: _Run) -> None:
        batch_size = self.config.max_batch_size or run.model.default_batch_size
        if batch_size < 1:
            raise ConfigError(f"max_batch_size must be at least 1, not {batch_size}")
        batches = run.model.split(run.request, batch_size)
        first = FirstBatch(batches[0], self._context(run, 0, batches[0]), BatchVerdicts(0)) if batches else None
        checks = self._runner.check_request(run.request, self._context(run, batch_index=0), run.outcomes, first)
        run.add_policy_seconds(checks.seconds)
        if not checks.floor.releases:
            self._runner.mark_skipped(run.outcomes)
            return  # blocked before anything was generated
        for index, sub in enumerate(batches):
            prepared = (first, checks.prepared) if index == 0 and first and checks.prepared is not None else None
            self._run_batch(run, sub, index, checks.floor, prepared)

    def _run_batch(self, run: _Run, sub: Request, index: int, floor: Verdict,
                   prepared: tuple[FirstBatch, dict[int, str]] | None = None) -> None:
        if prepared is None:
            ctx, pre = self._context(run, index, sub), BatchVerdicts(0, floor=floor)
            started = time.perf_counter()
            owners = self._runner.prepare(sub, ctx, run.outcomes, pre)
            run.add_time("prepare", started)
        else:  # prepared in the request checks' hand-off
            first, owners = prepared
            ctx, pre = first.context, first.verdicts
        ctx.batch_offset = len(run.outputs)
        started = time.perf_counter()
        with inference_mode():
            outputs = run.model.generate(sub, ctx)
        run.add_time("generate", started)
        verdicts = BatchVerdicts(len(outputs), floor=pre.floor)
        self._runner.fail_unapplied(ctx, owners, run.outcomes, verdicts, run.model.id)
        run.add_policy_seconds(self._runner.after_generation(outputs, ctx, run.outcomes, verdicts))
        run.outputs.extend(outputs)
        run.verdicts.extend(verdicts.final())

    def _context(self, run: _Run, batch_index: int, sub: Request | None = None) -> GenerationContext:
        return GenerationContext(
            request=sub or run.request,
            seed=batch_seed(run.seed, batch_index),
            device=self.device,
            dtype=self.dtype,
            modality=run.model.modality,
            model_info=run.identity,
            model=run.model,
            batch_index=batch_index,
            record_event=self.record_event,
        )

    def _commit(self, run: _Run) -> Result:
        started = time.perf_counter()
        outcomes = list(run.outcomes.values())
        verdict = _overall(run, outcomes)
        digests = [o.digest() for o in run.outputs]
        run.add_time("digest", started)
        body = {**self._record_body(run, outcomes, verdict, digests), **run.record_extra}
        receipt = self.audit.append(body)
        released = [o for o, v in zip(run.outputs, run.verdicts) if v.releases]
        for output, digest in zip(run.outputs, digests):
            output.metadata["audit_record_id"] = receipt.record_id
            output.metadata["digest"] = digest
        self._finalize(run, released, {"record_id": receipt.record_id, "seq": receipt.seq, "hash": receipt.hash, "body": body})
        return Result(
            outputs=released,
            verdict=verdict,
            outcomes=outcomes,
            output_verdicts=list(run.verdicts),
            audit_record_id=receipt.record_id,
            audit_hash=receipt.hash,
            seed=run.seed,
            model=body["model"],
        )

    def _finalize(self, run: _Run, released: list[Output], record: dict[str, Any]) -> None:
        """The finalize_output hook on the released outputs, skipping policies that did not take part."""
        if not released:
            return
        idle = [p for p in self.policies if run.outcomes[p.id].status in ("disabled", "not_applicable")]
        try:
            self.host.pm.subset_hook_caller("finalize_output", remove_plugins=idle)(outputs=released, record=record)
        except GensdkError:
            raise
        except Exception as exc:
            raise PluginError(f"finalize_output failed after audit record {record['record_id']} was committed; "
                              f"the outputs are withheld: {type(exc).__name__}: {exc}") from exc

    def _record_body(self, run: _Run, outcomes: list[PolicyOutcome], verdict: Verdict, digests: list[str]) -> dict[str, Any]:
        from gensdk import __version__

        return {
            "record_id": uuid.uuid4().hex,
            "kind": "generation",
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "request_id": run.request.request_id,
            "request_digest": run.request.digest(),
            "seed": run.seed,
            "model": run.identity,
            "engine": {"gensdk_version": __version__, "device": self.device, "dtype": self.dtype},
            "policies": [o.to_record() for o in outcomes],
            "outputs": [
                {"index": i, "modality": o.modality, "digest": d, "verdict": v.value}
                for i, (o, d, v) in enumerate(zip(run.outputs, digests, run.verdicts))
            ],
            "verdict": verdict.value,
            "released": sum(v.releases for v in run.verdicts),
            "error": run.error,
            "timings_ms": {k: round(v, 3) for k, v in run.timings.items()},
        }

    def write_outputs(self, outputs: Sequence[Output], path: str | Path) -> list[Path]:
        """Write released outputs to files through this engine's writers (see `gensdk.write_outputs`)."""
        from gensdk.outputs import write_outputs

        return write_outputs(outputs, path, host=self.host)

    # -- window-level records -------------------------------------------------------------------------------

    def record_event(self, kind: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Append a record that is not one generation call: a bias audit over a window of outputs, a report.

        `kind` names it (not "generation"); `body` must be JSON-serialisable and should hold digests and
        figures, not content. Returns ``{"record_id", "seq", "hash"}`` once the record is committed.
        """
        if not kind or kind == "generation":
            raise ValueError(f"record_event needs a kind other than 'generation', got {kind!r}")
        full = {**body, "record_id": uuid.uuid4().hex, "kind": kind,
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        receipt = self.audit.append(full)
        return {"record_id": receipt.record_id, "seq": receipt.seq, "hash": receipt.hash}

    # -- lifecycle ------------------------------------------------------------------------------------------

    def close(self) -> None:
        self.audit.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _overall(run: _Run, outcomes: list[PolicyOutcome]) -> Verdict:
    """Most severe of every output's verdict and every policy's; no output at all (blocked early, or an
    error) is a block."""
    if run.error is not None or not run.verdicts:
        return Verdict.BLOCK
    return most_severe([*run.verdicts, *(o.verdict for o in outcomes)])

