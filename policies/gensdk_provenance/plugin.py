"""The provenance policy and its hook implementations; named by the `gensdk` entry point `provenance`.

Signing happens in two steps, because the audit record's hash exists only after the engine commits it, which
is after every policy has run:

1. `transform_output` (under the policy runner: a failure blocks the output and is recorded) marks each output
   as awaiting its manifest and, when C2PA is enabled, checks the image can be encoded.
2. `finalize_output` (after the commit) builds the manifest from the committed record (model identity,
   licence, training-data source, every policy's verdict, the output's digest, the record's id, position and
   hash), signs it with Ed25519, and puts it in ``output.metadata["provenance"]``; with C2PA enabled it also
   keeps the C2PA-signed PNG in ``output.metadata["c2pa_png"]``.

Files: `engine.write_outputs(result.outputs, path)` (and `gensdk generate --out`) reach this plugin's
`write_outputs` hook, which writes outputs that carry a manifest with it (PNG chunk, or a sidecar);
`gensdk_provenance.write_outputs(outputs, path)` does the same directly.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from gensdk import hookimpl
from gensdk.errors import AuditError, ConfigError
from gensdk.outputs import Output
from gensdk.policy import Policy, PolicyOptions
from gensdk.request import GenerationContext
from gensdk.verdicts import Finding

if TYPE_CHECKING:
    import click

    from gensdk.registry import Registrar

PENDING = "pending"


class ProvenancePolicy(Policy):
    """Attaches a signed provenance manifest to every released output (policy id ``provenance``)."""

    id = "provenance"
    version = "1"

    class Options(PolicyOptions):
        key_file: str = Field(min_length=1)  # Ed25519 private key (PEM, PKCS8, mode 600)
        create_key: bool = False  # create key_file when it does not exist
        c2pa_cert_chain: str | None = None  # PEM chain, signing certificate first: enables C2PA for images
        c2pa_key_file: str | None = None  # the C2PA certificate's private key (Ed25519 or ECDSA P-256)

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        from gensdk.audit.keys import create_private_key, key_id_of, load_private_key, public_raw

        path = Path(self.options.key_file)
        try:
            if not path.exists() and self.options.create_key:
                self.private_key = create_private_key(path)
            elif not path.exists():
                raise ConfigError(f"provenance signing key {path} does not exist (create it with: gensdk provenance keygen {path})")
            else:
                self.private_key = load_private_key(path)
        except AuditError as exc:  # the audit key helpers speak of audit keys; the problem is configuration here
            raise ConfigError(f"provenance signing key: {exc}") from None
        self.key_id = key_id_of(public_raw(self.private_key))
        self.c2pa = None
        o = self.options
        if (o.c2pa_cert_chain is None) != (o.c2pa_key_file is None):
            raise ConfigError("C2PA needs both 'c2pa_cert_chain' and 'c2pa_key_file'")
        if o.c2pa_cert_chain is not None:
            from gensdk_provenance.c2pa import C2PASigner

            self.c2pa = C2PASigner(o.c2pa_cert_chain, o.c2pa_key_file)  # type: ignore[arg-type]

    @hookimpl
    def transform_output(self, outputs: list[Output], context: GenerationContext) -> list[Finding]:
        findings = []
        for i, output in enumerate(outputs):
            if self.c2pa is not None and output.modality == "image":
                output.to_pil()  # type: ignore[attr-defined]  # an image PIL cannot encode fails here, not after the commit
            output.metadata["provenance"] = {"status": PENDING, "key_id": self.key_id}
            findings.append(Finding("provenance-pending", f"manifest to be signed with key {self.key_id} after the audit commit",
                                    output_index=i, details={"key_id": self.key_id, "c2pa": self.c2pa is not None}))
        return findings

    @hookimpl
    def finalize_output(self, outputs: list[Output], record: dict[str, Any]) -> None:
        from gensdk_provenance.manifest import build_manifest, png_bytes, sign_manifest

        for output in outputs:
            pending = output.metadata.get("provenance")
            if not (isinstance(pending, dict) and pending.get("status") == PENDING and pending.get("key_id") == self.key_id):
                continue
            manifest = sign_manifest(build_manifest(output, record), self.private_key)
            output.metadata["provenance"] = manifest
            if self.c2pa is not None and output.modality == "image":
                title = f"{record['record_id']}-{manifest['output']['index']}.png"
                output.metadata["c2pa_png"] = self.c2pa.sign_png(png_bytes(output, manifest), manifest, title)


@hookimpl
def register_policies(register: Registrar) -> None:
    register(ProvenancePolicy)


@hookimpl
def register_commands(cli: click.Group) -> None:
    from gensdk_provenance.cli import provenance_group, verify

    cli.add_command(verify)
    cli.add_command(provenance_group)


@hookimpl
def write_outputs(outputs: list[Output], path: Path) -> list[Path] | None:
    """Outputs that carry a signed manifest are written with it; others are left to the next writer."""
    if not any("provenance" in o.metadata for o in outputs):
        return None
    from gensdk_provenance.manifest import write_outputs as write_with_manifests

    return write_with_manifests(outputs, path)
