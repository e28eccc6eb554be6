"""C2PA manifests (the optional `c2pa` extra), signed with a certificate chain made in the test."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import gensdk_provenance.plugin
from gensdk.errors import ConfigError
from gensdk.testing import make_engine
from gensdk_provenance.c2pa import read_c2pa
from gensdk_provenance.manifest import SOURCE_TYPE, verify_file, write_outputs
from gensdk_provenance.plugin import ProvenancePolicy

pytest.importorskip("c2pa", reason="c2pa-python (the 'c2pa' extra) is not installed")


def _engine(tmp_path: Path, signing_key: Path, certs: dict[str, Path]) -> Any:
    options = {"key_file": str(signing_key), "c2pa_cert_chain": str(certs["chain"]), "c2pa_key_file": str(certs["key"])}
    return make_engine(tmp_path, plugins=[gensdk_provenance.plugin], config={"policies": [{"id": "provenance", "options": options}]})


def test_generated_png_carries_a_trusted_c2pa_manifest(tmp_path: Path, signing_key: Path, c2pa_certs: dict[str, Path], image_double: Any) -> None:
    with _engine(tmp_path, signing_key, c2pa_certs) as engine:
        result = engine.generate(image_double, n=2, seed=1)
    paths = write_outputs(result.outputs, tmp_path / "out")
    anchors = c2pa_certs["anchors"].read_text()
    for path in paths:
        state = read_c2pa(path, trust_anchors=anchors)
        assert state is not None and state["state"] == "Trusted", state
        assert state["source_types"] == [SOURCE_TYPE] and state["has_gensdk_assertion"]
        assert state["signer"] == "gensdk test signer"
        check = verify_file(path, c2pa_trust_anchors=anchors)
        assert check.ok and check.c2pa["state"] == "Trusted"  # and gensdk's own manifest still verifies
    assert read_c2pa(paths[0])["state"] == "Valid"  # signature fine, but no trust anchor given


def test_tampered_c2pa_file_is_detected(tmp_path: Path, signing_key: Path, c2pa_certs: dict[str, Path], image_double: Any) -> None:
    with _engine(tmp_path, signing_key, c2pa_certs) as engine:
        output = engine.generate(image_double, n=1, seed=1).outputs[0]
    path = write_outputs([output], tmp_path)[0]
    path.write_bytes(_edit_itxt(path.read_bytes(), b'"license":"CC-BY-4.0"', b'"license":"CC-BY-9.0"'))
    check = verify_file(path, c2pa_trust_anchors=c2pa_certs["anchors"].read_text())
    assert not check.ok and check.verdict == "tampered"
    assert check.c2pa is not None and check.c2pa["state"] == "Invalid"  # C2PA's hard binding covers the chunk too


def _edit_itxt(png: bytes, old: bytes, new: bytes) -> bytes:
    """Replace bytes inside the iTXt chunk and fix its CRC, so the file stays a readable PNG."""
    import struct
    import zlib

    out, pos = bytearray(png[:8]), 8
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos:pos + 4])
        kind, data = png[pos + 4:pos + 8], png[pos + 8:pos + 8 + length]
        if kind == b"iTXt" and old in data:
            data = data.replace(old, new)
        out += struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        pos += 12 + length
    assert bytes(out) != png
    return bytes(out)


def test_bad_c2pa_credentials_fail_at_start_up(tmp_path: Path, signing_key: Path, c2pa_certs: dict[str, Path]) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key")
    with pytest.raises(ConfigError, match="PEM private key"):
        ProvenancePolicy({"key_file": str(signing_key), "c2pa_cert_chain": str(c2pa_certs["chain"]), "c2pa_key_file": str(garbage)})
    with pytest.raises(ConfigError, match="cannot read"):
        ProvenancePolicy({"key_file": str(signing_key), "c2pa_cert_chain": str(tmp_path / "none"), "c2pa_key_file": str(c2pa_certs["key"])})


def test_a_certificate_c2pa_refuses_fails_at_start_up(tmp_path: Path, signing_key: Path, c2pa_certs: dict[str, Path]) -> None:
    """A self-signed end-entity certificate is refused by C2PA: the policy must not start, rather than fail
    after an audit commit."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519
    from cryptography.x509.oid import NameOID

    key = ed25519.Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "self-signed")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1)).sign(key, None))
    (tmp_path / "self.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "self.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    with pytest.raises(ConfigError, match="c2pa cannot sign"):
        ProvenancePolicy({"key_file": str(signing_key), "c2pa_cert_chain": str(tmp_path / "self.pem"),
                          "c2pa_key_file": str(tmp_path / "self.key")})
