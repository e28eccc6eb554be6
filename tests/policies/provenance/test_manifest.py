"""Signed manifests through the engine: content, signature, tampering, files, the audit cross-check."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import gensdk_provenance.plugin
from gensdk import Verdict
from gensdk.errors import ConfigError, DataError
from gensdk.testing import KeywordPolicy, MockFamily, make_engine
from gensdk_provenance.manifest import FORMAT, SIDECAR_SUFFIX, SOURCE_TYPE, sign_manifest, verify_file, verify_manifest, write_outputs
from gensdk_provenance.plugin import ProvenancePolicy


def _engine(tmp_path: Path, signing_key: Path, *, policies: tuple = (), name: str = "audit.db") -> Any:
    config = {"policies": [{"id": "provenance", "options": {"key_file": str(signing_key)}}]}
    return make_engine(tmp_path, plugins=[gensdk_provenance.plugin], config=config, policies=list(policies), audit_name=name)


@pytest.fixture
def generated(tmp_path: Path, signing_key: Path) -> Any:
    """Three texts generated with provenance; the middle one blocked by a keyword policy."""
    with _engine(tmp_path, signing_key, policies=(KeywordPolicy({"words": ["secret"]}),)) as engine:
        result = engine.generate(MockFamily().enqueue("first text", "a secret", "third text"), n=3, seed=4)
        yield engine, result


def test_every_released_output_carries_a_signed_manifest(generated: Any) -> None:
    engine, result = generated
    assert result.texts == ["first text", "third text"]
    record = next(iter(engine.audit.records()))
    for output in result.outputs:
        manifest = output.metadata["provenance"]
        assert manifest["format"] == FORMAT and manifest["source_type"] == SOURCE_TYPE
        assert manifest["audit"] == {"record_id": result.audit_record_id, "seq": record["seq"], "hash": result.audit_hash}
        assert manifest["output"]["digest"] == output.digest() == output.metadata["digest"]
        assert manifest["model"] == result.model and manifest["model"]["family"] == "mock"
        assert {p["id"] for p in manifest["policies"]} == {"provenance", "keyword"}
        assert manifest["verdict"] == "pass"
        check = verify_manifest(manifest, output.digest())
        assert check.ok and check.verdict == "verified", check.problems
    indexes = [o.metadata["provenance"]["output"]["index"] for o in result.outputs]
    assert indexes == [0, 2]


TAMPERING = {
    "licence": lambda m: m["model"].__setitem__("license", "proprietary"),
    "training data source": lambda m: m["model"].__setitem__("data_source", "somewhere else"),
    "audit hash": lambda m: m["audit"].__setitem__("hash", "0" * 64),
    "output digest": lambda m: m["output"].__setitem__("digest", "f" * 64),
    "verdict": lambda m: m.__setitem__("verdict", "block"),
    "policy verdict": lambda m: m["policies"][0].__setitem__("verdict", "warn"),
    "policy removed": lambda m: m["policies"].pop(),
    "field added": lambda m: m.__setitem__("note", "added later"),
    "signature": lambda m: m["signature"].__setitem__("value", "00" * 64),
    "public key": lambda m: m["signature"].__setitem__("public_key", "11" * 32),
    "format": lambda m: m.__setitem__("format", "other/1"),
}


@pytest.mark.parametrize("what", sorted(TAMPERING))
def test_any_edit_of_the_manifest_is_detected(generated: Any, what: str) -> None:
    _, result = generated
    manifest = copy.deepcopy(result.outputs[0].metadata["provenance"])
    TAMPERING[what](manifest)
    check = verify_manifest(manifest, result.outputs[0].digest())
    assert not check.ok and check.verdict == "tampered"


def test_a_forged_signature_fails_against_the_pinned_key(generated: Any, tmp_path: Path, public_key: Path) -> None:
    from gensdk.audit.keys import create_private_key, load_public_key_file

    _, result = generated
    forged = copy.deepcopy(result.outputs[0].metadata["provenance"])
    forged["model"]["license"] = "MIT"
    forged = sign_manifest(forged, create_private_key(tmp_path / "attacker.pem"))
    assert verify_manifest(forged, result.outputs[0].digest()).ok  # self-consistent...
    pinned = verify_manifest(forged, result.outputs[0].digest(), public_key=load_public_key_file(public_key))
    assert pinned.verdict == "untrusted key" and not pinned.ok  # ...but not by the key the verifier trusts


def test_changed_content_is_detected(generated: Any) -> None:
    _, result = generated
    check = verify_manifest(result.outputs[0].metadata["provenance"], "ab" * 32)
    assert check.verdict == "content modified"


def test_cross_check_against_the_audit_trail(generated: Any, tmp_path: Path, signing_key: Path) -> None:
    engine, result = generated
    manifest = result.outputs[0].metadata["provenance"]
    assert verify_manifest(manifest, None, audit=engine.audit).ok
    with _engine(tmp_path, signing_key, name="other.db") as other:  # a trail that never saw this output
        other.generate(MockFamily().enqueue("unrelated"), n=1, seed=1)
        check = verify_manifest(manifest, None, audit=other.audit)
    assert check.verdict == "audit mismatch"


def test_files_with_manifests(tmp_path: Path, signing_key: Path, image_double: Any, table_double: Any) -> None:
    from PIL import Image

    with _engine(tmp_path, signing_key) as engine:
        outputs = [*engine.generate(MockFamily(), n=1, seed=1).outputs,
                   *engine.generate(image_double, n=1, seed=2).outputs,
                   *engine.generate(table_double, n=50, seed=3).outputs]
    paths = [p for o in outputs for p in write_outputs([o], tmp_path / o.modality)]
    for path in paths:
        assert verify_file(path).verdict == "verified", path
    text, png, csv = paths
    assert (text.parent / (text.name + SIDECAR_SUFFIX)).is_file()
    assert Image.open(png).text["gensdk-provenance"]
    assert verify_file(text.parent / (text.name + SIDECAR_SUFFIX)).ok  # the sidecar names its file

    text.write_text("edited text")
    assert verify_file(text).verdict == "content modified"
    pixels = np.asarray(Image.open(png)).copy()
    pixels[0, 0, 0] ^= 1
    Image.fromarray(pixels).save(png)  # re-saved without the chunk
    assert verify_file(png).verdict == "no manifest"
    sidecar = csv.parent / (csv.name + SIDECAR_SUFFIX)
    data = json.loads(sidecar.read_text())
    data["model"]["license"] = "public domain"
    sidecar.write_text(json.dumps(data))
    assert verify_file(csv).verdict == "tampered"
    sidecar.write_text("{ not json")
    assert verify_file(csv).verdict == "tampered"
    with pytest.raises(DataError, match="does not exist"):
        verify_file(tmp_path / "missing.png")


def test_png_pixels_changed_under_a_kept_manifest(tmp_path: Path, signing_key: Path, image_double: Any) -> None:
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    with _engine(tmp_path, signing_key) as engine:
        output = engine.generate(image_double, n=1, seed=2).outputs[0]
    path = write_outputs([output], tmp_path)[0]
    image = Image.open(path)
    info = PngInfo()
    info.add_itxt("gensdk-provenance", image.text["gensdk-provenance"])
    pixels = np.asarray(image).copy()
    pixels[5, 5] = 255 - pixels[5, 5]
    Image.fromarray(pixels).save(path, pnginfo=info)
    assert verify_file(path).verdict == "content modified"


def test_write_outputs_refuses_unsigned_outputs(tmp_path: Path) -> None:
    from gensdk.outputs import TextOutput

    with pytest.raises(DataError, match="no signed provenance manifest"):
        write_outputs([TextOutput("x")], tmp_path)


def test_signing_key_configuration(tmp_path: Path, signing_key: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        ProvenancePolicy({"key_file": str(tmp_path / "none.pem")})
    created = ProvenancePolicy({"key_file": str(tmp_path / "new.pem"), "create_key": True})
    assert (tmp_path / "new.pem").stat().st_mode & 0o777 == 0o600 and len(created.key_id) == 16
    signing_key.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        ProvenancePolicy({"key_file": str(signing_key)})
    with pytest.raises(ConfigError, match="both"):
        ProvenancePolicy({"key_file": str(tmp_path / "new.pem"), "c2pa_cert_chain": "chain.pem"})
    with pytest.raises(ConfigError, match="key_file"):
        ProvenancePolicy({})


def test_blocked_requests_get_no_manifest(tmp_path: Path, signing_key: Path) -> None:
    with _engine(tmp_path, signing_key, policies=(KeywordPolicy({"words": ["secret"]}),)) as engine:
        result = engine.generate(MockFamily(), n=1, seed=1, prompts=["tell me the secret"])
    assert result.verdict is Verdict.BLOCK and result.outputs == []
