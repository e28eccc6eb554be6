"""The checks: `/v1/detect` (watermarks), `/v1/verify` (provenance), `/v1/audit/verify`, `/v1/models`,
`/healthz`.

Detection and provenance checks use the server's own policies, so they test exactly the keys and parameters
that generated: `watermark-text|image|table` for detection, `provenance` for the pinned signing key. Each
check is written to the audit trail (`kind` "watermark-detection" or "provenance-check": digests and
figures, who asked; never the content) and the answer carries that record's id. In these answers `verdict`
is the check's own word: "watermarked" / "not watermarked" / "inconclusive", "verified" / "tampered" / ...,
"ok" / "failed".
"""

from __future__ import annotations

import base64
import binascii
import io
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Body, Depends, Request

from gensdk._canonical import sha256_hex
from gensdk.errors import DataError
from gensdk.server.errors import ApiError, responses_for
from gensdk.server.routing import require, service_of
from gensdk.server.schemas import (
    AuditVerifyRequest,
    AuditVerifyResponse,
    DetectRequest,
    DetectResponse,
    HealthResponse,
    ModelList,
    VerifyRequest,
    VerifyResponse,
)
from gensdk.server.text import token_ids

if TYPE_CHECKING:
    from gensdk.engine import Engine
    from gensdk.server.keys import Principal
    from gensdk.server.service import Service

__all__ = ["router"]

router = APIRouter(tags=["checks"])
_ERRORS = responses_for(400, 401, 403, 404, 408, 413, 422, 429, 503)
_SUFFIX = {"image": "png", "text": "txt", "table": "csv"}


@router.get("/healthz", response_model=HealthResponse, tags=["service"])
async def healthz() -> Any:
    """Liveness: no key needed, reveals nothing but the version."""
    from gensdk import __version__

    return {"status": "ok", "version": __version__}


@router.get("/v1/models", response_model=ModelList, responses=responses_for(401, 429), tags=["service"])
async def models(request: Request) -> Any:
    """The models this server serves (any valid key)."""
    served = service_of(request).models.values()
    return {"data": [{"id": s.name, "family": s.model.id, "modality": s.model.modality} for s in served]}


@router.post("/v1/detect", response_model=DetectResponse, responses=_ERRORS)
async def detect(request: Request, body: DetectRequest = Body(...), principal: Principal = Depends(require("detect"))) -> Any:
    """Look for this server's watermark in a text, an image (base64) or a table (CSV); p-values included."""
    service = service_of(request)
    tokenizer = _tokenizer(service, body.model) if body.kind == "text" else None

    def work() -> dict[str, Any]:
        detection, digest = _detect(service.engine, body, tokenizer)
        record = service.engine.record_event("watermark-detection", {
            "request_id": service.request_id(principal, request.state.request_id), "modality": body.kind,
            "content_digest": digest, "detection": detection})
        return {"detected": bool(detection["detected"]), "detection": detection, "verdict": detection["verdict"],
                "findings": [], "audit_record_id": record["record_id"]}

    return {**await service.run(work), "request_id": request.state.request_id}


def _detect(engine: Engine, body: Any, tokenizer: Any) -> tuple[dict[str, Any], str]:
    if body.kind == "text":
        policy = engine.policy("watermark-text")
        ids = token_ids(tokenizer, body.text, special=False)
        found = policy.scheme.detect(ids, policy.options.alpha).to_dict()
        return {**found, "key_id": policy.key.key_id}, sha256_hex(body.text.encode("utf-8", "surrogatepass"))
    if body.kind == "image":
        from gensdk_watermark.image import decode_image_file

        policy = engine.policy("watermark-image")
        raw = _b64(body.image_b64)
        expected = bytes.fromhex(body.payload) if body.payload else None
        found = policy.mark.detect(decode_image_file(io.BytesIO(raw)), expected).to_dict()
        verdict = "watermarked" if found["detected"] else "not watermarked"
        return {**found, "verdict": verdict, "key_id": policy.key.key_id}, sha256_hex(raw)
    policy = engine.policy("watermark-table")
    found = policy.mark.detect(_csv(body.csv)).to_dict()
    return {**found, "key_id": policy.key.key_id}, sha256_hex(body.csv.encode("utf-8"))


def _tokenizer(service: Service, model: str) -> Any:
    tokenizer = getattr(service.model(model, "text").model, "tokenizer", None)
    if tokenizer is None:
        raise ApiError(422, "invalid_request", f"model {model!r} has no tokenizer to detect text with", param="model")
    return tokenizer


@router.post("/v1/verify", response_model=VerifyResponse, responses=_ERRORS)
async def verify(request: Request, body: VerifyRequest = Body(...), principal: Principal = Depends(require("detect"))) -> Any:
    """Verify a provenance manifest against its content and this server's audit trail; the signer is pinned
    to the server's provenance key when that policy is enabled."""
    service = service_of(request)

    def work() -> dict[str, Any]:
        result, digest = _verify(service.engine, body)
        record = service.engine.record_event("provenance-check", {
            "request_id": service.request_id(principal, request.state.request_id), "modality": body.kind,
            "content_digest": digest, "verdict": result["verdict"], "key_id": result["key_id"],
            "key_pinned": result["key_pinned"], "problems": result["problems"]})
        findings = [{"code": "provenance-problem", "message": p, "violation": True, "output_index": None,
                     "policy_id": "provenance"} for p in result["problems"]]
        return {"ok": result["ok"], "result": result, "verdict": result["verdict"], "findings": findings,
                "audit_record_id": record["record_id"]}

    return {**await service.run(work), "request_id": request.state.request_id}


def _verify(engine: Engine, body: Any) -> tuple[dict[str, Any], str]:
    """Through the provenance plugin's own file verifier: the content written to a private temporary file,
    beside its manifest (texts and tables) or carrying it (PNG)."""
    import json

    from gensdk_provenance.manifest import SIDECAR_SUFFIX, verify_file

    content = _b64(body.image_b64) if body.kind == "image" else (body.text if body.kind == "text" else body.csv).encode("utf-8", "surrogatepass")
    with tempfile.TemporaryDirectory(prefix="gensdk-verify-") as folder:
        path = Path(folder) / f"content.{_SUFFIX[body.kind]}"
        path.write_bytes(content)
        if body.kind != "image":
            path.with_name(path.name + SIDECAR_SUFFIX).write_text(json.dumps(body.manifest), encoding="utf-8")
        result = verify_file(path, public_key=_pinned_key(engine), audit=engine.audit)
    result.item = body.kind
    return result.to_dict(), sha256_hex(content)


def _pinned_key(engine: Engine) -> bytes | None:
    from gensdk.audit.keys import public_raw

    signer = next((p for p in engine.policies if p.id == "provenance"), None)
    return public_raw(signer.private_key) if signer is not None else None  # type: ignore[attr-defined]


@router.post("/v1/audit/verify", response_model=AuditVerifyResponse, responses=responses_for(400, 401, 403, 408, 413, 422, 429, 503))
async def audit_verify(request: Request, body: AuditVerifyRequest | None = Body(None),
                       principal: Principal = Depends(require("audit-read"))) -> Any:
    """Walk the whole audit trail: hash chain, signed checkpoints, optionally an expected head. A read: it
    writes no record (audit_record_id is null)."""
    service = service_of(request)
    body = body or AuditVerifyRequest()
    report = await service.run(lambda: service.engine.audit.verify(expect_head=body.expect_head,
                                                                   checkpoint_every=body.checkpoint_every))
    findings = [] if report.ok else [{"code": "audit-chain-broken", "message": report.problem or "", "violation": True,
                                      "output_index": None, "policy_id": "audit"}]
    return {**report.to_dict(), "verdict": "ok" if report.ok else "failed", "findings": findings,
            "audit_record_id": None, "request_id": request.state.request_id}


def _b64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(422, "invalid_request", "image_b64 is not valid base64", param="image_b64") from None


def _csv(text: str) -> Any:
    import pandas as pd

    try:
        return pd.read_csv(io.StringIO(text))
    except (ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"csv cannot be read as a table: {exc}") from None
