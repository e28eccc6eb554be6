"""gensdk: generative models behind fail-closed policies and a tamper-evident audit trail.

Importing gensdk imports no torch, transformers, diffusers or fairlearn: families load those when used.
"""

from gensdk._markers import hookimpl
from gensdk.config import EngineConfig, PolicyConfig, load_config
from gensdk.engine import Engine
from gensdk.errors import (
    AuditError,
    ConfigError,
    DataError,
    GenerationError,
    GensdkError,
    ModelLoadError,
    OutputBlocked,
    PluginError,
    RequestError,
)
from gensdk.family import ModelFamily, NoParams
from gensdk.outputs import ImageOutput, Output, TableOutput, TextOutput, write_outputs
from gensdk.policy import Policy, PolicyOptions, PolicySettings
from gensdk.request import GenerationContext, Request
from gensdk.result import Result
from gensdk.verdicts import Finding, PolicyOutcome, Verdict

__version__ = "0.1.0"

__all__ = [
    "AuditError",
    "ConfigError",
    "DataError",
    "Engine",
    "EngineConfig",
    "Finding",
    "GenerationContext",
    "GenerationError",
    "GensdkError",
    "ImageOutput",
    "ModelFamily",
    "ModelLoadError",
    "NoParams",
    "Output",
    "OutputBlocked",
    "PluginError",
    "Policy",
    "PolicyConfig",
    "PolicyOptions",
    "PolicyOutcome",
    "PolicySettings",
    "Request",
    "RequestError",
    "Result",
    "TableOutput",
    "TextOutput",
    "Verdict",
    "__version__",
    "hookimpl",
    "load_config",
    "write_outputs",
]
