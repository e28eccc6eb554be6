"""Findings, verdicts and per-policy outcomes.

A policy reports facts (`Finding`, with `violation=True` when its rule is broken); the policy's configuration
decides what a violation means (`on_fail`: block or warn). The most severe verdict wins. An error counts as
`block` unless the policy is explicitly configured `on_error="allow"`, which is recorded as `bypassed`, never
as `pass`.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Literal

__all__ = ["Finding", "PolicyOutcome", "PolicyStatus", "Verdict", "most_severe"]


class Verdict(str, enum.Enum):
    PASS = "pass"
    WARN = "warn"
    BYPASSED = "bypassed"  # a policy failed but was configured to let outputs through
    BLOCK = "block"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]

    @property
    def releases(self) -> bool:
        return self is not Verdict.BLOCK


_SEVERITY = {Verdict.PASS: 0, Verdict.WARN: 1, Verdict.BYPASSED: 2, Verdict.BLOCK: 3}


def most_severe(verdicts: Iterable[Verdict]) -> Verdict:
    return max(verdicts, key=lambda v: v.severity, default=Verdict.PASS)


@dataclass(frozen=True)
class Finding:
    """One fact a policy found. `output_index` is None for request-level findings (they apply to every output).

    `details` must never hold the sensitive value itself (a found e-mail address, say): it goes to the audit
    trail. Entity types, spans, scores and p-values belong there; the text does not.
    """

    code: str
    message: str
    violation: bool = False
    output_index: int | None = None
    span: tuple[int, int] | None = None
    details: dict[str, Any] = field(default_factory=dict)
    policy_id: str = ""

    def to_record(self) -> dict[str, Any]:
        record = asdict(self)
        record["span"] = list(self.span) if self.span else None
        return record


# "skipped": the request was blocked before this policy saw any output.
PolicyStatus = Literal["ok", "violation", "error", "timeout", "not_applicable", "disabled", "skipped"]


@dataclass
class PolicyOutcome:
    """What one policy did to one generation event: the audit trail keeps one of these per policy."""

    policy_id: str
    version: str
    config_digest: str
    status: PolicyStatus = "ok"
    verdict: Verdict = Verdict.PASS
    findings: list[Finding] = field(default_factory=list)
    error: str | None = None
    elapsed_ms: float = 0.0

    def to_record(self) -> dict[str, Any]:
        return {
            "id": self.policy_id,
            "version": self.version,
            "config_digest": self.config_digest,
            "status": self.status,
            "verdict": self.verdict.value,
            "findings": [f.to_record() for f in self.findings],
            "error": self.error,
            "elapsed_ms": round(self.elapsed_ms, 3),
        }
