"""The generation request and the per-request context the policies and the family share."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gensdk._canonical import digest_of
from gensdk.errors import ConfigError, RequestError

__all__ = ["GenerationContext", "Request", "parse_request", "pydantic_message", "validate_options"]

# Larger requests are split into micro-batches by the engine; this bounds one call, not one batch.
MAX_OUTPUTS_PER_REQUEST = 10_000_000


class Request(BaseModel):
    """What to generate. `n` counts outputs for text and images, rows for tables.

    `params` holds family-specific options (temperature, steps, ...); the family validates them with its own
    pydantic model, so a misspelt option is an error naming it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Strict: n=True or n="5" is a mistake to report, not to coerce.
    n: int = Field(1, ge=1, le=MAX_OUTPUTS_PER_REQUEST, strict=True)
    seed: int | None = Field(None, ge=0, lt=2**63, strict=True)
    prompts: list[str] | None = None
    # Chat input: a batch of conversations, each a list of {"role": ..., "content": ...} messages.
    messages: list[list[dict[str, str]]] | None = None
    conditions: dict[str, Any] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    request_id: str | None = Field(None, min_length=1, max_length=200)
    disable_policies: list[str] = Field(default_factory=list)

    def digest(self) -> str:
        return digest_of(self.model_dump(mode="json"))


def pydantic_message(error: ValidationError) -> str:
    """One line per problem, naming the field: 'n: Input should be greater than or equal to 1'."""
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "(root)"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def validate_options(model: type[BaseModel], value: Any, what: str) -> Any:
    """An options model from an instance or a mapping; anything malformed is a ConfigError naming `what`."""
    if isinstance(value, model):
        return value
    try:
        return model.model_validate(dict(value or {}))
    except ValidationError as exc:
        raise ConfigError(f"invalid {what}: {pydantic_message(exc)}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid {what}: {exc}") from None


def parse_request(request: Request | Mapping[str, Any] | None, overrides: Mapping[str, Any]) -> Request:
    """Accept a Request, a mapping, or keyword arguments; anything malformed becomes a RequestError."""
    if isinstance(request, Request) and not overrides:
        return request
    if request is None:
        data: dict[str, Any] = {}
    elif isinstance(request, Request):
        data = request.model_dump()
    elif isinstance(request, Mapping):
        data = dict(request)
    else:
        raise RequestError(f"request must be a gensdk.Request or a mapping, not {type(request).__name__}")
    data.update(overrides)
    try:
        return Request.model_validate(data)
    except ValidationError as exc:
        raise RequestError(f"invalid request: {pydantic_message(exc)}") from None


@dataclass
class GenerationContext:
    """Shared by the policies and the family for one micro-batch.

    `processors` are contributed by policies through `prepare_generation` (a logits processor, initial
    latents, ...). The family must `take()` every processor it applies; one left untaken means a policy could
    not act on this output, and the engine blocks it (fail closed).
    """

    request: Request
    seed: int
    device: str
    dtype: str
    modality: str
    model_info: dict[str, Any]
    # The model family instance generating: policies that need what it stored at training time (a
    # memorisation reference, a replay index) ask it, e.g. `context.model.training_reference()`.
    model: Any = None
    batch_index: int = 0
    batch_offset: int = 0
    processors: list[Any] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)
    # `Engine.record_event(kind, body)`: a policy that audits a window of outputs (bias) writes its own
    # record to the same trail. None outside an engine run.
    record_event: Callable[[str, Mapping[str, Any]], dict[str, Any]] | None = field(default=None, repr=False)
    # Set when requests that differ only in their conditions share one model call (`gensdk.batching`, merge
    # kind "items"): each output's conditions, in output order, replacing `request.conditions` (then empty).
    # Families read them through `conditions_per_item`.
    item_conditions: list[dict[str, Any]] | None = None
    _taken: set[int] = field(default_factory=set, repr=False)
    _item_conditions_read: bool = field(default=False, repr=False)

    def conditions_per_item(self) -> list[dict[str, Any]]:
        """The conditions of each of the micro-batch's `request.n` outputs: the request's own for every one, or
        each item's own when requests with different conditions share this call. A family that declares the
        merge kind "items" must read them here: the batcher fails a shared call whose family did not."""
        if self.item_conditions is None:
            return [self.request.conditions] * self.request.n
        self._item_conditions_read = True
        return self.item_conditions

    def unread_item_conditions(self) -> bool:
        return self.item_conditions is not None and not self._item_conditions_read

    def take(self, kind: type) -> list[Any]:
        """Return the processors of `kind` and mark them applied."""
        found = [p for p in self.processors if isinstance(p, kind)]
        self._taken.update(id(p) for p in found)
        return found

    def untaken(self) -> list[Any]:
        return [p for p in self.processors if id(p) not in self._taken]

    def torch_generator(self) -> Any:
        """A torch.Generator on the engine's device, seeded for this micro-batch."""
        import torch

        gen = torch.Generator(device=self.device)
        gen.manual_seed(self.seed)
        return gen


def fresh_seed() -> int:
    return secrets.randbits(63)
