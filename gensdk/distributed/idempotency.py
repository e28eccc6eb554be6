"""Idempotent generation records: a batch request's audit record is named by its request id, not a random uuid.

A batch request can run more than once: Ray retries the batch of a worker that died, and a job can be run again
over the same input. `RequestKeyedSink` wraps the worker's audit sink and stores each generation record under
`record_id_for(request_id)`. Then:

- before generating, the worker looks the record up (`find`: in the trail it writes to and in its peers, the
  other workers' SQLite files); found, with the outputs on disk, the request is skipped;
- found, without the outputs (the worker died between the commit and the write), the request runs again with the
  same seed. The new body is compared with the stored one on everything but what changes from run to run (the
  time, the timings, the device). Equal: the stored receipt is returned, no record is added, and the outputs,
  which the stored record describes digest for digest, may be released. Different: the append is refused with
  an `AuditError`, and nothing is released.

Two workers racing on one request cannot both add a record either: the record_id is unique in every sink.
Records that are not generations (bias audits, ...) pass through unchanged.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Sequence

from gensdk._canonical import canonical_json
from gensdk.audit.base import AuditReceipt, AuditSink, VerifyReport
from gensdk.distributed.requests import record_id_for
from gensdk.errors import AuditError

__all__ = ["RequestKeyedSink", "same_generation"]

# Fields of a generation body that differ between two runs of the same request with the same outputs.
_VOLATILE = ("record_id", "seq", "time", "timings_ms")


class RequestKeyedSink(AuditSink):
    """Wraps `inner` (the trail this worker writes); `peers()` lists other trails to look records up in."""

    scheme = "request-keyed"

    def __init__(self, inner: AuditSink, peers: Callable[[], Sequence[AuditSink]] = tuple):
        self.inner = inner
        self.peers = peers

    @property
    def path(self) -> Any:
        return getattr(self.inner, "path", self.inner)

    def find(self, record_id: str) -> dict | None:
        """The stored record with this id in this worker's trail or any peer's, else None."""
        for sink in (self.inner, *self.peers()):
            record = sink.lookup(record_id)
            if record is not None:
                return record
        return None

    def append(self, body: dict) -> AuditReceipt:
        request_id = body.get("request_id") if isinstance(body, dict) else None
        if not isinstance(request_id, str) or not request_id or body.get("kind") != "generation":
            return self.inner.append(body)
        keyed = {**body, "record_id": record_id_for(request_id)}
        stored = self.find(keyed["record_id"])
        if stored is None:
            try:
                return self.inner.append(keyed)
            except AuditError:  # another writer stored it since we looked: judge it like any stored record
                stored = self.find(keyed["record_id"])
                if stored is None:
                    raise
        return _receipt_for_rerun(stored, keyed)

    def lookup(self, record_id: str) -> dict | None:
        return self.inner.lookup(record_id)

    def verify(self, public_key_path: str | None = None, **options: Any) -> VerifyReport:
        return self.inner.verify(public_key_path, **options)

    def records(self, start: int = 1, limit: int | None = None) -> Iterator[dict]:
        return self.inner.records(start, limit)

    def head(self) -> AuditReceipt | None:
        return self.inner.head()

    def checkpoint(self) -> int | None:
        return self.inner.checkpoint()

    def public_key(self) -> tuple[bytes, str]:
        return self.inner.public_key()

    def close(self) -> None:
        self.inner.close()

    def __repr__(self) -> str:
        return f"RequestKeyedSink({self.inner!r})"


def same_generation(stored: dict, body: dict) -> bool:
    """Whether two generation bodies describe the same request, seed, model, policy results and outputs."""
    return canonical_json(_essence(stored)) == canonical_json(_essence(body))


def _essence(body: dict) -> dict:
    kept = {k: v for k, v in body.items() if k not in _VOLATILE}
    if isinstance(kept.get("engine"), dict):
        kept["engine"] = {k: v for k, v in kept["engine"].items() if k != "device"}  # a retry may land on cuda:1
    if isinstance(kept.get("policies"), list):
        kept["policies"] = [_without(p, "elapsed_ms") for p in kept["policies"]]
    return kept


def _without(item: Any, key: str) -> Any:
    return {k: v for k, v in item.items() if k != key} if isinstance(item, dict) else item


def _receipt_for_rerun(stored: dict, body: dict) -> AuditReceipt:
    if not same_generation(stored["body"], body):
        raise AuditError(
            f"request {body['request_id']!r} is already in the audit trail (record {stored['record_id']}, "
            f"seq {stored['seq']}) with different outputs or policy results; this run is not released"
        )
    return AuditReceipt(record_id=stored["record_id"], seq=stored["seq"], hash=stored["hash"])
