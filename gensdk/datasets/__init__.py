"""Data shipped with gensdk for the demo, tests and benchmarks (sources and licences in README.md here)."""

from __future__ import annotations

from importlib.resources import files
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["load_adult", "adult_path"]


def adult_path() -> str:
    return str(files("gensdk.datasets") / "adult.csv.gz")


def load_adult() -> pd.DataFrame:
    """UCI Adult census income (30,162 rows, rows with missing values removed). CC BY 4.0."""
    import pandas as pd

    return pd.read_csv(adult_path())
