"""gensdk_gmm: Gaussian mixture tables, the reference model family for plugin authors.

Everything a family needs is here in three small modules: `model.py` (the family), `plugin.py` (the hook
implementations the `gensdk` entry point names) and `cli.py` (`gensdk train gmm`).
"""

from gensdk_gmm.model import GMMFamily, GMMOptions

__all__ = ["GMMFamily", "GMMOptions"]
