"""Scale-out: batch jobs (locally or on Ray Data) and an online Ray Serve deployment, behind the same policies.

    from gensdk.distributed import run_batch

    report = run_batch("requests.jsonl", "out/", config="gensdk.toml", use_ray=True)
    print(report.summary())

Every worker holds one `Engine` with the configured policies; every record goes to the job's audit trail (a
shared PostgreSQL database, or one SQLite file per Ray worker merged and verified at the end), named by the
request id so that a retried request never adds a second record. See docs/scale_out.md.

Importing this package imports neither Ray nor torch; `run_batch(use_ray=True)` and `gensdk.distributed.serve`
import Ray when they run.
"""

from __future__ import annotations

from gensdk.distributed.batch import BatchFailed, BatchReport, run_batch
from gensdk.distributed.idempotency import RequestKeyedSink
from gensdk.distributed.requests import BatchItem, read_requests, record_id_for, seed_for

__all__ = [
    "BatchFailed",
    "BatchItem",
    "BatchReport",
    "RequestKeyedSink",
    "read_requests",
    "record_id_for",
    "run_batch",
    "seed_for",
]
