"""Everything about gensdk's build is in pyproject.toml except one choice made at build time: the PII detectors
(`policies/gensdk_privacy`, the modules below) are compiled with mypyc, which scans text 1.2-1.3 times as fast
as the same modules run by the interpreter (`benchmarks/bench_pii.py`). They are the same Python files either way.

GENSDK_MYPYC, read when a wheel is built:

* unset or "auto": compiled for a regular wheel (`pip install .`, `pip wheel .`) when mypyc and a C compiler are
  there; an editable install (`pip install -e .`) stays pure Python, so that an edit to a detector takes effect;
* "1": compiled for a regular wheel, and the build fails if it cannot be;
* "0": never compiled.

An editable install is never compiled: the extension modules would shadow the files being edited.
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig

from setuptools import setup

# Hot, typed and free of heavy imports; the policy around them (pii.py) stays interpreted.
COMPILED = [f"policies/gensdk_privacy/{name}.py" for name in ("addresses", "checksums", "detectors", "names", "numbers", "phones")]
# What type-checking the compiled modules needs: gensdk's own modules and phonenumbers are imported, not compiled.
MYPY_OPTIONS = ["--follow-imports=skip", "--ignore-missing-imports"]
BUILD_COMMANDS = {"bdist_wheel", "build", "build_ext", "install"}


def _wanted() -> bool:
    mode = os.environ.get("GENSDK_MYPYC", "auto").strip().lower()
    if mode not in ("auto", "0", "1"):
        sys.exit(f"GENSDK_MYPYC={mode!r}: use auto, 1 (compile the PII detectors) or 0 (keep them pure Python)")
    building = BUILD_COMMANDS & set(sys.argv) and "editable_wheel" not in sys.argv
    if mode == "0" or not building:
        return False
    if mode == "1":
        return True
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    try:
        import mypyc  # noqa: F401
    except ImportError:
        print("gensdk: mypyc is not installed; the PII detectors stay pure Python", file=sys.stderr)
        return False
    if shutil.which(compiler) is None:
        print(f"gensdk: no C compiler ({compiler}); the PII detectors stay pure Python", file=sys.stderr)
        return False
    return True


def ext_modules() -> list:
    if not _wanted():
        return []
    from mypyc.build import mypycify

    return mypycify([*MYPY_OPTIONS, *COMPILED], opt_level="3", group_name="gensdk_privacy_detectors")


setup(ext_modules=ext_modules())
