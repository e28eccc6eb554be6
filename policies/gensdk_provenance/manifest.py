"""Signed provenance manifests: what they hold, how they are signed, where they are stored, how they verify.

A manifest is a JSON object signed with Ed25519 over its canonical JSON (sorted keys, no whitespace) without
the "signature" member:

    {
      "format": "gensdk-provenance/1",
      "created": "2026-11-23T21:00:00Z",
      "claim_generator": "gensdk 0.1.0 / gensdk_provenance 1",
      "source_type": "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia",
      "output": {"modality": "image", "index": 0, "digest": "<as in the audit record>", "file_digest": ...},
      "model": {<the model identity of the audit record: family, weights and config digests, licence,
                training-data source, ...>},
      "model_digest": "<sha256 of the canonical JSON of "model">",
      "request": {"request_id": ..., "request_digest": ..., "seed": ...},
      "policies": [{"id", "version", "config_digest", "status", "verdict"}, ...],
      "verdict": "pass",                       # this output's verdict
      "watermark": {<what the watermark policy recorded: scheme, key id, payload>} or null,
      "audit": {"record_id": ..., "seq": ..., "hash": ...},
      "signature": {"algorithm": "Ed25519", "key_id": ..., "public_key": "<hex>", "value": "<hex>"}
    }

"digest" is the output's digest as the audit record holds it; "file_digest" binds the manifest to the file
that is handed on: for an image the same pixel digest (gensdk's canonical image bytes, ``uint8:HxWxC\\n`` + the
8-bit pixels, which a PNG holds losslessly), for a text the sha256 of its UTF-8 bytes, for a table the sha256 of
the CSV exactly as `write_outputs` writes it. Images carry their manifest in a PNG iTXt chunk (`PNG_KEY`); texts and
tables in a sidecar ``FILE.provenance.json``.

Verification checks, in order: that the manifest parses, that the signature verifies under the embedded key
(any edit of any field breaks it), that the key is the pinned one when a public key is given, that the
content's digest is the signed one, and, given the audit trail, that the signed record exists with that hash
and lists that output digest.
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from gensdk._canonical import canonical_json, digest_of, sha256_hex
from gensdk.audit.keys import key_id_of, public_raw, sign, signature_is_valid
from gensdk.errors import DataError
from gensdk.outputs import Output

__all__ = [
    "FORMAT",
    "PNG_KEY",
    "SIDECAR_SUFFIX",
    "SOURCE_TYPE",
    "Verification",
    "build_manifest",
    "read_manifests",
    "sign_manifest",
    "verify_file",
    "verify_manifest",
    "write_outputs",
]

FORMAT = "gensdk-provenance/1"
SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
PNG_KEY = "gensdk-provenance"
SIDECAR_SUFFIX = ".provenance.json"


def build_manifest(output: Output, record: dict[str, Any]) -> dict[str, Any]:
    """The unsigned manifest of one released output, from the committed audit record."""
    from gensdk import __version__

    body = record["body"]
    digest = output.metadata["digest"]
    index = next((o["index"] for o in body["outputs"] if o["digest"] == digest), None)
    verdict = next((o["verdict"] for o in body["outputs"] if o["digest"] == digest), None)
    return {
        "format": FORMAT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "claim_generator": f"gensdk {__version__} / gensdk_provenance 1",
        "source_type": SOURCE_TYPE,
        "output": {"modality": output.modality, "index": index, "digest": digest, "file_digest": _file_digest(output)},
        "model": body["model"],
        "model_digest": digest_of(body["model"]),
        "request": {"request_id": body.get("request_id"), "request_digest": body.get("request_digest"), "seed": body.get("seed")},
        "policies": [{k: p.get(k) for k in ("id", "version", "config_digest", "status", "verdict")} for p in body["policies"]],
        "verdict": verdict,
        "watermark": output.metadata.get("watermark"),
        "audit": {"record_id": record["record_id"], "seq": record["seq"], "hash": record["hash"]},
    }


def file_bytes(output: Output) -> bytes:
    """The bytes `write_outputs` writes for a text or a table: the UTF-8 text, or the CSV (pandas, no index,
    "\\n" line ends). Images are bound by their pixels instead (a PNG holds them losslessly)."""
    if output.modality == "table":
        return output.frame.to_csv(index=False, lineterminator="\n").encode("utf-8", "surrogatepass")  # type: ignore[attr-defined]
    return output.canonical_bytes()


def _file_digest(output: Output) -> str:
    return output.metadata["digest"] if output.modality == "image" else sha256_hex(file_bytes(output))


def sign_manifest(manifest: dict[str, Any], private_key: Any) -> dict[str, Any]:
    unsigned = {k: v for k, v in manifest.items() if k != "signature"}
    raw = public_raw(private_key)
    return {**unsigned, "signature": {"algorithm": "Ed25519", "key_id": key_id_of(raw), "public_key": raw.hex(),
                                      "value": sign(private_key, canonical_json(unsigned))}}


@dataclass
class Verification:
    """The outcome of checking one manifest against one piece of content."""

    item: str
    verdict: str  # "verified", "no manifest", "tampered", "content modified", "untrusted key", "audit mismatch"
    ok: bool
    key_id: str | None = None
    key_pinned: bool = False  # the signature was checked against a key given by the verifier, not the embedded one
    problems: list[str] = field(default_factory=list)
    manifest: dict[str, Any] | None = None
    c2pa: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def verify_manifest(manifest: Any, content_digest: str | None, *, item: str = "", public_key: bytes | None = None,
                    audit: Any = None) -> Verification:
    """Check a parsed manifest against the digest of the content it came with (see the module docstring)."""
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or not isinstance(manifest.get("signature"), dict):
        return Verification(item, "tampered", False, problems=["not a gensdk provenance manifest (format or signature missing)"])
    signature = manifest["signature"]
    try:
        embedded = bytes.fromhex(str(signature.get("public_key", "")))
    except ValueError:
        embedded = b""
    unsigned = {k: v for k, v in manifest.items() if k != "signature"}
    result = Verification(item, "verified", True, key_id=key_id_of(embedded) if embedded else None, manifest=manifest)
    try:
        message = canonical_json(unsigned)
    except (TypeError, ValueError):
        message = b""
    if len(embedded) != 32 or not signature_is_valid(embedded, message, str(signature.get("value", ""))):
        return _fail(result, "tampered", "the signature does not verify: the manifest was edited or not signed by gensdk")
    if public_key is not None:
        result.key_pinned = True
        if embedded != public_key:
            return _fail(result, "untrusted key", f"signed by key {key_id_of(embedded)}, not by the pinned key {key_id_of(public_key)}")
    signed = manifest.get("output") or {}
    if content_digest is not None and content_digest not in (signed.get("file_digest"), signed.get("digest")):
        return _fail(result, "content modified", "the content's digest differs from the signed one: the file was changed after signing")
    if audit is not None:
        problem = _audit_problem(manifest, audit)
        if problem:
            return _fail(result, "audit mismatch", problem)
    return result


def _fail(result: Verification, verdict: str, problem: str) -> Verification:
    result.verdict, result.ok = verdict, False
    result.problems.append(problem)
    return result


def _audit_problem(manifest: dict[str, Any], sink: Any) -> str | None:
    """Cross-check the signed audit reference against the trail (None when it holds)."""
    ref = manifest.get("audit") or {}
    seq = ref.get("seq")
    if not isinstance(seq, int) or seq < 1:
        return "the manifest names no audit record position"
    found = next(iter(sink.records(start=seq, limit=1)), None)
    if found is None or found["record_id"] != ref.get("record_id"):
        return f"the audit trail has no record {ref.get('record_id')} at position {seq}"
    if found["hash"] != ref.get("hash"):
        return f"audit record {ref.get('record_id')} has hash {found['hash'][:16]}..., the manifest signed {str(ref.get('hash'))[:16]}..."
    digests = {o.get("digest") for o in found["body"].get("outputs", [])}
    if (manifest.get("output") or {}).get("digest") not in digests:
        return f"audit record {ref.get('record_id')} does not list this output's digest"
    return None


# -- files --------------------------------------------------------------------------------------------------------


def write_outputs(outputs: Sequence[Output], path: str | Path) -> list[Path]:
    """Write released outputs one file each, with their manifests: PNGs (manifest in the PNG; the C2PA-signed
    file when the policy made one), texts (.txt) and tables (.csv) with a sidecar manifest.

    `path` is a directory (files NNNNN.png/.txt/.csv), except for one text or table written to a path with a
    suffix (``--out synthetic.csv``), which is written there. Several texts or tables given a path with a
    suffix go beside it as ``<stem>.NNNNN.txt|csv``: one manifest binds one file, so they cannot share one."""
    path = Path(path)
    for i, output in enumerate(outputs):
        manifest = output.metadata.get("provenance")
        if not isinstance(manifest, dict) or "signature" not in manifest:
            raise DataError(f"output {i} has no signed provenance manifest (is the provenance policy enabled?)")
    return [_write_one(output, target) for output, target in zip(outputs, _targets(outputs, path))]


def _targets(outputs: Sequence[Output], path: Path) -> list[Path]:
    suffix = {"image": ".png", "text": ".txt", "table": ".csv"}
    if outputs and outputs[0].modality != "image" and path.suffix and not path.is_dir():
        if len(outputs) == 1:
            return [path]
        return [path.with_name(f"{path.stem}.{i:05d}{suffix[o.modality]}") for i, o in enumerate(outputs)]
    return [path / f"{i:05d}{suffix[o.modality]}" for i, o in enumerate(outputs)]


def _write_one(output: Output, target: Path) -> Path:
    manifest = output.metadata["provenance"]
    target.parent.mkdir(parents=True, exist_ok=True)
    if output.modality == "image":
        target.write_bytes(output.metadata.get("c2pa_png") or png_bytes(output, manifest))
    else:
        target.write_bytes(file_bytes(output))
        sidecar = target.with_name(target.name + SIDECAR_SUFFIX)
        sidecar.write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
    return target


def png_bytes(output: Output, manifest: dict[str, Any]) -> bytes:
    """The image as PNG with the manifest in an iTXt chunk."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_itxt(PNG_KEY, json.dumps(manifest, sort_keys=True, separators=(",", ":")))
    buf = io.BytesIO()
    output.to_pil().save(buf, "PNG", pnginfo=info)  # type: ignore[attr-defined]
    return buf.getvalue()


def read_manifests(path: str | Path) -> tuple[Any, str | None]:
    """(manifest or None, content digest) of a file: a PNG's iTXt chunk, or the sidecar beside any file.
    A sidecar given directly is read for the file it sits beside. An unparsable manifest is returned as the
    raw string, which `verify_manifest` reports as tampered."""
    path = Path(path)
    if path.name.endswith(SIDECAR_SUFFIX):
        path = path.with_name(path.name[: -len(SIDECAR_SUFFIX)])
    if not path.is_file():
        raise DataError(f"{path} does not exist or is not a file")
    if _is_png(path):
        raw, digest = _png_manifest_and_digest(path)
    else:
        digest = sha256_hex(path.read_bytes())
        sidecar = path.with_name(path.name + SIDECAR_SUFFIX)
        raw = sidecar.read_text(encoding="utf-8", errors="replace") if sidecar.is_file() else None
    if raw is None:
        return None, digest
    try:
        return json.loads(raw), digest
    except json.JSONDecodeError:
        return raw, digest


def _is_png(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(8) == b"\x89PNG\r\n\x1a\n"


def _png_manifest_and_digest(path: Path) -> tuple[str | None, str]:
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            raw = img.text.get(PNG_KEY) if hasattr(img, "text") else None
            if img.mode not in ("L", "LA", "RGB", "RGBA"):
                raise DataError(f"{path} is a {img.mode} PNG; gensdk writes 8-bit L, LA, RGB or RGBA images")
            arr = np.asarray(img)
    except (OSError, UnidentifiedImageError, SyntaxError) as exc:
        raise DataError(f"cannot read {path} as a PNG: {exc}") from None
    arr = arr[:, :, None] if arr.ndim == 2 else arr
    header = f"uint8:{arr.shape[0]}x{arr.shape[1]}x{arr.shape[2]}\n".encode()
    return raw, sha256_hex(header + arr.tobytes())


def verify_file(path: str | Path, *, public_key: bytes | None = None, audit: Any = None,
                c2pa_trust_anchors: str | None = None) -> Verification:
    """Verify one file's manifest (and, for a PNG that carries one, its C2PA manifest)."""
    manifest, digest = read_manifests(path)
    if manifest is None:
        result = Verification(str(path), "no manifest", False, problems=["no gensdk provenance manifest in the file or beside it"])
    else:
        result = verify_manifest(manifest, digest, item=str(path), public_key=public_key, audit=audit)
    if _is_png(Path(path)):
        from gensdk_provenance.c2pa import read_c2pa

        result.c2pa = read_c2pa(Path(path), trust_anchors=c2pa_trust_anchors)
        if result.c2pa is not None and result.c2pa.get("state") == "Invalid" and result.ok:
            _fail(result, "tampered", "the C2PA manifest does not validate: " + "; ".join(result.c2pa.get("failures", [])))
    return result
