"""Optional libraries, imported where they are needed; a missing one says which extra installs it."""

from __future__ import annotations

import importlib
from types import ModuleType

from gensdk.errors import MissingDependencyError

# import name -> (distribution to pip install, gensdk extra that brings it)
_SOURCES = {
    "fairlearn": ("fairlearn", "fairness"),
    "matplotlib": ("matplotlib", "fairness"),
    "scipy": ("scipy", "fairness"),
    "sklearn": ("scikit-learn", "fairness"),
    "vaderSentiment": ("vaderSentiment", "fairness"),
    "torch": ("torch", "gan"),
}


def require(module: str, purpose: str) -> ModuleType:
    """Import `module` (e.g. "scipy.stats"), or raise MissingDependencyError naming what to install."""
    top = module.split(".")[0]
    try:
        return importlib.import_module(module)
    except ImportError:
        distribution, extra = _SOURCES.get(top, (top, "fairness"))
        raise MissingDependencyError(distribution, extra, purpose) from None
