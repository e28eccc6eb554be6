"""Memorised training records in generated tables and images.

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

Images (one `ImageOutput` per image) are judged one by one the same way, against the family's
`ImageReference` (pixels area-averaged to at most 16x16 a channel): a flagged image is

* ``replace``: swapped for a fresh image from the same model (same class), checked again, for at most
  `max_rounds` rounds; an image still flagged is withheld.
* ``drop``: withheld (a violation on that image only: the others of the batch are released).
* ``block``: any flagged image blocks every image of the micro-batch.

More than `max_flagged_fraction` of a micro-batch's images flagged blocks the whole micro-batch. Findings carry
each image's DCR, the threshold and the batch's counts, never pixels.

Run this policy before any policy that transforms table values or pixels (a watermark): replacement rows and
images come straight from the model, after the earlier transforms have run.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, Literal

import numpy as np
from pydantic import Field

from gensdk import Finding, Policy, PolicyOptions, hookimpl
from gensdk.errors import ModelError
from gensdk.outputs import ImageOutput, Output, TableOutput
from gensdk.request import GenerationContext

__all__ = ["MemorisationPolicy"]


class MissingReferenceError(ModelError):
    """The model kept no training reference, so memorisation cannot be checked (fail closed)."""


class MemorisationPolicy(Policy):
    """Blocks or replaces table rows and images closer to a training record than held-out ones are (and exact copies)."""

    id = "memorisation"
    version = "1"
    modalities = frozenset({"table", "image"})

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
        images = [i for i, output in enumerate(outputs) if isinstance(output, ImageOutput)]
        if images:
            findings.extend(self._check_images(images, [outputs[i] for i in images], reference, context))  # type: ignore[misc]
        return findings

    def _threshold(self, reference: Any) -> float:
        return reference.holdout_quantile(self.options.quantile) if self.options.quantile > 0 else 0.0

    # -- one table ------------------------------------------------------------------------------------------

    def _check_table(self, index: int, output: TableOutput, reference: Any, context: GenerationContext) -> Finding:
        threshold = self._threshold(reference)
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
        flagged, exact, _ = self._flag_with_distances(frame, reference, threshold, context)
        return flagged, exact

    def _flag_with_distances(self, items: Any, reference: Any, threshold: float, context: GenerationContext) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(flagged, exact copies, DCR) over the rows of a frame or a list of images; DCRs at or above the
        search cap are +inf (only distances under it decide anything)."""
        encoded = reference.encode(items)
        cap = max(threshold, 1e-2)  # exact copies must be seen even when the threshold is 0
        dcr = reference.distances_to_closest(encoded, device=context.device, block_bytes=self.options.block_mb * 2**20, cap=cap)
        exact = reference.exact_copies(encoded, dcr)
        return (dcr < threshold) | exact, exact, dcr

    # -- the images of one micro-batch ----------------------------------------------------------------------

    def _check_images(self, indices: list[int], images: list[ImageOutput], reference: Any, context: GenerationContext) -> list[Finding]:
        if not hasattr(reference, "shape"):
            raise ModelError("the model's training reference holds table rows, not images: memorisation cannot be checked")
        threshold = self._threshold(reference)
        flagged, exact, dcr = self._flag_with_distances([o.pixels for o in images], reference, threshold, context)
        batch = {"images": len(images), "flagged": int(flagged.sum()), "exact_copies": int(exact.sum()),
                 "threshold": round(threshold, 6), "quantile": self.options.quantile, "action": self.options.action}
        systematic = batch["flagged"] / len(images) > self.options.max_flagged_fraction
        if systematic or (self.options.action == "block" and flagged.any()):
            reason = f"over max_flagged_fraction {self.options.max_flagged_fraction}" if systematic else "blocked"
            message = f"{batch['flagged']} of {batch['images']} images are as close to training images as memorised ones ({reason})"
            return [Finding("memorised-images", message, violation=True, output_index=i,
                            details={**batch, **_image_details(dcr[k], exact[k], flagged[k])}) for k, i in enumerate(indices)]
        replaced = np.zeros(len(images), bool)
        if self.options.action == "replace" and flagged.any():
            replaced, batch["rounds"] = self._replace_images(images, flagged, reference, threshold, context)
            flagged = flagged & ~replaced
        return [self._image_finding(i, batch, dcr[k], exact[k], bool(flagged[k]), bool(replaced[k])) for k, i in enumerate(indices)]

    def _image_finding(self, index: int, batch: dict[str, Any], dcr: float, exact: bool, withheld: bool, replaced: bool) -> Finding:
        details = {**batch, **_image_details(dcr, exact, withheld or replaced), "replaced": replaced, "withheld": withheld}
        if withheld:
            return Finding("memorised-image", f"image is closer to a training image than {1 - self.options.quantile:.0%} of "
                           f"held-out images are (DCR {details['dcr']}); withheld", violation=True, output_index=index, details=details)
        if replaced:
            return Finding("memorised-image-replaced", "image was too close to a training image; replaced by a fresh, "
                           "checked sample", output_index=index, details=details)
        return Finding("memorisation-checked", "image is no closer to the training images than held-out images are",
                       output_index=index, details=details)

    def _replace_images(self, images: list[ImageOutput], flagged: np.ndarray, reference: Any, threshold: float,
                        context: GenerationContext) -> tuple[np.ndarray, int]:
        """Swap flagged images' pixels for fresh samples of the same class, re-checked, for at most max_rounds."""
        replaced = np.zeros(len(images), bool)
        todo, rounds = np.flatnonzero(flagged), 0
        while len(todo) and rounds < self.options.max_rounds:
            rounds += 1
            fresh = self._fresh_images([images[k] for k in todo], rounds, context)
            ok = ~self._flag_with_distances([o.pixels for o in fresh], reference, threshold, context)[0]
            for k, new in zip(todo[ok], [f for f, good in zip(fresh, ok) if good]):
                images[k].pixels = new.pixels.to(images[k].pixels.device)
                images[k].metadata.update(new.metadata)  # what the family says of the new image (its class)
                replaced[k] = True
            todo = todo[~ok]
        return replaced, rounds

    def _fresh_images(self, wanted: list[ImageOutput], round_: int, context: GenerationContext) -> list[Output]:
        """One fresh image per wanted image, asked for with the wanted image's class (when it has one)."""
        by_class: dict[Any, list[int]] = {}
        conditional = getattr(context.model, "conditional", False)
        for k, image in enumerate(wanted):
            by_class.setdefault(image.metadata.get("class") if conditional else None, []).append(k)
        fresh: list[Output] = [None] * len(wanted)  # type: ignore[list-item]
        for label, positions in by_class.items():
            conditions = context.request.conditions if label is None else {"class": label}
            for k, output in zip(positions, self._generate(len(positions), f"{round_}:{label}", context, conditions)):
                fresh[k] = output
        return fresh

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
        import pandas as pd

        outputs = self._generate(n, round_, context, context.request.conditions)
        return pd.concat([o.frame for o in outputs], ignore_index=True).iloc[:n]

    def _generate(self, n: int, round_: Any, context: GenerationContext, conditions: dict[str, Any]) -> list[Output]:
        """Outputs for n more items from the generating model, seeded from the micro-batch seed and `round_`."""
        if context.model is None:
            raise ModelError("the memorisation policy cannot replace outputs: the context names no model")
        digest = hashlib.sha256(f"{context.seed}:memorisation:{round_}".encode()).digest()
        seed = int.from_bytes(digest[:8], "big") >> 1
        sub = context.request.model_copy(update={"n": n, "seed": seed, "conditions": conditions})
        return context.model.generate(sub, dataclasses.replace(context, request=sub, seed=seed, item_conditions=None))

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
    return Finding("memorisation-unchecked", "model has no training reference; outputs were not checked "
                   "(missing_reference='allow')", output_index=index, details={"checked": False})


def _image_details(dcr: float, exact: bool, flagged: bool) -> dict[str, Any]:
    """One image's figures: its DCR (None when at or beyond the search cap, i.e. far from every training image)."""
    return {"dcr": None if not np.isfinite(dcr) else round(float(dcr), 6), "exact_copy": bool(exact), "memorised": bool(flagged)}


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
