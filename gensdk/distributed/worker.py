"""One engine per worker: each request of a batch goes through every policy, then what was released is written.

The same class runs a local job (called in a loop) and a Ray job (Ray Data builds one per actor and calls it with
batches of rows). Per request:

1. look its record up (`RequestKeyedSink.find`); committed, with its directory in OUT/ complete: "skipped";
2. otherwise `Engine.generate`, with the seed the request id fixes; the record is committed before anything is
   written (and a re-run whose record exists is released only if it matches that record, see idempotency.py);
3. the released outputs and a record.json are written to a temporary directory that is then renamed to
   OUT/<request>/ in one step, so a directory under OUT/ is always complete.

A request that fails with a gensdk error (a bad request, a model that does not load) is reported in its result
row and the batch goes on; anything else is a bug and fails the batch.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import uuid
from pathlib import Path
from typing import Any, Callable, Mapping

from gensdk.distributed.idempotency import RequestKeyedSink
from gensdk.distributed.job import JobSpec, WorkerPeers, import_plugins
from gensdk.distributed.requests import BatchItem
from gensdk.errors import GensdkError

__all__ = ["SUMMARY_NAME", "BatchWorker"]

SUMMARY_NAME = "record.json"
_OUTPUT_NAMES = {"text": "texts.jsonl", "table": "table.csv", "image": "images"}


class BatchWorker:
    """A callable class for Ray Data's `map_batches`: its constructor builds the worker's one Engine."""

    def __init__(self, job: JobSpec):
        from gensdk.engine import Engine

        self.job = job
        target = job.worker_audit_target()
        plugins = import_plugins(job.plugins)
        self.engine = Engine(job.config, audit=target, plugins=plugins, load_entrypoints=job.load_entrypoints)
        self.peers = None if job.shared_audit else WorkerPeers(job, target)
        self.audit = RequestKeyedSink(self.engine.audit, self.peers or tuple)
        self.engine.audit = self.audit  # every generation record is now named by its request id
        self.worker = {"host": socket.gethostname(), "pid": os.getpid(), "trail": str(self.audit.path)}

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, list[str]]:
        """Ray Data's entry: columns of equal length in, one JSON result per row out."""
        size = len(batch["request_id"])
        items = [BatchItem.from_row({key: batch[key][i] for key in batch}) for i in range(size)]
        results = [self.run(item) for item in items]
        if self.peers is not None:  # a worker's own trail: sign its head after every batch, so a worker that
            self.audit.checkpoint()  # dies leaves a signed file (a shared trail is signed by the driver)
        return {"result": [json.dumps(result) for result in results]}

    def run(self, item: BatchItem) -> dict[str, Any]:
        """Generate, commit and write one request; its result row."""
        out_dir = self.job.out_dir / item.dir_name
        stored = self.audit.find(item.record_id)
        if stored is not None and _published(out_dir, stored["record_id"]):
            return {**_read_summary(out_dir), "status": "skipped"}
        try:
            result = self.engine.generate(item.model, item.request)
        except GensdkError as exc:
            error = f"{type(exc).__name__}: {exc}"
            return {**_identity(item), "status": "error", "error": error, "worker": self.worker}
        summary = self._summary(item, result)
        summary["files"] = _publish(out_dir, result.outputs, summary, self.engine.write_outputs)
        return {**summary, "status": "done"}

    def close(self) -> None:
        self.engine.close()
        if self.peers is not None:
            self.peers.close()

    def _summary(self, item: BatchItem, result: Any) -> dict[str, Any]:
        return {
            **_identity(item),
            "audit_record_id": result.audit_record_id,
            "seed": result.seed,
            "verdict": result.verdict.value,
            "generated": len(result.output_verdicts),
            "released": len(result.outputs),
            "blocked": result.blocked,
            "policies": [
                {"id": o.policy_id, "status": o.status, "verdict": o.verdict.value, "findings": len(o.findings),
                 "error": o.error}
                for o in result.outcomes
            ],
            "worker": self.worker,
        }


def _identity(item: BatchItem) -> dict[str, Any]:
    return {"request_id": item.request_id, "line": item.line, "dir": item.dir_name}


def _published(out_dir: Path, record_id: str) -> bool:
    try:
        return _read_summary(out_dir).get("audit_record_id") == record_id
    except (OSError, ValueError):
        return False


def _read_summary(out_dir: Path) -> dict[str, Any]:
    return json.loads((out_dir / SUMMARY_NAME).read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def _publish(out_dir: Path, outputs: list[Any], summary: dict[str, Any], write_outputs: Callable) -> list[str]:
    """Write the released outputs (through the engine's writers: provenance sidecars where the plugin is
    installed) and the summary next to OUT/<request>/, then rename them into place."""
    staging = out_dir.with_name(f".tmp-{out_dir.name}-{uuid.uuid4().hex[:8]}")
    staging.mkdir(parents=True)
    files: list[str] = []
    if outputs:
        written = write_outputs(outputs, staging / _OUTPUT_NAMES[outputs[0].modality])
        files = [str(path.relative_to(staging)) for path in written]
    (staging / SUMMARY_NAME).write_text(json.dumps({**summary, "files": files}, indent=2), encoding="utf-8")
    if out_dir.exists():  # left by a run whose record is not in this trail: this run's record replaces it
        shutil.rmtree(out_dir)
    os.rename(staging, out_dir)
    return files
