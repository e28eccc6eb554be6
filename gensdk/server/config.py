"""The server's configuration: one TOML file, validated before anything starts.

    [server]                      # where and how to listen (every key optional)
    host = "127.0.0.1"
    port = 8000

    [engine]                      # exactly the keys of gensdk.toml: device, dtype, audit, policies, ...
    audit = "audit.db"
    [[engine.policies]]
    id = "watermark-text"
    options = { key_file = "wm.key" }

    [models.shakespeare]          # the name clients send as "model"
    path = "models/shakespeare"   # a local model directory
    load = { }                    # options for the family's load(), e.g. allow_pickle = true (recorded)
    batching = { max_batch = 8, wait_ms = 5 }

    [[keys]]                      # `gensdk serve hash-key` prints a new key and this entry
    name = "alice"
    hash = "sha256:…"
    scopes = ["generate", "detect", "audit-read"]
    rate_per_minute = 600

Unknown keys anywhere are an error naming the key. Relative paths are relative to the working directory,
as in gensdk.toml.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gensdk.config import EngineConfig
from gensdk.errors import ConfigError
from gensdk.request import pydantic_message

__all__ = ["SCOPES", "ApiKeyConfig", "BatchingConfig", "LimitsConfig", "ListenConfig", "ModelConfig",
           "ServerConfig", "load_server_config"]

Scope = Literal["generate", "detect", "audit-read"]
SCOPES: tuple[str, ...] = ("generate", "detect", "audit-read")
_HASH = re.compile(r"sha256:[0-9a-f]{64}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ListenConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)  # 0: any free port (tests)
    # Concurrent connections beyond this are answered 503 by uvicorn before any work is done.
    max_connections: int = Field(256, ge=1)
    # Threads that run the engine; generation never runs on the event loop.
    generation_threads: int = Field(8, ge=1, le=256)
    # Requests waiting for a generation thread beyond this are answered 503 at once.
    max_pending: int = Field(64, ge=0)
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    access_log: bool = True


class LimitsConfig(_Strict):
    max_body_bytes: int = Field(1_048_576, ge=1024)  # larger bodies: 413, before any of it is parsed
    # A client must deliver its whole request body within this (slow uploads: 408).
    body_timeout_s: float = Field(10.0, gt=0)
    # A streaming client that has not taken a chunk for this long is dropped; its record is still committed.
    send_timeout_s: float = Field(30.0, gt=0)
    max_outputs: int = Field(16, ge=1, le=1024)  # n of completions and images
    max_prompts: int = Field(16, ge=1, le=1024)  # prompts in one completions request
    max_tokens: int = Field(1024, ge=1)
    max_rows: int = Field(100_000, ge=1)  # rows of one table request
    # Characters held back while streaming, so output policies see a span before it is released.
    stream_lookback: int = Field(64, ge=0)
    # A stream with nothing to send for this long (waiting for a generation thread) sends a keep-alive comment.
    stream_ping_s: float = Field(15.0, gt=0)


class BatchingConfig(_Strict):
    enabled: bool = True
    max_batch: int = Field(8, ge=1, le=1024)  # requests merged into one model call
    wait_ms: float = Field(5.0, ge=0, le=1000)  # how long the first request waits for company


class ModelConfig(_Strict):
    path: Path
    load: dict[str, Any] = Field(default_factory=dict)
    batching: BatchingConfig = Field(default_factory=BatchingConfig)


class ApiKeyConfig(_Strict):
    name: str  # who the key belongs to: goes to the logs and the audit trail, the key never does
    hash: str
    scopes: list[Scope] = Field(min_length=1)
    rate_per_minute: float = Field(600.0, gt=0)
    burst: int = Field(20, ge=1)  # requests allowed at once before the rate applies

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError("key names are 1-64 letters, digits, '.', '_' or '-'")
        return value

    @field_validator("hash")
    @classmethod
    def _hash_form(cls, value: str) -> str:
        if not _HASH.fullmatch(value):
            raise ValueError("expected 'sha256:' and 64 lowercase hex digits (from `gensdk serve hash-key`); "
                             "never put the key itself in the configuration")
        return value


class ServerConfig(_Strict):
    server: ListenConfig = Field(default_factory=ListenConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    engine: EngineConfig = Field(default_factory=EngineConfig)
    models: dict[str, ModelConfig] = Field(min_length=1)
    keys: list[ApiKeyConfig] = Field(min_length=1)

    @field_validator("models")
    @classmethod
    def _model_names(cls, value: dict[str, ModelConfig]) -> dict[str, ModelConfig]:
        bad = [name for name in value if not _NAME.fullmatch(name)]
        if bad:
            raise ValueError(f"model name {bad[0]!r}: use 1-64 letters, digits, '.', '_' or '-'")
        return value

    @model_validator(mode="after")
    def _unique_keys(self) -> ServerConfig:
        for attr in ("name", "hash"):
            seen: set[str] = set()
            for key in self.keys:
                value = getattr(key, attr)
                if value in seen:
                    shown = value if attr == "name" else "(a hash)"
                    raise ValueError(f"two API keys share the {attr} {shown}; each key needs its own")
                seen.add(value)
        return self

    @classmethod
    def parse(cls, data: ServerConfig | dict[str, Any] | str | Path) -> ServerConfig:
        if isinstance(data, ServerConfig):
            return data
        if isinstance(data, (str, Path)):
            return load_server_config(data)
        return _validated(data, "server configuration")


def load_server_config(path: str | Path) -> ServerConfig:
    """Read and validate a server TOML file; every problem is one ConfigError line naming the file and key."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"server configuration {path} does not exist") from None
    except (OSError, ValueError) as exc:  # ValueError: bad TOML or UTF-8
        raise ConfigError(f"cannot read server configuration {path}: {exc}") from None
    return _validated(data, f"server configuration {path}")


def _validated(data: dict[str, Any], what: str) -> ServerConfig:
    try:
        return ServerConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid {what}: {pydantic_message(exc)}") from None
