"""gensdk_example: a third-party gensdk plugin in four small modules.

`model.py` (the `echo` text family), `policy.py` (the `no-shouting` policy), `cli.py` (`gensdk example hello`)
and `plugin.py`, the module the `gensdk` entry point `example` names.
"""

__version__ = "0.1.0"
