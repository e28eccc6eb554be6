"""`/v1/images/generations` (OpenAI-compatible, b64 PNG) and gensdk's `/v1/tables/generate`."""

from __future__ import annotations

import base64
import io
import json
import time
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Request

from gensdk.server.errors import ApiError, responses_for, result_fields
from gensdk.server.routing import json_answer, released_or_451, require, service_of
from gensdk.server.schemas import ImageRequest, ImageResponse, TableRequest, TableResponse

if TYPE_CHECKING:
    from fastapi.responses import JSONResponse

    from gensdk.outputs import Output
    from gensdk.server.keys import Principal

__all__ = ["router"]

router = APIRouter(tags=["images and tables"])
_ERRORS = responses_for(400, 401, 403, 404, 408, 413, 422, 429, 451, 500, 503)
# Image families that do not read prompts: a prompt sent to them would be silently ignored, so it is refused.
PROMPTLESS_IMAGE_FAMILIES = frozenset({"gan-image", "vae-image"})


@router.post("/v1/images/generations", response_model=ImageResponse, responses=_ERRORS)
async def images(body: ImageRequest, request: Request, principal: Principal = Depends(require("generate"))) -> Any:
    """Generate `n` images; each is a base64 PNG that carries its provenance manifest when that policy is on."""
    service = service_of(request)
    served = service.model(body.model, "image")
    _check_limit(body.n, service.config.limits.max_outputs, "n")
    if body.prompt is not None and served.model.id in PROMPTLESS_IMAGE_FAMILIES:
        raise ApiError(422, "invalid_request", f"model {body.model!r} ({served.model.id}) takes no prompt; use conditions",
                       param="prompt")
    generation = {"n": body.n, "seed": body.seed, "prompts": None if body.prompt is None else [body.prompt],
                  "conditions": body.conditions, "request_id": service.request_id(principal, request.state.request_id)}

    def work() -> JSONResponse:
        # All of it in the generation thread: PNG, base64 and JSON are per-request CPU work that would
        # otherwise queue on the one event loop every request shares.
        result = served.generate(generation)
        released_or_451(result)
        indexes = [i for i, v in enumerate(result.output_verdicts) if v.releases]
        data = [{"index": i, "b64_json": base64.b64encode(png_of(o)).decode("ascii")} for i, o in zip(indexes, result.outputs)]
        return json_answer({"created": int(time.time()), "model": body.model, "data": data,
                            "request_id": request.state.request_id, **result_fields(result)})

    return await service.run(work)


def png_of(output: Output) -> bytes:
    """The PNG a client gets: C2PA-signed when the provenance policy made one, else with gensdk's manifest
    chunk when there is a signed manifest, else plain."""
    if output.metadata.get("c2pa_png"):
        return output.metadata["c2pa_png"]  # type: ignore[no-any-return]
    manifest = output.metadata.get("provenance")
    if isinstance(manifest, dict) and "signature" in manifest:
        from gensdk_provenance.manifest import png_bytes

        return png_bytes(output, manifest)  # type: ignore[no-any-return]
    buffer = io.BytesIO()
    output.to_pil().save(buffer, "PNG")  # type: ignore[attr-defined]
    return buffer.getvalue()


@router.post("/v1/tables/generate", response_model=TableResponse, responses=_ERRORS)
async def tables(body: TableRequest, request: Request, principal: Principal = Depends(require("generate"))) -> Any:
    """Generate `n` rows, optionally conditioned on column values. One part per micro-batch the engine ran."""
    service = service_of(request)
    served = service.model(body.model, "table")
    _check_limit(body.n, service.config.limits.max_rows, "n")
    generation = {"n": body.n, "seed": body.seed, "conditions": body.conditions,
                  "request_id": service.request_id(principal, request.state.request_id)}

    def work() -> JSONResponse:
        result = served.generate(generation)
        released_or_451(result)
        indexes = [i for i, v in enumerate(result.output_verdicts) if v.releases]
        parts = [_table_part(i, o, body.format) for i, o in zip(indexes, result.outputs)]
        columns = [str(c) for c in result.outputs[0].frame.columns]  # type: ignore[attr-defined]
        return json_answer({"created": int(time.time()), "model": body.model, "columns": columns, "data": parts,
                            "request_id": request.state.request_id, **result_fields(result)})

    return await service.run(work)


def _table_part(index: int, output: Any, fmt: str) -> dict[str, Any]:
    manifest = output.metadata.get("provenance")
    part: dict[str, Any] = {"index": index, "provenance": manifest if isinstance(manifest, dict) and "signature" in manifest else None}
    if fmt == "csv":  # exactly the bytes a provenance manifest's file_digest signs
        part["csv"] = output.frame.to_csv(index=False, lineterminator="\n")
    else:  # to_json, not to_dict: NaN becomes null, numpy scalars become JSON numbers
        part["rows"] = json.loads(output.frame.to_json(orient="records"))
    return part


def _check_limit(value: int, limit: int, what: str) -> None:
    if value > limit:
        raise ApiError(422, "invalid_request", f"{what}: {value} is over this server's limit of {limit}", param=what)
