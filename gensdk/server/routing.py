"""Small helpers the routers share: the service, the scope check, the all-blocked answer, the JSON answer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from fastapi import Request, Security
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from gensdk.errors import OutputBlocked
from gensdk.server.errors import ApiError, api_error_for

if TYPE_CHECKING:
    from gensdk.result import Result
    from gensdk.server.keys import Principal
    from gensdk.server.service import Service

__all__ = ["json_answer", "released_or_451", "require", "service_of"]

# Declares the scheme in the OpenAPI document; the key itself is checked by the gate before the body is read.
_bearer = HTTPBearer(auto_error=False, description="An API key from `gensdk serve hash-key`.")


def service_of(request: Request) -> Service:
    return request.app.state.service  # type: ignore[no-any-return]


def require(scope: str) -> Callable[..., Any]:
    """A dependency: the caller's Principal, or 403 when its key lacks `scope`."""

    # async: FastAPI runs a plain `def` dependency in its thread pool, a thread hop on every request.
    async def dependency(request: Request, _: HTTPAuthorizationCredentials | None = Security(_bearer)) -> Principal:
        principal = request.state.principal
        if scope not in principal.scopes:
            raise ApiError(403, "forbidden", f"the API key {principal.name!r} does not have the {scope!r} scope")
        return principal  # type: ignore[no-any-return]

    return dependency


def released_or_451(result: Result) -> None:
    """Nothing released (every output blocked, or the request itself): 451 with the why, never the content."""
    if not result.outputs:
        generated = len(result.output_verdicts)
        message = (f"all {generated} outputs were blocked by policy" if generated
                   else "the request was blocked by policy before anything was generated")
        raise api_error_for(OutputBlocked(f"{message}; audit record {result.audit_record_id}", result))


def json_answer(body: dict[str, Any]) -> JSONResponse:
    """A finished 200 answer, encoded where it is called: in the generation thread, so that the event loop,
    which every request shares, only sends bytes. FastAPI passes a Response through as it is (the endpoint's
    response_model still documents the body; tests check the answers against it)."""
    return JSONResponse(body)
