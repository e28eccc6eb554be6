"""Every error answer has one shape, `ErrorBody`, and one documented status per cause.

| status | error.type | cause |
|---|---|---|
| 400 | invalid_json | the body is not JSON |
| 401 | unauthorized | no API key, or an unknown one |
| 403 | forbidden | the key lacks the endpoint's scope |
| 404 | not_found | no such model (or path) |
| 408 | request_timeout | the body did not arrive within limits.body_timeout_s |
| 413 | request_too_large | the body is over limits.max_body_bytes |
| 422 | invalid_request / not_configured | a field is missing, mistyped, unknown or out of range; or the
  server has no policy for the check asked for |
| 429 | rate_limited | the key's rate is used up (Retry-After says when to come back) |
| 451 | output_blocked | a policy withheld every output; verdict, findings and audit record say why |
| 500 | generation_error / internal_error | the model failed (its audit record is committed), or a bug |
| 503 | overloaded / audit_unavailable | too many requests waiting; or the audit trail cannot be written,
  so nothing is released |
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from gensdk.errors import (
    AuditError,
    DataError,
    GenerationError,
    GensdkError,
    ModelError,
    OutputBlocked,
    RequestError,
    UnknownComponentError,
)

if TYPE_CHECKING:
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

__all__ = ["ApiError", "error_body", "install_handlers", "result_fields"]

log = logging.getLogger("gensdk.server")

_DESCRIPTIONS = {
    400: "Malformed JSON", 401: "Missing or unknown API key", 403: "The key lacks this endpoint's scope",
    404: "Unknown model", 408: "Request body too slow", 413: "Request body too large",
    422: "Invalid request, or a check this server is not configured for", 429: "Rate limit exceeded",
    451: "Every output was blocked by a policy (no content; verdict, findings, audit record id)",
    500: "The model failed (audit record committed) or an internal error",
    503: "Overloaded, or the audit trail is unavailable (nothing released)",
}


class ApiError(Exception):
    """An answer other than success, raised anywhere in a request and turned into an ErrorBody."""

    def __init__(self, status: int, type_: str, message: str, *, param: str | None = None,
                 headers: dict[str, str] | None = None, extra: dict[str, Any] | None = None):
        super().__init__(message)
        self.status, self.type, self.message, self.param = status, type_, message, param
        self.headers = headers or {}
        self.extra = extra or {}


def responses_for(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI `responses` entries of an endpoint's error statuses, all with the ErrorBody schema."""
    from gensdk.server.schemas import ErrorBody

    return {status: {"model": ErrorBody, "description": _DESCRIPTIONS[status]} for status in statuses}


def error_body(type_: str, message: str, request_id: str | None, param: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"error": {"type": type_, "message": message, "param": param}, "request_id": request_id, **extra}


def result_fields(result: Any) -> dict[str, Any]:
    """verdict, findings, blocked, policies and the audit record id of a gensdk Result."""
    return {
        "verdict": result.verdict.value,
        "findings": [f.to_record() for f in result.findings],
        "audit_record_id": result.audit_record_id,
        "blocked": result.blocked,
        "policies": [{"id": o.policy_id, "status": o.status, "verdict": o.verdict.value, "error": o.error}
                     for o in result.outcomes],
    }


def api_error_for(exc: GensdkError) -> ApiError:
    """The status and type a gensdk error means over HTTP."""
    if isinstance(exc, OutputBlocked):
        return ApiError(451, "output_blocked", str(exc), extra=result_fields(exc.result))
    if isinstance(exc, UnknownComponentError):
        return ApiError(422, "not_configured", str(exc))
    if isinstance(exc, (RequestError, DataError)):
        return ApiError(422, "invalid_request", str(exc))
    if isinstance(exc, AuditError):
        return ApiError(503, "audit_unavailable", f"the audit trail cannot be written, nothing was released: {exc}")
    if isinstance(exc, (GenerationError, ModelError)):
        return ApiError(500, "generation_error", str(exc))
    return ApiError(500, "internal_error", f"{type(exc).__name__}: {exc}")


def install_handlers(app: FastAPI) -> None:
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException

    app.add_exception_handler(ApiError, _api_error)  # type: ignore[arg-type]
    app.add_exception_handler(GensdkError, _gensdk_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _internal_error)


def _respond(request: Request, error: ApiError) -> JSONResponse:
    from fastapi.responses import JSONResponse

    rid = getattr(request.state, "request_id", None)
    body = error_body(error.type, error.message, rid, error.param, **error.extra)
    return JSONResponse(body, status_code=error.status, headers=error.headers)


async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    return _respond(request, exc)


async def _gensdk_error(request: Request, exc: GensdkError) -> JSONResponse:
    return _respond(request, api_error_for(exc))


async def _validation_error(request: Request, exc: Any) -> JSONResponse:
    """400 for a body that is not JSON; 422 naming each bad field otherwise (never echoing the input)."""
    problems = exc.errors()
    if any(p.get("type") == "json_invalid" for p in problems):
        return _respond(request, ApiError(400, "invalid_json", "the request body is not valid JSON"))
    parts = [f"{'.'.join(str(x) for x in p.get('loc', ())[1:]) or 'body'}: {p.get('msg')}" for p in problems]
    first = problems[0].get("loc", ()) if problems else ()
    param = ".".join(str(x) for x in first[1:]) or None
    return _respond(request, ApiError(422, "invalid_request", "; ".join(parts), param=param))


async def _http_error(request: Request, exc: Any) -> JSONResponse:
    kinds = {404: "not_found", 405: "method_not_allowed"}
    return _respond(request, ApiError(exc.status_code, kinds.get(exc.status_code, "http_error"), str(exc.detail),
                                      headers=getattr(exc, "headers", None)))


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    # The type only: an exception's message may quote a prompt, and prompts are never logged.
    rid = getattr(request.state, "request_id", None)
    log.error("internal error while serving request %s: %s", rid, type(exc).__name__)
    return _respond(request, ApiError(500, "internal_error", f"internal error ({type(exc).__name__}); request {rid}"))
