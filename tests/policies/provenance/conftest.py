"""Fixtures of the provenance tests: signing keys, small image and table family doubles, and a local C2PA
certificate chain (a test CA and a signing certificate, made here with `cryptography`).

Until the `provenance` / `watermark` entry points are in pyproject.toml (and the project is reinstalled), the
packages are imported from the source tree; tests always pass the plugins explicitly."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any, ClassVar, Sequence

import pytest

REPO = Path(__file__).resolve().parents[3]
for package in ("gensdk_provenance", "gensdk_watermark"):
    if importlib.util.find_spec(package) is None:
        sys.path.insert(0, str(REPO / "policies"))

from gensdk.family import ModelFamily  # noqa: E402
from gensdk.outputs import ImageOutput, Output, TableOutput  # noqa: E402
from gensdk.request import GenerationContext, Request  # noqa: E402


@pytest.fixture
def signing_key(tmp_path: Path) -> Path:
    from gensdk.audit.keys import create_private_key

    path = tmp_path / "provenance.pem"
    create_private_key(path)
    return path


@pytest.fixture
def public_key(signing_key: Path) -> Path:
    from gensdk.audit.keys import load_private_key, public_key_pem, public_raw

    path = signing_key.with_name("provenance.pub")
    path.write_bytes(public_key_pem(public_raw(load_private_key(signing_key))))
    return path


class _Double(ModelFamily):
    version: ClassVar[str] = "1"
    default_batch_size: ClassVar[int] = 4

    def config(self) -> dict[str, Any]:
        return {"license": "CC-BY-4.0", "data_source": "synthetic test data, generated in the test"}

    def save(self, path: Any) -> Path:
        raise NotImplementedError

    @classmethod
    def load(cls, path: Any) -> _Double:
        raise NotImplementedError


class ImageDouble(_Double):
    id: ClassVar[str] = "image-double"
    modality: ClassVar[str] = "image"  # type: ignore[assignment]

    def _generate(self, request: Request, params: Any, context: GenerationContext) -> Sequence[Output]:
        import torch

        gen = context.torch_generator()
        return [ImageOutput(torch.rand(3, 48, 64, generator=gen, device=context.device)) for _ in range(request.n)]


class TableDouble(_Double):
    id: ClassVar[str] = "table-double"
    modality: ClassVar[str] = "table"  # type: ignore[assignment]
    default_batch_size: ClassVar[int] = 1000

    def _generate(self, request: Request, params: Any, context: GenerationContext) -> Sequence[Output]:
        import numpy as np
        import pandas as pd

        rng = np.random.default_rng(context.seed)
        return [TableOutput(pd.DataFrame({"amount": rng.integers(10_000, 900_000, request.n),
                                          "score": rng.normal(50, 10, request.n),
                                          "group": rng.choice(["a", "b"], request.n)}))]


@pytest.fixture
def image_double() -> ImageDouble:
    return ImageDouble()


@pytest.fixture
def table_double() -> TableDouble:
    return TableDouble()


@pytest.fixture(scope="session")
def c2pa_certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A test CA and an Ed25519 signing certificate it issued (email-protection EKU, as C2PA requires)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "gensdk tests")])

    def cert(subject: str, issuer: x509.Name, key: Any, signer: Any, ca: bool) -> x509.Certificate:
        builder = (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(issuer).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
                   .not_valid_after(now + datetime.timedelta(days=30))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
                   .add_extension(x509.KeyUsage(not ca, False, False, False, False, ca, ca, False, False), critical=True))
        if not ca:
            builder = (builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
                       .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                       .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False))
        return builder.sign(signer, None)

    ca_key, leaf_key = ed25519.Ed25519PrivateKey.generate(), ed25519.Ed25519PrivateKey.generate()
    ca = cert("gensdk test CA", name("gensdk test CA"), ca_key, ca_key, ca=True)
    leaf = cert("gensdk test signer", ca.subject, leaf_key, ca_key, ca=False)
    folder = tmp_path_factory.mktemp("c2pa")
    pem = serialization.Encoding.PEM
    paths = {"chain": folder / "chain.pem", "key": folder / "signer.key", "anchors": folder / "ca.pem"}
    paths["chain"].write_bytes(leaf.public_bytes(pem) + ca.public_bytes(pem))
    paths["key"].write_bytes(leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    paths["anchors"].write_bytes(ca.public_bytes(pem))
    return paths
