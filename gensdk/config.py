"""Engine configuration: the same object from Python, from `gensdk.toml`, and from `--config` on the CLI.

    device = "auto"                  # "auto" (CUDA when present), "cpu", "cuda", "cuda:1"
    dtype = "auto"                   # "auto" (float32 on CPU, bfloat16 on CUDA), "float32", "float16", "bfloat16"
    audit = "audit.db"               # path or URL of the audit trail; default $GENSDK_AUDIT, then the user data dir
    audit_options = { checkpoint_every = 100 }

    [[policies]]                     # applied in this order
    id = "pii"
    on_fail = "block"                # what a violation means: "block" or "warn"
    on_error = "block"               # "allow" lets outputs through on a policy error, recorded as "bypassed"
    timeout_s = 30
    mandatory = true                 # a request cannot switch it off
    options = { entities = ["email"] }
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gensdk.errors import ConfigError
from gensdk.policy import PolicySettings
from gensdk.request import pydantic_message, validate_options

__all__ = ["EngineConfig", "PolicyConfig", "load_config"]


class PolicyConfig(PolicySettings):
    """One enabled policy: its id, its own options, and the engine-wide settings (on_fail, on_error, ...)."""

    id: str = Field(min_length=1)
    options: dict[str, Any] = Field(default_factory=dict)

    def settings(self) -> PolicySettings:
        return PolicySettings.model_validate(self.model_dump(exclude={"id", "options"}))


class EngineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    device: str = "auto"
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    max_batch_size: int | None = Field(None, ge=1)
    audit: str | None = None
    audit_options: dict[str, Any] = Field(default_factory=dict)
    policies: list[PolicyConfig] = Field(default_factory=list)

    @classmethod
    def parse(cls, data: EngineConfig | Mapping[str, Any] | str | Path | None) -> EngineConfig:
        if isinstance(data, (str, Path)):
            return load_config(data)
        return validate_options(cls, data, "engine configuration")  # type: ignore[no-any-return]


def load_config(path: str | Path) -> EngineConfig:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"configuration file {path} does not exist") from None
    except (OSError, ValueError) as exc:  # ValueError: bad TOML, bad UTF-8, a NUL byte in the path
        raise ConfigError(f"cannot read configuration file {path}: {exc}") from None
    try:
        return EngineConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid configuration in {path}: {pydantic_message(exc)}") from None
