"""Keyed watermark for synthetic tables: a green/red split of each numeric value's finest digits.

Every non-zero numeric value x is read at the quantum q(x) = 10**(e - digits + 1), with e = floor(log10 |x|) and
`digits` significant digits (default 4); its *cell* is k = floor(x / q). Values whose quantum is finer than
their column's own decimal grid (integers below 10**(digits - 1), prices below 10 with two decimals, ...) are
left alone. A keyed hash
of (e, k) makes half of all cells green. Embedding moves each red value to the nearest green cell (one quantum
away in three cases out of four, never more than MAX_STEPS quanta, never out of the column's range or onto
another value of the column), keeping the value's position inside its cell; integers stay integers and values
stay on the column's decimal grid. The change is bounded: at most MAX_STEPS quanta, i.e. a relative change below
MAX_STEPS * 10**(1 - digits) (4e-3 with the defaults).

Only values that occur once in their column are marked, and only those are counted by the detector: a point
mass (the zeros of a capital-gain column, the ages of a 500-row sample) is left exactly as generated, which is
what keeps the columns' distributions, and so quality metrics such as SDMetrics', unchanged. The detector
counts green cells among the distinct (e, k) of such values and reports the exact binomial p-value against
1/2; nothing in the data depends on the key, so on an unmarked table that p-value is calibrated.

A table needs numeric columns with many distinct values (amounts, weights, measurements) to carry the mark:
embedding fails (the policy blocks the output) when fewer than `min_cells` values can be marked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import Field, SecretStr

from gensdk._markers import hookimpl
from gensdk.errors import DataError
from gensdk.outputs import Output
from gensdk.policy import Policy, PolicyOptions
from gensdk.request import GenerationContext
from gensdk.verdicts import Finding
from gensdk_watermark.keys import WatermarkKey, resolve_key
from gensdk_watermark.text import binomial_sf

__all__ = ["TableDetection", "TableMark", "TableWatermarkPolicy"]

MAX_STEPS = 4  # quanta a value may move at most
DEFAULT_DIGITS = 4
_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on uint64 arrays (wrapping)."""
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint64(30))
        x = x * np.uint64(0xBF58476D1CE4E5B9)
        x = x ^ (x >> np.uint64(27))
        x = x * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


@dataclass(frozen=True)
class TableDetection:
    detected: bool
    verdict: str  # "watermarked", "not watermarked", "inconclusive"
    z: float
    p_value: float
    cells: int  # distinct values scored
    green: int
    columns: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"detected": self.detected, "verdict": self.verdict, "z": round(self.z, 4), "p_value": self.p_value,
                "cells": self.cells, "green": self.green, "columns": self.columns}


class TableMark:
    def __init__(self, seed: int, digits: int = DEFAULT_DIGITS, alpha: float = 1e-3, min_cells: int = 16):
        self.seed = np.uint64(seed)
        self.digits, self.alpha, self.min_cells = digits, alpha, min_cells

    @classmethod
    def from_key(cls, key: WatermarkKey, **kwargs: Any) -> TableMark:
        return cls(key.derive_int("table/cells/v1", 64), **kwargs)

    # -- cells ---------------------------------------------------------------------------------------------------

    def _green(self, exponent: np.ndarray, cell: np.ndarray) -> np.ndarray:
        h = _mix64(cell.astype(np.int64).view(np.uint64) ^ self.seed)
        h = _mix64(h ^ (exponent.astype(np.int64).view(np.uint64) * np.uint64(0x9E3779B97F4A7C15)))
        return (h >> np.uint64(63)) == 0  # one bit: gamma = 1/2

    def _cells(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(exponent, cell, quantum) of non-zero finite values."""
        exponent = np.floor(np.log10(np.abs(values))).astype(np.int64)
        quantum = 10.0 ** (exponent - self.digits + 1)
        cell = np.floor(values / quantum + 1e-9)  # a value on the grid must not fall into the cell below
        return exponent, cell, quantum

    def _targets(self, values: np.ndarray, present: np.ndarray) -> np.ndarray:
        """Values that carry the mark: finite, non-zero, once in their column, and large enough that one
        quantum is a multiple of the column's own grid (so a marked integer stays an integer)."""
        target = present & _unique_mask(values, present) & (values != 0)
        if target.any():
            resolution = _resolution(values[present & (values != 0)])
            exponent = np.floor(np.log10(np.abs(values[target].astype(np.float64)))).astype(np.int64)
            fits = 10.0 ** (exponent - self.digits + 1) >= resolution * (1 - 1e-9)
            target[np.flatnonzero(target)[~fits]] = False
        return target

    # -- embedding -----------------------------------------------------------------------------------------------

    def embed(self, frame: Any) -> dict[str, Any]:
        """Mark `frame` in place; returns what changed. Raises DataError when the table cannot carry the mark."""
        numeric = _numeric_columns(frame)
        if not numeric:
            raise DataError("the table has no numeric column, so it cannot carry the watermark")
        marked, moved, max_relative = 0, 0, 0.0
        for name in numeric:
            m, mv, rel = self._embed_column(frame, name)
            marked, moved, max_relative = marked + m, moved + mv, max(max_relative, rel)
        if marked < self.min_cells:
            raise DataError(
                f"the table has {marked} numeric values that occur once in their column; the watermark needs at least "
                f"{self.min_cells} (columns with many distinct values: amounts, weights, measurements)"
            )
        return {"cells": marked, "changed": moved, "max_relative_change": max_relative, "columns": numeric}

    def _embed_column(self, frame: Any, name: str) -> tuple[int, int, float]:
        series = frame[name]
        values, present = _values(series)
        target = self._targets(values, present)
        x = values[target].astype(np.float64)
        if len(x) == 0:
            return 0, 0, 0.0
        resolution = _resolution(values[present & (values != 0)])
        exponent, cell, quantum = self._cells(x)
        offset = np.clip(x / quantum - cell, 0.0, 1.0)  # where the value sits inside its cell, kept
        steps = np.array(sorted(range(-MAX_STEPS, MAX_STEPS + 1), key=lambda s: (abs(s), s)))  # 0, -1, 1, -2, ...
        candidates = cell[:, None] + steps[None, :]
        new = (candidates + offset[:, None]) * quantum[:, None]
        new = np.round(new / resolution) * resolution if resolution > 0 else new
        safe = np.where(new == 0, 1.0, new)
        new_exponent, new_cell, _ = self._cells(safe)
        lo, hi = values[present].min(), values[present].max()
        taken = np.isin(new, values[present]) & (steps[None, :] != 0)  # never onto another value of the column
        ok = (self._green(exponent[:, None], candidates) & (new >= lo) & (new <= hi) & (new != 0)
              & (new_exponent == exponent[:, None]) & (new_cell == candidates) & ~taken)
        marked = ok.any(axis=1)
        chosen = np.where(marked, new[np.arange(len(x)), ok.argmax(axis=1)], x)
        out = values.copy()
        out[np.flatnonzero(target)] = chosen.astype(out.dtype) if np.issubdtype(out.dtype, np.integer) else chosen
        frame[name] = _restore(series, out, present)
        relative = float(np.max(np.abs(chosen - x) / np.abs(x)))
        return int(marked.sum()), int((chosen != x).sum()), relative

    # -- detection -----------------------------------------------------------------------------------------------

    def detect(self, frame: Any) -> TableDetection:
        numeric = _numeric_columns(frame)
        if not numeric:
            raise DataError("the table has no numeric column to test for the watermark")
        keys = []
        for name in numeric:
            values, present = _values(frame[name])
            target = self._targets(values, present)
            if target.any():
                exponent, cell, _ = self._cells(values[target].astype(np.float64))
                keys.append(np.stack([exponent, cell.astype(np.int64)], axis=1))
        cells = np.unique(np.concatenate(keys), axis=0) if keys else np.zeros((0, 2), dtype=np.int64)
        n = len(cells)
        green = int(self._green(cells[:, 0], cells[:, 1]).sum()) if n else 0
        z = (green - n / 2) / math.sqrt(n / 4) if n else 0.0
        p = binomial_sf(green, n, 0.5) if n else 1.0
        if n < self.min_cells:
            return TableDetection(False, "inconclusive", z, p, n, green, numeric)
        detected = p < self.alpha
        return TableDetection(detected, "watermarked" if detected else "not watermarked", z, p, n, green, numeric)


def _numeric_columns(frame: Any) -> list[str]:
    import pandas as pd

    return [str(c) for c in frame.columns
            if pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])]


def _values(series: Any) -> tuple[np.ndarray, np.ndarray]:
    """Numeric values (int64 for integer columns, float64 otherwise) and a mask of the finite ones."""
    import pandas as pd

    if pd.api.types.is_integer_dtype(series) and not series.isna().any():
        values = series.to_numpy(dtype=np.int64)
        return values, np.ones(len(values), dtype=bool)
    values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    return values, np.isfinite(values)


def _unique_mask(values: np.ndarray, present: np.ndarray) -> np.ndarray:
    uniques, inverse, counts = np.unique(values[present], return_inverse=True, return_counts=True)
    mask = np.zeros(len(values), dtype=bool)
    mask[np.flatnonzero(present)] = counts[inverse] == 1
    return mask


def _resolution(values: np.ndarray) -> float:
    """The coarsest power of ten (1e-12 .. 1e15) of which every value is a multiple: the column's grid (0 for
    values with no common grid, such as full-precision floats)."""
    if len(values) == 0:
        return 0.0
    values = values.astype(np.float64)
    for power in range(15, -13, -1):
        ratio = values / 10.0**power
        nearest = np.round(ratio)
        if np.all((nearest != 0) & (np.abs(ratio - nearest) <= 1e-6 + np.abs(ratio) * 1e-12)):
            return 10.0**power
    return 0.0


def _restore(series: Any, values: np.ndarray, present: np.ndarray) -> Any:
    import pandas as pd

    if np.issubdtype(values.dtype, np.integer):
        return pd.Series(values, index=series.index, name=series.name).astype(series.dtype)
    out = pd.Series(np.where(present, values, np.nan), index=series.index, name=series.name)
    return out.astype(series.dtype) if pd.api.types.is_float_dtype(series) else out.round().astype(series.dtype)


# -- the policy ---------------------------------------------------------------------------------------------------


class TableWatermarkPolicy(Policy):
    """Watermarks generated tables (policy id ``watermark-table``); see the module docstring."""

    id = "watermark-table"
    version = "1"
    modalities = frozenset({"table"})

    class Options(PolicyOptions):
        key_file: str | None = None
        key: SecretStr | None = None  # hex; never written to describe() or the audit trail
        digits: int = Field(DEFAULT_DIGITS, ge=3, le=12)  # significant digits at which values are read
        min_cells: int = Field(16, ge=8)  # fewer markable values than this: the output is blocked
        alpha: float = Field(1e-3, gt=0, lt=1)

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        o = self.options
        self.key = resolve_key(o.key, o.key_file, what=f"policy {self.id!r}")
        self.mark = TableMark.from_key(self.key, digits=o.digits, alpha=o.alpha, min_cells=o.min_cells)

    @hookimpl
    def transform_output(self, outputs: list[Output], context: GenerationContext) -> list[Finding]:
        findings = []
        for i, output in enumerate(outputs):
            change = self.mark.embed(output.frame)  # type: ignore[attr-defined]
            check = self.mark.detect(output.frame)  # type: ignore[attr-defined]
            if not check.detected:
                raise DataError(f"the table watermark does not verify after embedding (p = {check.p_value:.3g})")
            details = {"policy": self.id, "scheme": "table-cells", "key_id": self.key.key_id, "digits": self.options.digits,
                       **change, "self_check": check.to_dict()}
            output.metadata["watermark"] = details
            findings.append(Finding("watermark-embedded", f"table watermarked in {change['cells']} values (key {self.key.key_id})",
                                    output_index=i, details=details))
        return findings
