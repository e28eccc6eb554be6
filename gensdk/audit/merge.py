"""Merge verified audit trails into one: how a batch job without a shared database ends.

    with open_audit_sink("out/audit.db") as target:
        report = merge_trails([worker_a, worker_b], target)   # sinks opened with create=False

1. Every source is verified first (hash chain and signed checkpoints); one that does not verify stops the merge
   before anything is written (`AuditVerificationError` naming it and its first bad record).
2. Each source's records are appended to the target, source by source in seq order, bodies unchanged: a record's
   body, and every digest in it, is the same in the source and in the merged trail; only seq, prev_hash and hash
   are the target's own.
3. Last, an "audit-merge" record names every source with its record count, head seq, head hash and signing key
   id, so the merged chain commits to the heads of the chains it came from. The target's head is then signed
   and the target verified.

Merging again (after a retried job, or twice by mistake) adds only what is new plus one more audit-merge record:
a record already in the target with the same body is a retry and is not appended again. The same record_id
with different bodies in two sources is an `AuditError`.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

from gensdk.audit import keys
from gensdk.audit.base import AuditReceipt, AuditSink, VerifyReport
from gensdk.errors import AuditError, AuditVerificationError

__all__ = ["MERGE_KIND", "MergeReport", "MergedSource", "merge_trails"]

MERGE_KIND = "audit-merge"


@dataclass(frozen=True)
class MergedSource:
    """One source trail as the audit-merge record describes it."""

    trail: str
    records: int
    head_seq: int | None
    head_hash: str | None
    key_id: str | None  # None: the source holds no signed checkpoint
    appended: int  # records new to the target; the rest were already there


@dataclass(frozen=True)
class MergeReport:
    sources: list[MergedSource]
    merge_record: AuditReceipt
    target: VerifyReport

    @property
    def appended(self) -> int:
        return sum(source.appended for source in self.sources)

    def to_dict(self) -> dict[str, Any]:
        return {
            "sources": [asdict(s) for s in self.sources],
            "merge_record": asdict(self.merge_record),
            "target": self.target.to_dict(),
        }


def merge_trails(
    sources: Sequence[AuditSink],
    target: AuditSink,
    *,
    progress: Callable[[int, int, str], None] | None = None,
) -> MergeReport:
    """Verify every source, copy its records into `target`, and close with an audit-merge record (see above)."""
    verified = [(source, _verified(source)) for source in sources]
    total = sum(report.records for _, report in verified)
    start = target.head()
    floor = start.seq if start else 0  # a record stored at or below this seq was already in the target
    copied = 0
    merged = []
    for source, report in verified:
        appended = 0
        for record in source.records():
            appended += _copy(record, target, source) > floor
            copied += 1
            if progress:
                progress(copied, total, f"merging {_name(source)}")
        merged.append(_describe(source, report, appended))
    receipt = target.append(_merge_body(merged))
    target.checkpoint()
    report = target.verify()
    if not report.ok:
        raise AuditVerificationError(f"the merged audit trail {_name(target)} does not verify: {report.problem}")
    return MergeReport(merged, receipt, report)


def _verified(source: AuditSink) -> VerifyReport:
    report = source.verify()
    if not report.ok:
        raise AuditVerificationError(
            f"the audit trail {_name(source)} does not verify, so it was not merged: {report.problem}"
        )
    return report


def _copy(record: dict, target: AuditSink, source: AuditSink) -> int:
    """Append one source record's body to the target; the seq it has there (an old one if it was stored)."""
    body = {k: v for k, v in record["body"].items() if k != "seq"}  # the target numbers its own records
    try:
        return target.append(body).seq
    except AuditError as exc:
        raise AuditError(f"cannot merge record seq {record['seq']} of {_name(source)}: {exc}") from exc


def _describe(source: AuditSink, report: VerifyReport, appended: int) -> MergedSource:
    head = source.head()
    key_id = keys.key_id_of(source.public_key()[0]) if report.checkpoints else None
    return MergedSource(
        trail=_name(source),
        records=report.records,
        head_seq=head.seq if head else None,
        head_hash=head.hash if head else None,
        key_id=key_id,
        appended=appended,
    )


def _merge_body(sources: list[MergedSource]) -> dict[str, Any]:
    return {
        "record_id": uuid.uuid4().hex,
        "kind": MERGE_KIND,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "sources": [asdict(source) for source in sources],
        "records_appended": sum(source.appended for source in sources),
    }


def _name(sink: AuditSink) -> str:
    return str(getattr(sink, "path", sink))
