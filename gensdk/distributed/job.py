"""What every worker of a batch job shares: the engine configuration, the output directory and the audit plan.

Two audit plans:
- shared: every worker appends to the job's trail itself. Always so for a PostgreSQL URL (one chain, many
  writers, on any machine), and for a local run (one worker).
- per worker: a Ray job with an SQLite trail gives each worker its own SQLite file in OUT/audit-workers/
  (SQLite is one machine's file; workers may be anywhere that sees OUT/). The driver verifies each file and
  merges them into the job's trail at the end (gensdk.audit.merge). While the job runs, a worker looks a
  request up in every worker file and in the job's trail, so a retried request is found wherever it was
  committed.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from gensdk.audit import AuditSink, SQLiteAuditSink
from gensdk.audit.sqlite import sqlite_path
from gensdk.errors import AuditError, PluginLoadError

__all__ = ["JobSpec", "WorkerPeers", "import_plugins", "is_sqlite_target"]

WORKER_TRAILS = "audit-workers"


def import_plugins(names: Sequence[str]) -> list[Any]:
    """The plugin modules a job names, imported; one that does not import is a PluginLoadError naming it."""
    import importlib

    modules = []
    for name in names:
        try:
            modules.append(importlib.import_module(name))
        except ImportError as exc:
            raise PluginLoadError(f"plugin module {name!r} cannot be imported: {exc}") from exc
    return modules


def is_sqlite_target(target: str) -> bool:
    return "://" not in target or target.lower().startswith("sqlite://")


@dataclass(frozen=True)
class JobSpec:
    """Picklable: Ray sends it to each actor, and again to an actor it restarts."""

    out: str  # absolute OUT/ directory
    config: dict[str, Any]  # EngineConfig fields
    audit: str  # the job's trail: a PostgreSQL URL, an SQLite path, or another sink's URL
    shared_audit: bool  # see the module docstring
    plugins: tuple[str, ...] = ()  # importable modules registered beside (or instead of) the entry points
    load_entrypoints: bool = True

    @property
    def out_dir(self) -> Path:
        return Path(self.out)

    @property
    def worker_trails(self) -> Path:
        return self.out_dir / WORKER_TRAILS

    def worker_audit_target(self) -> str:
        """Where this worker appends: the job's trail, or a new SQLite file of its own (one per process, so a
        worker that Ray restarts starts a new file and the dead one's file stays for the merge)."""
        if self.shared_audit:
            return self.audit
        self.worker_trails.mkdir(parents=True, exist_ok=True)
        name = f"worker-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.db"
        return str(self.worker_trails / name)

    def worker_trail_paths(self) -> list[Path]:
        return sorted(self.worker_trails.glob("worker-*.db"))


class WorkerPeers:
    """The other trails a per-worker SQLite worker looks requests up in: every other worker file, and the job's
    trail (merged from an earlier run). Files are opened read-side, on first need, and kept open."""

    def __init__(self, job: JobSpec, own: str):
        self.job = job
        self.own = Path(own)
        self._open: dict[Path, AuditSink] = {}

    def __call__(self) -> Sequence[AuditSink]:
        candidates = [p for p in self.job.worker_trail_paths() if p != self.own]
        target = sqlite_path(self.job.audit)
        if target.exists():
            candidates.append(target)
        for path in candidates:
            if path not in self._open:
                self._try_open(path)
        return list(self._open.values())

    def _try_open(self, path: Path) -> None:
        try:
            self._open[path] = SQLiteAuditSink(path, create=False)
        except AuditError:
            # A file another worker is creating this instant holds no records yet; it is tried again on the
            # next lookup. A damaged one stops the merge at the end, where every worker file is verified.
            pass

    def close(self) -> None:
        for sink in self._open.values():
            sink.close()
        self._open.clear()
