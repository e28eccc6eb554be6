"""Memorised training records in generated tables.

Each generated row's distance to its closest training record (DCR) is compared with the DCRs of rows the
model never saw (the held-out part of the family's `TrainingReference`). A row closer than the `quantile`
of the held-out DCRs, or an exact copy of a training record, is *flagged*; what happens next is `action`:

* ``replace`` (default): flagged rows are replaced by fresh samples from the same model (seeded from the
  micro-batch seed), which are checked the same way, for at most `max_rounds` rounds; rows still flagged are
  dropped. The table is released without them.
* ``drop``: flagged rows are removed from the table before release.
* ``block``: a table with any flagged row is blocked whole.

A generator that copies systematically is not laundered by resampling: when more than `max_flagged_fraction`
of a table's rows are flagged, the table is blocked whatever the action. A model that kept no reference
cannot be checked: the policy raises (the engine blocks, fail closed) unless `missing_reference="allow"`.

Run this policy before any policy that transforms table values (a watermark): replacement rows come straight
from the model, after the earlier transforms have run.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, Literal

import numpy as np
from pydantic import Field

from gensdk import Finding, Policy, PolicyOptions, hookimpl
from gensdk.errors import ModelError
from gensdk.outputs import Output, TableOutput
from gensdk.request import GenerationContext

__all__ = ["MemorisationPolicy"]


class MissingReferenceError(ModelError):
    """The model kept no training reference, so memorisation cannot be checked (fail closed)."""


class MemorisationPolicy(Policy):
    """Blocks or replaces table rows closer to a training record than held-out rows are (and exact copies)."""

    id = "memorisation"
    version = "1"
    modalities = frozenset({"table"})

    class Options(PolicyOptions):
        # Rows closer to the training data than this quantile of the held-out rows' DCRs are flagged. A
        # generator as good as fresh data has about this share of its rows flagged.
        quantile: float = Field(0.05, ge=0, lt=1)
        action: Literal["replace", "drop", "block"] = "replace"
        max_rounds: int = Field(3, ge=1, le=20)
        max_flagged_fraction: float = Field(0.5, gt=0, le=1)
        missing_reference: Literal["fail", "allow"] = "fail"
        # Memory one block of the distance computation may take.
        block_mb: int = Field(64, ge=1, le=16_384)

    @hookimpl
    def transform_output(self, outputs: list[Output], context: GenerationContext) -> list[Finding]:
        reference = self._reference(context)
        if reference is None:
            return [_unchecked(i) for i in range(len(outputs))]
        findings = []
        for index, output in enumerate(outputs):
            if isinstance(output, TableOutput):
                findings.append(self._check_table(index, output, reference, context))
        return findings

    # -- one table ------------------------------------------------------------------------------------------

    def _check_table(self, index: int, output: TableOutput, reference: Any, context: GenerationContext) -> Finding:
        threshold = reference.holdout_quantile(self.options.quantile) if self.options.quantile > 0 else 0.0
        flagged, exact = self._flag(output.frame, reference, threshold, context)
        details: dict[str, Any] = {
            "rows": len(output.frame), "flagged": int(flagged.sum()), "exact_copies": int(exact.sum()),
            "threshold": round(threshold, 6), "quantile": self.options.quantile, "action": self.options.action,
        }
        fraction = details["flagged"] / max(1, len(output.frame))
        if self.options.action == "block" or fraction > self.options.max_flagged_fraction:
            violation = bool(flagged.any())
            reason = "blocked" if self.options.action == "block" else f"over max_flagged_fraction {self.options.max_flagged_fraction}"
            message = f"{details['flagged']} of {details['rows']} rows are as close to training records as memorised rows ({reason})"
            return Finding("memorised-rows", message, violation=violation, output_index=index, details=details)
        if self.options.action == "replace" and flagged.any():
            replaced, rounds = self._replace(output, flagged, reference, threshold, context)
            details.update(replaced=replaced, rounds=rounds)
            flagged = self._flag(output.frame, reference, threshold, context)[0]
        dropped = int(flagged.sum())
        if dropped:
            output.frame = output.frame[~flagged].reset_index(drop=True)
        details.update(dropped=dropped, released_rows=len(output.frame))
        message = f"{details['flagged']} of {details['rows']} rows were too close to training records; " \
                  f"{details.get('replaced', 0)} replaced, {dropped} dropped"
        code = "memorised-rows-removed" if details["flagged"] else "memorisation-checked"
        return Finding(code, message, violation=False, output_index=index, details=details)

    def _flag(self, frame: Any, reference: Any, threshold: float, context: GenerationContext) -> tuple[np.ndarray, np.ndarray]:
        """(flagged, exact copies) as boolean masks over the rows of `frame`."""
        encoded = reference.encode(frame)
        cap = max(threshold, 1e-2)  # exact copies must be seen even when the threshold is 0
        dcr = reference.distances_to_closest(encoded, device=context.device, block_bytes=self.options.block_mb * 2**20, cap=cap)
        exact = reference.exact_copies(encoded, dcr)
        return (dcr < threshold) | exact, exact

    def _replace(self, output: TableOutput, flagged: np.ndarray, reference: Any, threshold: float, context: GenerationContext) -> tuple[int, int]:
        """Swap flagged rows for fresh samples, re-checking them, for at most max_rounds rounds."""
        frame = output.frame
        todo = np.flatnonzero(flagged)
        replaced, rounds = 0, 0
        while len(todo) and rounds < self.options.max_rounds:
            rounds += 1
            fresh = self._sample(len(todo), rounds, context)
            ok = ~self._flag(fresh, reference, threshold, context)[0]
            frame = _put_rows(frame, todo[ok], fresh[ok])
            replaced += int(ok.sum())
            todo = todo[~ok]
        output.frame = frame
        return replaced, rounds

    def _sample(self, n: int, round_: int, context: GenerationContext) -> Any:
        """n fresh rows from the generating model, seeded from the micro-batch seed and the round."""
        if context.model is None:
            raise ModelError("the memorisation policy cannot replace rows: the context names no model")
        digest = hashlib.sha256(f"{context.seed}:memorisation:{round_}".encode()).digest()
        seed = int.from_bytes(digest[:8], "big") >> 1
        sub = context.request.model_copy(update={"n": n, "seed": seed})
        outputs = context.model.generate(sub, dataclasses.replace(context, request=sub, seed=seed))
        import pandas as pd

        return pd.concat([o.frame for o in outputs], ignore_index=True).iloc[:n]

    def _reference(self, context: GenerationContext) -> Any:
        getter = getattr(context.model, "training_reference", None)
        reference = getter() if callable(getter) else None
        if reference is None and self.options.missing_reference == "fail":
            family = getattr(context.model, "id", "unknown")
            raise MissingReferenceError(
                f"model ({family}) was saved without a training reference, so memorisation cannot be checked; "
                "retrain it with holdout_fraction > 0 (gensdk >= 0.1 keeps one) or configure the memorisation "
                "policy with missing_reference='allow'"
            )
        return reference


def _unchecked(index: int) -> Finding:
    return Finding("memorisation-unchecked", "model has no training reference; rows were not checked "
                   "(missing_reference='allow')", output_index=index, details={"checked": False})


def _put_rows(frame: Any, positions: np.ndarray, fresh: Any) -> Any:
    """`frame` with the rows at `positions` replaced by the rows of `fresh`, keeping each column's dtype."""
    if len(positions) == 0:
        return frame
    frame = frame.copy()
    for name in frame.columns:
        column = frame[name].copy()
        column.iloc[positions] = fresh[name].to_numpy()
        frame[name] = column
    return frame
