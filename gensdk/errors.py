"""Every error gensdk raises on purpose.

Only these may escape the public API; anything else escaping is a bug. Each error carries the exit code the
CLI uses for it, so `gensdk ...` prints one readable line and exits with a code a script can branch on.

    GensdkError                         exit 1
    ├── ConfigError                     exit 2   unknown key, bad value, unreadable gensdk.toml
    ├── MissingDependencyError          exit 2   an extra is not installed: says what to pip install
    ├── PluginError                     exit 2
    │   ├── PluginLoadError                      an entry point failed to import (names it and its distribution)
    │   ├── DuplicateRegistrationError           two plugins registered the same id (names both distributions)
    │   └── UnknownComponentError                no model family / policy / audit sink with that id
    ├── RequestError                    exit 2   a malformed generation request
    │   └── MandatoryPolicyError                 a request tried to switch off a mandatory policy
    ├── DataError                       exit 2   malformed CSV, empty table, NaNs, wrong column types
    ├── ModelError                      exit 1
    │   ├── ModelLoadError                       missing, truncated or corrupted model directory
    │   └── GenerationError                      the model family failed while generating
    ├── OutputBlocked                   exit 3   a policy blocked the output (raised by Result.raise_for_verdict)
    └── AuditError                      exit 5
        ├── AuditLockedError                     another writer holds the audit database too long
        ├── AuditCorruptError                    the audit database cannot be read as an audit trail
        └── AuditVerificationError      exit 4   the chain or a checkpoint does not verify
"""

from __future__ import annotations

__all__ = [
    "AuditCorruptError",
    "AuditError",
    "AuditLockedError",
    "AuditVerificationError",
    "ConfigError",
    "DataError",
    "DuplicateRegistrationError",
    "GenerationError",
    "GensdkError",
    "MandatoryPolicyError",
    "MissingDependencyError",
    "ModelError",
    "ModelLoadError",
    "OutputBlocked",
    "PluginError",
    "PluginLoadError",
    "RequestError",
    "UnknownComponentError",
]


class GensdkError(Exception):
    """Base of every error gensdk raises on purpose."""

    exit_code = 1


class ConfigError(GensdkError):
    exit_code = 2


class MissingDependencyError(GensdkError):
    exit_code = 2

    def __init__(self, module: str, extra: str, purpose: str):
        super().__init__(
            f"{purpose} needs the Python package {module!r}, which is not installed: "
            f"pip install 'gensdk[{extra}]'"
        )
        self.module = module
        self.extra = extra


class PluginError(GensdkError):
    exit_code = 2


class PluginLoadError(PluginError):
    pass


class DuplicateRegistrationError(PluginError):
    pass


class UnknownComponentError(PluginError):
    pass


class RequestError(GensdkError):
    exit_code = 2


class MandatoryPolicyError(RequestError):
    pass


class DataError(GensdkError):
    exit_code = 2


class ModelError(GensdkError):
    pass


class ModelLoadError(ModelError):
    pass


class GenerationError(ModelError):
    pass


class OutputBlocked(GensdkError):
    """Raised by `Result.raise_for_verdict()`; carries the result so callers can read the findings."""

    exit_code = 3

    def __init__(self, message: str, result: object):
        super().__init__(message)
        self.result = result


class AuditError(GensdkError):
    exit_code = 5


class AuditLockedError(AuditError):
    pass


class AuditCorruptError(AuditError):
    pass


class AuditVerificationError(AuditError):
    exit_code = 4
