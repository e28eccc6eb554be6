"""Data shipped with gensdk for the demo, tests and benchmarks (sources and licences in README.md here)."""

from __future__ import annotations

from importlib.resources import files
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["adult_path", "load_adult", "load_tinyshakespeare", "tinyshakespeare_path"]


def adult_path() -> str:
    return str(files("gensdk.datasets") / "adult.csv.gz")


def load_adult() -> pd.DataFrame:
    """UCI Adult census income (30,162 rows, rows with missing values removed). CC BY 4.0."""
    import pandas as pd

    return pd.read_csv(adult_path())


def tinyshakespeare_path() -> str:
    return str(files("gensdk.datasets") / "tinyshakespeare.txt.gz")


def load_tinyshakespeare() -> str:
    """The concatenated works of Shakespeare (1.1 MB of plain text, public domain), for training small LMs."""
    import gzip

    with gzip.open(tinyshakespeare_path(), "rt", encoding="utf-8") as f:
        return f.read()
