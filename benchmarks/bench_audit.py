"""Audit append throughput, side by side with plain sqlite3.

    python benchmarks/bench_audit.py [--n 5000] [--repeat 3] [--dir DIR]

For each `synchronous` mode (NORMAL, FULL) it appends the same ~1 KB engine-like bodies
- through `SQLiteAuditSink.append` (idempotency lookup, hash chain, a signed checkpoint every 100 records,
  one BEGIN IMMEDIATE ... COMMIT per record), and
- as the raw baseline: `json.dumps` + one INSERT + COMMIT per row into a WAL database with the same pragmas
  and the same table, no hashing, no signing, no lookup,
and prints records/s and the ratio ours/raw. Each round runs ours and raw back to back on fresh files, and the
table shows the median round, so background disk activity hits both sides alike. FULL fsyncs every commit, so
its numbers mostly measure the disk: pass --dir to benchmark the filesystem the audit trail will live on.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from gensdk.audit import SQLiteAuditSink  # noqa: E402

RAW_TABLE = (
    "CREATE TABLE records(seq INTEGER PRIMARY KEY, record_id TEXT UNIQUE NOT NULL, prev_hash TEXT NOT NULL, "
    "hash TEXT NOT NULL, body TEXT NOT NULL)"
)


def engine_body(i: int) -> dict:
    """An audit body shaped like the engine's: hashes and verdicts, not content (about 1 KB as JSON)."""
    digest = hashlib.sha256(str(i).encode()).hexdigest()
    policy = {"version": "1.0.0", "config_digest": digest, "verdict": "pass", "findings": [], "ms": 1.7}
    return {
        "record_id": uuid.uuid4().hex,
        "kind": "generation",
        "time": "2026-03-01T12:00:00.000000Z",
        "verdict": "pass",
        "model": {"family": "gmm", "version": "1.0", "weights_digest": digest, "device": "cpu"},
        "request": {"digest": digest, "seed": i, "n": 4},
        "policies": [{"id": pid, **policy} for pid in ("watermark", "pii")],
        "outputs": [{"index": k, "sha256": digest, "released": True} for k in range(4)],
    }


def bench_ours(path: Path, bodies: list[dict], synchronous: str) -> float:
    with SQLiteAuditSink(path, synchronous=synchronous) as sink:
        start = time.perf_counter()
        for body in bodies:
            sink.append(body)
        elapsed = time.perf_counter() - start
        assert sink.verify().ok
    return len(bodies) / elapsed


def bench_raw(path: Path, bodies: list[dict], synchronous: str) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute(RAW_TABLE)
    start = time.perf_counter()
    for seq, body in enumerate(bodies, 1):
        conn.execute("BEGIN")
        conn.execute(
            "INSERT INTO records VALUES (?, ?, ?, ?, ?)", (seq, body["record_id"], "", "", json.dumps(body))
        )
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return len(bodies) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="records per run (default 5000)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds per mode; the median is shown (default 3)")
    parser.add_argument("--dir", type=Path, default=None, help="where the databases go (default: a temp dir)")
    args = parser.parse_args()

    bodies = [engine_body(i) for i in range(args.n)]
    size = sum(len(json.dumps(b)) for b in bodies) / len(bodies)
    print(f"{args.n} appends per run, bodies ~{size:.0f} bytes of JSON")
    print(f"{'synchronous':<12} {'ours rec/s':>12} {'raw rec/s':>12} {'ours/raw':>9}")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for mode in ("NORMAL", "FULL"):
            rounds = [_round(Path(tmp), bodies, mode, r) for r in range(args.repeat)]
            ours, raw = statistics.median(o for o, _ in rounds), statistics.median(r for _, r in rounds)
            print(f"{mode:<12} {ours:>12,.0f} {raw:>12,.0f} {ours / raw:>9.2f}")


def _round(tmp: Path, bodies: list[dict], mode: str, index: int) -> tuple[float, float]:
    ours = bench_ours(tmp / f"ours-{mode}-{index}.db", bodies, mode)
    raw = bench_raw(tmp / f"raw-{mode}-{index}.db", bodies, mode)
    return ours, raw


if __name__ == "__main__":
    main()
