"""C2PA manifests through `c2pa-python` (optional extra: ``pip install 'gensdk[c2pa]'``).

C2PA signing needs an X.509 certificate chain (the signing certificate first, then its issuers) and the
certificate's private key (Ed25519 or ECDSA P-256); gensdk does not issue certificates. The manifest it writes
into a PNG holds

* a ``c2pa.actions`` assertion: ``c2pa.created`` with the IPTC digital source type
  ``trainedAlgorithmicMedia`` (content made by a trained model) and gensdk as the software agent, and
* an ``org.gensdk.provenance`` assertion: gensdk's own signed manifest (model identity and digests, licence,
  training-data source, policies and verdicts, audit record), so a C2PA reader shows the whole trail.

Reading validates the C2PA signature and the hard binding to the file's bytes; certificates are trusted only
when a trust-anchor PEM is given (otherwise the state is "Valid", not "Trusted").
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from gensdk.errors import ConfigError, DataError, MissingDependencyError

__all__ = ["C2PASigner", "c2pa_available", "read_c2pa"]

ASSERTION_LABEL = "org.gensdk.provenance"


def _c2pa() -> Any:
    try:
        import c2pa
    except ImportError:
        raise MissingDependencyError("c2pa-python", "c2pa", "C2PA manifests") from None
    return c2pa


def c2pa_available() -> bool:
    try:
        _c2pa()
    except MissingDependencyError:
        return False
    return True


def _settings(c2pa: Any, trust_anchors: str | None) -> Any:
    config: dict[str, Any] = {"builder": {"thumbnail": {"enabled": False}}}
    if trust_anchors:
        config["trust"] = {"trust_anchors": trust_anchors}
        config["verify"] = {"verify_trust": True}
    return c2pa.Settings.from_dict(config)


class C2PASigner:
    """Signs PNG bytes with a C2PA manifest; built once per policy from the certificate and key files."""

    def __init__(self, cert_chain: str | Path, key_file: str | Path):
        c2pa = _c2pa()
        try:
            self.chain = Path(cert_chain).read_bytes()
            self.key_pem = Path(key_file).read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read the C2PA certificate chain or key: {exc}") from None
        self.alg = self._algorithm(self.key_pem)
        self._c2pa = c2pa
        self._probe()

    def _probe(self) -> None:
        """Sign a 1-pixel PNG once: a certificate c2pa refuses must fail at start-up, where it is a
        configuration error, not after an audit commit."""
        from PIL import Image

        buf = io.BytesIO()
        Image.new("L", (1, 1)).save(buf, "PNG")
        try:
            self.sign_png(buf.getvalue(), {"probe": True}, "probe.png")
        except ConfigError:
            raise
        except Exception as exc:  # c2pa.C2paError subclasses: an invalid certificate, a key that does not match
            raise ConfigError(f"c2pa cannot sign with this certificate chain and key: {exc}") from None

    @staticmethod
    def _algorithm(key_pem: bytes) -> Any:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec, ed25519

        c2pa = _c2pa()
        try:
            key = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"the C2PA signing key is not an unencrypted PEM private key: {exc}") from None
        if isinstance(key, ed25519.Ed25519PrivateKey):
            return c2pa.C2paSigningAlg.ED25519
        if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1":
            return c2pa.C2paSigningAlg.ES256
        raise ConfigError("the C2PA signing key must be Ed25519 or ECDSA P-256")

    def _signer_info(self) -> Any:
        try:
            return self._c2pa.Signer.from_info(self._c2pa.C2paSignerInfo(self.alg, self.chain, self.key_pem, None))
        except Exception as exc:  # c2pa.C2paError and ctypes errors: a bad chain or key
            raise ConfigError(f"c2pa refused the certificate chain or key: {exc}") from None

    def sign_png(self, png: bytes, manifest: dict[str, Any], title: str) -> bytes:
        from gensdk import __version__
        from gensdk_provenance.manifest import SOURCE_TYPE

        definition = {
            "claim_generator_info": [{"name": "gensdk", "version": __version__}],
            "title": title,
            "assertions": [
                {"label": "c2pa.actions", "data": {"actions": [{
                    "action": "c2pa.created", "digitalSourceType": SOURCE_TYPE,
                    "softwareAgent": {"name": "gensdk", "version": __version__},
                }]}},
                {"label": ASSERTION_LABEL, "data": manifest},
            ],
        }
        c2pa = self._c2pa
        builder = c2pa.Builder(definition, context=c2pa.Context(_settings(c2pa, None)))
        out = io.BytesIO()
        builder.sign(self._signer_info(), "image/png", io.BytesIO(png), out)
        return out.getvalue()


def read_c2pa(path: Path, trust_anchors: str | None = None) -> dict[str, Any] | None:
    """The C2PA state of a file: None when c2pa-python is not installed or the file has no C2PA manifest."""
    try:
        c2pa = _c2pa()
    except MissingDependencyError:
        return None
    try:
        with path.open("rb") as f:
            reader = c2pa.Reader("image/png", f, context=c2pa.Context(_settings(c2pa, trust_anchors)))
            state = reader.get_validation_state()
            manifest = reader.get_active_manifest() or {}
            results = reader.get_validation_results() or {}
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    except Exception as exc:  # c2pa.C2paError: no manifest (ManifestNotFound) or an unreadable one
        if "ManifestNotFound" in type(exc).__name__ or "not found" in str(exc).lower():
            return None
        return {"state": "Invalid", "failures": [f"{type(exc).__name__}: {exc}"]}
    actions = [a for s in manifest.get("assertions", []) if s.get("label", "").startswith("c2pa.actions")
               for a in s.get("data", {}).get("actions", [])]
    failures = [f"{f.get('code')}: {f.get('explanation')}" for f in (results.get("activeManifest") or {}).get("failure", [])]
    return {
        "state": state,
        "source_types": sorted({a.get("digitalSourceType") for a in actions if a.get("digitalSourceType")}),
        "signer": (manifest.get("signature_info") or {}).get("common_name"),
        "has_gensdk_assertion": any(s.get("label") == ASSERTION_LABEL for s in manifest.get("assertions", [])),
        "failures": failures,
    }
