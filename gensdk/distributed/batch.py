"""Batch jobs: a JSONL file of requests in, one directory of released outputs per request and audit records out.

    report = run_batch("requests.jsonl", "out/", config="gensdk.toml", audit="postgresql://...", use_ray=True)

Locally (`use_ray=False`) one `BatchWorker` runs every request in this process. On Ray, `ray.data.from_items`
feeds `map_batches(BatchWorker, compute=ActorPoolStrategy(size=workers))`: one worker, so one Engine, per actor,
each actor holding one GPU where the cluster has GPUs (else one CPU). Ray Data restarts an actor that dies and
runs its unfinished batch again; the request ids make that rerun idempotent (see idempotency.py). When the job's
trail is SQLite, every Ray worker writes its own file and the driver merges them afterwards (see job.py).

The driver writes OUT/results.jsonl (one row per request, in input order) at the end.
"""

from __future__ import annotations

import json
import math
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from gensdk.audit.merge import MergeReport
from gensdk.config import EngineConfig
from gensdk.distributed.job import JobSpec, import_plugins, is_sqlite_target
from gensdk.distributed.requests import BatchItem, read_requests
from gensdk.errors import GensdkError, MissingDependencyError

__all__ = ["RESULTS_NAME", "BatchFailed", "BatchReport", "run_batch"]

RESULTS_NAME = "results.jsonl"
# How long the job waits for its actors to start (imports, engine, audit connection) before it gives up.
_ACTOR_START_TIMEOUT_S = 600
Progress = Callable[[int, int, str], None]


class BatchFailed(GensdkError):
    """The job ran, but some requests failed (see OUT/results.jsonl), or Ray could not run it."""

    exit_code = 1


@dataclass(frozen=True)
class BatchReport:
    rows: list[dict[str, Any]]  # one per request, in input order
    audit: str  # the job's trail, without a password
    merge: MergeReport | None  # set when worker trails were merged into it
    results_path: Path

    def count(self, status: str) -> int:
        return sum(row["status"] == status for row in self.rows)

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [row for row in self.rows if row["status"] == "error"]

    def summary(self) -> dict[str, Any]:
        released = sum(row.get("released", 0) for row in self.rows)
        generated = sum(row.get("generated", 0) for row in self.rows)
        return {
            "requests": len(self.rows),
            "done": self.count("done"),
            "skipped": self.count("skipped"),
            "errors": self.count("error"),
            "generated": generated,
            "released": released,
            "audit": self.audit,
            "merged_worker_trails": len(self.merge.sources) if self.merge else 0,
            "results": str(self.results_path),
        }


def run_batch(
    input_path: str | Path,
    out_dir: str | Path,
    *,
    config: EngineConfig | Mapping[str, Any] | str | Path | None = None,
    audit: str | os.PathLike[str] | None = None,
    use_ray: bool = False,
    workers: int | None = None,
    batch_size: int = 8,
    plugins: Sequence[str] = (),
    load_entrypoints: bool = True,
    progress: Progress | None = None,
) -> BatchReport:
    """Run every request of `input_path` through the engine's policies; see the module docstring.

    `audit` is the job's trail (default: the configuration's `audit`, then $GENSDK_AUDIT, then the user data
    directory). `plugins` are importable module names registered beside the entry points in every worker.
    """
    items = read_requests(input_path)
    job = _job(out_dir, config, audit, use_ray, tuple(plugins), load_entrypoints)
    merge = None
    with _driver_engine(job) as engine:
        if use_ray:
            rows = _run_on_ray(job, items, workers, batch_size, progress)
        else:
            rows = _run_locally(job, items, progress)
        if job.shared_audit:
            engine.audit.checkpoint()  # sign the head the workers left, so the job's last records are signed
        else:
            merge = _merge_worker_trails(job, engine.audit, progress)
    rows.sort(key=lambda row: row["line"])
    results = _write_results(job.out_dir, rows)
    return BatchReport(rows, _display(job.audit), merge, results)


# --- the job ---------------------------------------------------------------------------------------------------


def _job(
    out_dir: str | Path, config: Any, audit: Any, use_ray: bool, plugins: tuple[str, ...], entrypoints: bool
) -> JobSpec:
    from gensdk.audit import AUDIT_ENV, default_audit_path

    parsed = EngineConfig.parse(config)
    target = os.fspath(audit or parsed.audit or os.environ.get(AUDIT_ENV) or default_audit_path())
    if is_sqlite_target(target):
        from gensdk.audit.sqlite import sqlite_path

        target = str(sqlite_path(target))  # absolute: the actors' working directory is not ours
    out = Path(out_dir).expanduser().absolute()
    out.mkdir(parents=True, exist_ok=True)
    shared = not (use_ray and is_sqlite_target(target))
    return JobSpec(str(out), parsed.model_dump(mode="json"), target, shared, plugins, entrypoints)


def _driver_engine(job: JobSpec) -> Any:
    """An engine on the driver, built before any worker starts, so that a bad configuration, a missing plugin or
    an unreachable audit database is one clear error rather than a failure inside every actor. It holds the
    job's trail: the driver signs its head at the end, or merges the worker trails into it. It never generates,
    so its device is left unresolved: a driver without the GPUs that `device = "cuda"` asks of the workers (the
    head node of a cluster, say) still runs the job."""
    from gensdk.engine import Engine

    plugins = import_plugins(job.plugins)
    config = {**job.config, "device": "auto"}  # "auto" is resolved on first use, which never comes here
    return Engine(config, audit=job.audit, plugins=plugins, load_entrypoints=job.load_entrypoints)


def _run_locally(job: JobSpec, items: list[BatchItem], progress: Progress | None) -> list[dict[str, Any]]:
    from gensdk.distributed.worker import BatchWorker

    worker = BatchWorker(job)
    try:
        return list(_reported(map(worker.run, items), len(items), progress))
    finally:
        worker.close()


# --- Ray -------------------------------------------------------------------------------------------------------


def _run_on_ray(
    job: JobSpec, items: list[BatchItem], workers: int | None, batch_size: int, progress: Progress | None
) -> list[dict[str, Any]]:
    ray = _import_ray()
    from gensdk.distributed.worker import BatchWorker

    if not ray.is_initialized():
        ray.init(include_dashboard=False)  # RAY_ADDRESS joins a running cluster; else a local one starts
    resources, slots, free = _worker_resources(ray, job)
    blocks = max(1, math.ceil(len(items) / batch_size))
    size = workers or slots
    # One batch in flight per actor (Ray Data's default is 4): an actor that is free takes the next batch instead
    # of a busy one holding four in its queue, and an actor that dies reruns only the batch it was running.
    pool = ray.data.ActorPoolStrategy(size=size, max_tasks_in_flight_per_actor=1)
    try:
        with _data_context(ray, wait_for_actors=size <= free):  # a dataset copies the context it is created in
            dataset = ray.data.from_items([item.to_row() for item in items], override_num_blocks=blocks).map_batches(
                BatchWorker, fn_constructor_args=(job,), batch_size=batch_size, compute=pool, **resources
            )
            rows = (json.loads(row["result"]) for row in dataset.iter_rows())
            return list(_reported(rows, len(items), progress))
    except ray.exceptions.RayError as exc:
        raise BatchFailed(f"the Ray batch job failed: {_first_line(exc)}") from exc


@contextmanager
def _data_context(ray: Any, wait_for_actors: bool) -> Iterator[None]:
    """Ray Data settings for this job only (the context is the driver's, shared with its other datasets)."""
    context = ray.data.DataContext.get_current()
    changes: dict[str, Any] = {"enable_progress_bars": False}  # ours instead, counting requests, not blocks
    if wait_for_actors:
        # Start work once every actor of the pool is up. Otherwise the first actor to start takes the first
        # batches while the others still import and build their engines, and a short job never reaches them.
        # Only when the cluster has room for them all now: more workers than that start as resources appear
        # (an autoscaling cluster), and the job runs on those that have started meanwhile.
        changes["wait_for_min_actors_s"] = _ACTOR_START_TIMEOUT_S
    before = {name: getattr(context, name) for name in changes}
    for name, value in changes.items():
        setattr(context, name, value)
    try:
        yield
    finally:
        for name, value in before.items():
            setattr(context, name, value)


def _worker_resources(ray: Any, job: JobSpec) -> tuple[dict[str, Any], int, int]:
    """What each actor holds, how many such actors the cluster has room for, and how many it has room for now
    (other work may hold some): one GPU per actor where the cluster has GPUs and the configuration allows CUDA,
    else one CPU."""
    cluster, available = ray.cluster_resources(), ray.available_resources()
    if int(cluster.get("GPU", 0)) and job.config.get("device", "auto") != "cpu":
        return {"num_gpus": 1}, int(cluster["GPU"]), int(available.get("GPU", 0))
    return {"num_cpus": 1}, max(1, int(cluster.get("CPU", 1))), int(available.get("CPU", 0))


def _import_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError:
        raise MissingDependencyError("ray", "ray", "gensdk batch --ray") from None
    return ray


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


# --- after the run ---------------------------------------------------------------------------------------------


def _merge_worker_trails(job: JobSpec, target: Any, progress: Progress | None) -> MergeReport:
    from gensdk.audit import SQLiteAuditSink
    from gensdk.audit.merge import merge_trails

    sources = [SQLiteAuditSink(path, create=False) for path in job.worker_trail_paths()]
    try:
        return merge_trails(sources, target, progress=progress)
    finally:
        for source in sources:
            source.close()


def _reported(rows: Iterable[dict[str, Any]], total: int, progress: Progress | None) -> Iterator[dict[str, Any]]:
    counts = {"done": 0, "skipped": 0, "error": 0}
    for done, row in enumerate(rows, 1):
        counts[row["status"]] = counts.get(row["status"], 0) + 1
        if progress:
            progress(done, total, ", ".join(f"{n} {status}" for status, n in counts.items() if n))
        yield row


def _write_results(out: Path, rows: list[dict[str, Any]]) -> Path:
    path = out / RESULTS_NAME
    staging = path.with_name(f".{RESULTS_NAME}.tmp")
    with staging.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(staging, path)
    return path


def _display(target: str) -> str:
    if is_sqlite_target(target):
        return target
    from gensdk.audit.postgres import redacted_url

    return redacted_url(target) if target.lower().startswith("postgres") else target.split("://", 1)[0] + "://..."
