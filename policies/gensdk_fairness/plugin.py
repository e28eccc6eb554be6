"""Hook implementations of gensdk_fairness; named by the `gensdk` entry point `fairness`."""

from __future__ import annotations
