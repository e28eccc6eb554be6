"""The typed result of one generation call: released outputs together with the ethics result."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gensdk.errors import OutputBlocked
from gensdk.outputs import Output
from gensdk.verdicts import Finding, PolicyOutcome, Verdict

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Result"]


@dataclass(frozen=True)
class Result:
    """`outputs` holds only released outputs; `output_verdicts` has one verdict per generated output."""

    outputs: list[Output]
    verdict: Verdict
    outcomes: list[PolicyOutcome]
    output_verdicts: list[Verdict]
    audit_record_id: str
    audit_hash: str
    seed: int
    model: dict[str, Any]

    @property
    def findings(self) -> list[Finding]:
        return [f for o in self.outcomes for f in o.findings]

    @property
    def blocked(self) -> list[int]:
        """Indexes (in generation order) of outputs that were withheld."""
        return [i for i, v in enumerate(self.output_verdicts) if not v.releases]

    def raise_for_verdict(self) -> Result:
        """Raise OutputBlocked when anything was withheld; return self otherwise, for chaining."""
        if self.verdict is not Verdict.BLOCK:
            return self
        reasons = [f"{o.policy_id}: {o.error or _codes(o)}" for o in self.outcomes if o.verdict is Verdict.BLOCK]
        total = len(self.output_verdicts)
        raise OutputBlocked(
            f"{len(self.blocked)} of {total} outputs blocked ({'; '.join(reasons) or 'no output generated'}); "
            f"audit record {self.audit_record_id}",
            self,
        )

    def table(self) -> pd.DataFrame:
        """The released tables joined into one DataFrame."""
        import pandas as pd

        frames = [o.frame for o in self.outputs]  # type: ignore[attr-defined]
        if not frames:
            raise OutputBlocked("no table was released", self)
        return pd.concat(frames, ignore_index=True)

    @property
    def texts(self) -> list[str]:
        return [o.text for o in self.outputs]  # type: ignore[attr-defined]


def _codes(outcome: PolicyOutcome) -> str:
    return ", ".join(sorted({f.code for f in outcome.findings if f.violation})) or outcome.status
