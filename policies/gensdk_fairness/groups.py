"""Sensitive groups as integer codes, and binary targets as 0/1: the two inputs every group metric needs.

Groups follow fairlearn's convention: with several sensitive columns a group is one combination of their values
that occurs in the data (intersectional groups), and groups are ordered by their values. Encoding is the
expensive part of a group metric over a million rows, so it never sorts the rows: pandas categoricals give
their codes for free, anything else is factorised once, and each row's combination is a cell of the lattice of
all combinations (mixed-radix arithmetic on the codes). The cells no row occupies are dropped after counting,
on the small array of counts, not on the rows.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from gensdk.errors import DataError

# Combinations of sensitive values listed in full (a million cells is 32 MB of counts at most); beyond that,
# and beyond 4 per row, only the combinations that occur are numbered.
LATTICE_CELLS = 1 << 20
# Below this many rows a thread hand-off costs more than encoding the columns one after another.
PARALLEL_ROWS = 100_000

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Groups", "binarize", "encode_groups", "encode_lattice", "group_name", "sensitive_frame"]


@dataclass(frozen=True)
class Groups:
    """Rows sorted into groups. Every combination of the sensitive columns' values is a cell of the *lattice*
    (`lattice[k]` labels cell k, `key[i]` is row i's cell); the groups are the cells that occur (`present`, in
    order), as in fairlearn. `codes[i]` is row i's group and `labels[g]` names group g (a value, or a tuple
    with several columns)."""

    key: np.ndarray
    lattice: list[Any]
    present: np.ndarray
    columns: list[str]

    @classmethod
    def from_lattice(cls, key: np.ndarray, lattice: list[Any], columns: list[str], occupancy: np.ndarray | None = None) -> Groups:
        """Groups of the occupied cells; `occupancy` (rows per cell) saves a pass over the rows when known."""
        counts = np.bincount(key, minlength=len(lattice)) if occupancy is None else occupancy
        return cls(key, lattice, np.flatnonzero(counts), columns)

    @property
    def count(self) -> int:
        return len(self.present)

    @property
    def labels(self) -> list[Any]:
        return [self.lattice[k] for k in self.present]

    @property
    def names(self) -> list[str]:
        return [group_name(label, self.columns) for label in self.labels]

    @functools.cached_property
    def codes(self) -> np.ndarray:
        """Row -> group index: the lattice key itself when every cell occurs, else renumbered (one gather)."""
        if len(self.present) == len(self.lattice):
            return self.key
        remap = np.full(len(self.lattice), -1, dtype=np.int64)
        remap[self.present] = np.arange(len(self.present))
        return remap[self.key]


def group_name(label: Any, columns: Sequence[str] = ()) -> str:
    """'Female' for one column; 'sex=Female, race=White' for a combination."""
    if isinstance(label, tuple):
        return ", ".join(f"{c}={v}" for c, v in zip(columns, label)) if columns else ", ".join(map(str, label))
    return str(label)


def sensitive_frame(frame: pd.DataFrame, columns: Sequence[str], what: str = "table") -> pd.DataFrame:
    """The sensitive columns of `frame`, refusing missing columns and missing cells by name."""
    if not columns:
        raise DataError(f"no sensitive column given for the {what}: name at least one (e.g. sensitive=['sex'])")
    absent = [c for c in columns if c not in frame.columns]
    if absent:
        raise DataError(f"sensitive column(s) {absent} are not in the {what}; it has: {', '.join(map(str, frame.columns))}")
    part = frame[list(columns)]
    holes = [c for c in columns if part[c].isna().any()]
    if holes:
        raise DataError(f"sensitive column(s) {holes} of the {what} have missing cells; fill or drop those rows first")
    return part


def encode_groups(sensitive: Any, columns: Sequence[str] | None = None) -> Groups:
    """Group codes for a Series, an array, a DataFrame (one column per sensitive feature) or a mapping of
    name -> values. Only combinations present in the data become groups, ordered by their values."""
    return Groups.from_lattice(*encode_lattice(sensitive, columns))


def encode_lattice(sensitive: Any, columns: Sequence[str] | None = None) -> tuple[np.ndarray, list[Any], list[str]]:
    """(key, lattice labels, column names): each row's cell among every combination of the columns' values,
    in lexicographic order of the sorted values. Categoricals give their codes without touching the values."""
    parts, names = _columns_of(sensitive, columns)
    if not parts or len(parts[0]) == 0:
        raise DataError("no rows to group: the sensitive values are empty")
    per_column = _codes_of_columns(parts, names)
    if len(per_column) == 1:
        codes, uniques = per_column[0]
        # int64, whatever the categorical's code width: callers compute key * 4 + ..., which would overflow int8
        return codes.astype(np.int64, copy=False), list(uniques), names
    key = np.zeros(len(per_column[0][0]), dtype=np.int64)
    radix = 1
    for codes, uniques in reversed(per_column):
        key += codes.astype(np.int64, copy=False) * radix
        radix *= len(uniques)
    values = [uniques for _, uniques in per_column]
    if radix <= max(4 * len(key), LATTICE_CELLS):
        return key, [tuple(combo) for combo in itertools.product(*values)], names
    # Too many combinations to list them all (many columns, many values): number the ones that occur.
    cells, key = np.unique(key, return_inverse=True)
    return key.astype(np.int64), [_decode(int(cell), values) for cell in cells], names


def _decode(cell: int, values: list[list[Any]]) -> tuple[Any, ...]:
    parts = []
    for uniques in reversed(values):
        cell, index = divmod(cell, len(uniques))
        parts.append(uniques[index])
    return tuple(reversed(parts))


def _columns_of(sensitive: Any, columns: Sequence[str] | None) -> tuple[list[Any], list[str]]:
    import pandas as pd

    if isinstance(sensitive, pd.DataFrame):
        return [sensitive[c] for c in sensitive.columns], [str(c) for c in sensitive.columns]
    if isinstance(sensitive, Mapping):
        return list(sensitive.values()), [str(k) for k in sensitive]
    if isinstance(sensitive, pd.Series):
        return [sensitive], [str(sensitive.name) if sensitive.name is not None else "group"]
    array = np.asarray(sensitive)
    if array.ndim == 2:
        names = list(columns) if columns else [f"feature{i}" for i in range(array.shape[1])]
        return [array[:, i] for i in range(array.shape[1])], names
    return [array], list(columns or ["group"])


def _codes_of_columns(parts: list[Any], names: list[str]) -> list[tuple[np.ndarray, list[Any]]]:
    """`_codes` of every column; several long ones in parallel threads, since hashing strings (pandas'
    factorize, Arrow's dictionary encoding) releases the GIL: two string columns of a million rows take the
    time of one on two cores."""
    if len(parts) < 2 or len(parts[0]) < PARALLEL_ROWS:
        return [_codes(values, name) for values, name in zip(parts, names)]
    return list(_encoder_pool().map(_codes, parts, names))


@functools.cache
def _encoder_pool() -> Any:
    import os
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="gensdk-groups")


def _codes(values: Any, name: str) -> tuple[np.ndarray, list[Any]]:
    """(codes, sorted values) of one column. A categorical's unused categories stay in (the lattice drops
    them when no row has them)."""
    import pandas as pd

    series = values if isinstance(values, pd.Series) else pd.Series(np.asarray(values))
    if series.isna().any():
        raise DataError(f"sensitive column {name!r} has missing values; fill or drop those rows first")
    if isinstance(series.dtype, pd.CategoricalDtype):
        codes = series.cat.codes.to_numpy()
        uniques = list(series.cat.categories)
        order = np.arange(len(uniques)) if series.cat.ordered else _sort_order(uniques)
    else:
        # The Series' own factorize: on pandas' Arrow-backed strings it is a dictionary encoding, ten times
        # faster than hashing a million Python strings pulled out with to_numpy().
        codes, found = series.factorize(sort=False)
        uniques = list(found)
        order = _sort_order(uniques)
    if np.array_equal(order, np.arange(len(order))):
        return codes, uniques
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank[codes], [uniques[i] for i in order]


def _sort_order(uniques: list[Any]) -> np.ndarray:
    """Sort the few unique values (not the rows); mixed types fall back to their text."""
    try:
        return np.asarray(sorted(range(len(uniques)), key=lambda i: uniques[i]), dtype=np.int64)
    except TypeError:
        return np.asarray(sorted(range(len(uniques)), key=lambda i: str(uniques[i])), dtype=np.int64)


def binarize(values: Any, positive: Any = None, name: str = "target") -> np.ndarray:
    """0/1 int8 labels from a binary column: `positive` marks the 1s. Without `positive`, the values must
    already be 0/1 or booleans. More than two distinct values is a DataError: selection rates, true and
    false positive rates are defined for binary outcomes only."""
    import pandas as pd

    array = values.to_numpy() if isinstance(values, pd.Series) else np.asarray(values)
    if positive is None and array.dtype.kind in "biu" and array.size:
        # 0/1 integers or booleans: a min and a max say it, no hashing of a million values
        low, high = array.min(), array.max()
        if low >= 0 and high <= 1:
            return array.astype(np.int8, copy=False)
    series = values if isinstance(values, pd.Series) else pd.Series(array)
    if series.isna().any():
        raise DataError(f"{name} has missing values; fill or drop those rows first")
    distinct = pd.unique(series.to_numpy())
    if len(distinct) > 2:
        shown = ", ".join(map(repr, list(distinct)[:6]))
        raise DataError(f"{name} has {len(distinct)} distinct values ({shown}, ...); group selection rates need a "
                        "binary target: binarise it first (e.g. income > 50000)")
    if positive is None:
        if set(map(_as_number, distinct)) <= {0, 1}:
            return series.to_numpy().astype(np.int8)
        raise DataError(f"{name} takes the values {sorted(map(str, distinct))}; say which is the positive outcome "
                        f"(positive=...)")
    hits = _matches(series, positive)
    if len(distinct) == 2 and not hits.any():
        raise DataError(f"{name} has no value {positive!r}; it takes {sorted(map(str, distinct))}")
    return hits.astype(np.int8)


def _matches(series: Any, positive: Any) -> np.ndarray:
    """Equal, or equal as text (a CSV round trip turns 1 into '1' and True into 'True')."""
    values = series.to_numpy()
    exact = values == positive
    if isinstance(exact, np.ndarray) and exact.any():
        return exact
    return series.astype(str).to_numpy() == str(positive)


def _as_number(value: Any) -> Any:
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    return value
