"""Request and response bodies of every endpoint; FastAPI turns them into the OpenAPI document.

Requests are strict (`extra="forbid"`, no type coercion): a misspelt or unknown field, a string where a
number belongs, is a 422 naming the field. That is also why a request cannot switch a policy off: there is
no field for it, and an unknown field is refused.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AuditVerifyRequest", "AuditVerifyResponse", "ChatCompletionRequest", "ChatCompletionResponse",
    "CompletionRequest", "CompletionResponse", "DetectRequest", "DetectResponse", "ErrorBody", "HealthResponse",
    "ImageRequest", "ImageResponse", "ModelList", "TableRequest", "TableResponse", "VerifyRequest",
    "VerifyResponse",
]

_SEED = Field(None, ge=0, lt=2**63, description="Same seed, same outputs; a seeded request is never batched.")
_HEX64 = r"^[0-9a-fA-F]{64}$"


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class _Response(BaseModel):
    model_config = ConfigDict(extra="allow")


# -- what every answer carries ----------------------------------------------------------------------------------


class FindingBody(_Response):
    code: str
    message: str
    violation: bool
    output_index: int | None
    span: list[int] | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    policy_id: str


class PolicyBody(_Response):
    id: str
    status: str
    verdict: str
    error: str | None = None


class Envelope(_Response):
    """The ethics result of the call: verdict, findings, the audit record that holds them."""

    verdict: str = Field(description="pass | warn | bypassed | block (the most severe over all outputs)")
    findings: list[FindingBody]
    audit_record_id: str | None
    request_id: str = Field(description="Also in the audit record (as http:<key name>:<id>) and the X-Request-ID header.")
    blocked: list[int] = Field(default_factory=list, description="Indexes of generated outputs withheld by a policy.")
    policies: list[PolicyBody] = Field(default_factory=list)


class ErrorDetail(_Response):
    type: str = Field(description="invalid_json, invalid_request, unauthorized, forbidden, not_found, "
                                  "request_too_large, request_timeout, rate_limited, output_blocked, "
                                  "not_configured, overloaded, generation_error, audit_unavailable, internal_error")
    message: str
    param: str | None = None


class ErrorBody(_Response):
    """Every error. For `output_blocked` the verdict, findings and audit record id say why; never the content."""

    error: ErrorDetail
    request_id: str | None = None
    verdict: str | None = None
    findings: list[FindingBody] = Field(default_factory=list)
    audit_record_id: str | None = None
    blocked: list[int] = Field(default_factory=list)
    policies: list[PolicyBody] = Field(default_factory=list)


# -- text ---------------------------------------------------------------------------------------------------------


class _Sampling(_Request):
    model: str = Field(min_length=1, max_length=64)
    max_tokens: int = Field(16, ge=1)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    n: int = Field(1, ge=1)
    stream: bool = False
    stop: str | list[str] | None = None
    seed: int | None = _SEED
    user: str | None = Field(None, max_length=256, description="Accepted for compatibility; not recorded.")


class CompletionRequest(_Sampling):
    prompt: str | list[str]


class ChatMessage(_Request):
    role: Literal["system", "user", "assistant"]
    content: str


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1, description="Newer name of max_tokens; wins when both are given.")


class CompletionChoice(_Response):
    index: int
    text: str
    finish_reason: str | None
    logprobs: None = None
    provenance: dict[str, Any] | None = None


class Usage(_Response):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class CompletionResponse(Envelope):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage


class AssistantMessage(_Response):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(_Response):
    index: int
    message: AssistantMessage
    finish_reason: str | None
    provenance: dict[str, Any] | None = None


class ChatCompletionResponse(Envelope):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


# -- images and tables ----------------------------------------------------------------------------------------------


class ImageRequest(_Request):
    model: str = Field(min_length=1, max_length=64)
    prompt: str | None = Field(None, description="For text-conditioned families; gan-image and vae-image refuse one.")
    n: int = Field(1, ge=1)
    response_format: Literal["b64_json"] = "b64_json"
    conditions: dict[str, str | int] = Field(default_factory=dict, description='e.g. {"class": "3"}')
    seed: int | None = _SEED


class ImageData(_Response):
    index: int
    b64_json: str = Field(description="PNG; carries its signed provenance manifest when that policy is enabled.")


class ImageResponse(Envelope):
    created: int
    model: str
    data: list[ImageData]


class TableRequest(_Request):
    model: str = Field(min_length=1, max_length=64)
    n: int = Field(ge=1, description="Rows.")
    conditions: dict[str, str | int | float | bool] = Field(default_factory=dict)
    seed: int | None = _SEED
    format: Literal["records", "csv"] = Field("records", description="csv is the exact text provenance signs.")


class TablePart(_Response):
    index: int
    rows: list[dict[str, Any]] | None = None
    csv: str | None = None
    provenance: dict[str, Any] | None = None


class TableResponse(Envelope):
    created: int
    model: str
    columns: list[str]
    data: list[TablePart]


# -- checks -----------------------------------------------------------------------------------------------------------


class TextDetect(_Request):
    kind: Literal["text"]
    model: str = Field(min_length=1, max_length=64, description="The model whose tokenizer the text was written with.")
    text: str


class ImageDetect(_Request):
    kind: Literal["image"]
    image_b64: str = Field(min_length=1)
    payload: str | None = Field(None, pattern=r"^[0-9a-fA-F]{8}$", description="Expected payload: reports bit accuracy.")


class TableDetect(_Request):
    kind: Literal["table"]
    csv: str = Field(min_length=1)


DetectRequest = Annotated[TextDetect | ImageDetect | TableDetect, Field(discriminator="kind")]


class DetectResponse(Envelope):
    detected: bool
    detection: dict[str, Any] = Field(description="The detector's figures: p_value, z, counts, key_id, ...")


class TextVerify(_Request):
    kind: Literal["text"]
    text: str
    manifest: dict[str, Any]


class TableVerify(_Request):
    kind: Literal["table"]
    csv: str
    manifest: dict[str, Any]


class ImageVerify(_Request):
    kind: Literal["image"]
    image_b64: str = Field(min_length=1, description="A PNG that carries its manifest.")


VerifyRequest = Annotated[TextVerify | TableVerify | ImageVerify, Field(discriminator="kind")]


class VerifyResponse(Envelope):
    ok: bool
    result: dict[str, Any] = Field(description="verdict (verified, tampered, content modified, untrusted key, "
                                               "audit mismatch, no manifest), key_id, key_pinned, problems, manifest")


class AuditVerifyRequest(_Request):
    expect_head: str | None = Field(None, pattern=_HEX64, description="A record hash saved earlier; must still be in the trail.")
    checkpoint_every: int | None = Field(None, ge=1)


class AuditVerifyResponse(Envelope):
    ok: bool
    records: int
    checkpoints: int
    first_bad_seq: int | None
    problem: str | None
    head_hash: str | None
    key_source: str


class HealthResponse(_Response):
    status: Literal["ok"]
    version: str


class ModelCard(_Response):
    id: str
    object: Literal["model"] = "model"
    owned_by: str = "gensdk"
    family: str
    modality: str


class ModelList(_Response):
    object: Literal["list"] = "list"
    data: list[ModelCard]
