"""Verdicts against configurable thresholds, and the JSON form every audit result takes."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

__all__ = ["Check", "at_least", "at_most", "json_safe", "overall_verdict"]

AuditVerdict = Literal["pass", "breach", "error"]


@dataclass(frozen=True)
class Check:
    """One threshold: `value` compared with `threshold`; `passed` is False when breached or not measurable."""

    name: str
    value: float | None
    threshold: float
    passed: bool
    message: str
    ci: list[float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return json_safe(asdict(self))


def at_most(name: str, value: float | None, threshold: float, what: str, ci: list[float] | None = None) -> Check:
    """Passes when value <= threshold. A value that could not be measured fails: a check that cannot be made
    must not read as passed."""
    if value is None or not math.isfinite(value):
        return Check(name, None, threshold, False, f"{what}: could not be measured (see notes)", ci)
    passed = value <= threshold
    relation = "within" if passed else "exceeds"
    return Check(name, float(value), threshold, passed, f"{what} {value:.4f} {relation} the limit {threshold:g}", ci)


def at_least(name: str, value: float | None, threshold: float, what: str, ci: list[float] | None = None) -> Check:
    if value is None or not math.isfinite(value):
        return Check(name, None, threshold, False, f"{what}: could not be measured (see notes)", ci)
    passed = value >= threshold
    relation = "meets" if passed else "is below"
    return Check(name, float(value), threshold, passed, f"{what} {value:.4f} {relation} the minimum {threshold:g}", ci)


def overall_verdict(checks: list[Check], errors: list[Any] | None = None) -> AuditVerdict:
    if errors:
        return "error"
    return "pass" if all(c.passed for c in checks) else "breach"


def json_safe(value: Any) -> Any:
    """Plain JSON types: NaN and infinities become None (canonical JSON and the audit trail refuse them),
    numpy scalars and arrays become Python numbers and lists, tuples become lists."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(float(value)) else None
    return value
