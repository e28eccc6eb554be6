"""`gensdk verify FILE...` and `gensdk provenance keygen PATH`.

`verify` prints one verdict per file (or JSON with `--json`) and exits 0 when every file verifies, 1 when any
does not (no manifest, tampered manifest, changed content, a key other than the pinned one, a mismatch with the
audit trail), 2 on bad input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from gensdk.cli.output import console, print_json


@click.command("verify")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--public-key", type=click.Path(path_type=Path), default=None,
              help="Pin the signer: PEM public key (from `gensdk provenance keygen`); otherwise the embedded key is only reported.")
@click.option("--audit", "audit", default=None, help="Audit trail to cross-check the signed record against (path or URL).")
@click.option("--c2pa-trust", type=click.Path(path_type=Path), default=None, help="PEM trust anchors for C2PA certificates.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def verify(files: tuple[Path, ...], public_key: Path | None, audit: str | None, c2pa_trust: Path | None, as_json: bool) -> int:
    """Verify the provenance manifests of generated files (PNG, or any file with a .provenance.json sidecar)."""
    from gensdk.audit.keys import load_public_key_file
    from gensdk_provenance.manifest import verify_file

    pinned = load_public_key_file(public_key) if public_key else None
    anchors = c2pa_trust.read_text(encoding="utf-8") if c2pa_trust else None
    sink = _open_audit(audit) if audit else None
    try:
        results = [verify_file(path, public_key=pinned, audit=sink, c2pa_trust_anchors=anchors) for path in files]
    finally:
        if sink is not None:
            sink.close()
    if as_json:
        print_json([r.to_dict() for r in results])
    else:
        out = console()
        for r in results:
            out.print(_line(r), highlight=False, soft_wrap=True)
    return 0 if all(r.ok for r in results) else 1


def _line(r: Any) -> str:
    colour = "green" if r.ok else "red"
    text = f"{r.item}: [{colour}]{r.verdict.upper()}[/{colour}]"
    m = r.manifest if isinstance(r.manifest, dict) else None
    if r.ok and m:
        model = m.get("model") or {}
        audit = m.get("audit") or {}
        text += (f"  {m['output']['modality']} from {model.get('family')} model (weights {str(model.get('weights_digest'))[:12]}, "
                 f"licence {model.get('license')!r}, data {model.get('data_source')!r}); verdict {m.get('verdict')}; "
                 f"audit record {audit.get('record_id')} #{audit.get('seq')}; signed by {r.key_id}"
                 + ("" if r.key_pinned else " (key not pinned: pass --public-key)"))
    for problem in r.problems:
        text += f"\n    {problem}"
    if r.c2pa:
        text += f"\n    C2PA: {r.c2pa['state']}, source type {', '.join(r.c2pa.get('source_types') or ['-'])}"
        for failure in r.c2pa.get("failures", []):
            text += f"\n      {failure}"
    return text


def _open_audit(target: str) -> Any:
    from gensdk.audit import open_audit_sink
    from gensdk.plugins import get_plugin_host

    sinks = {reg.id: reg.component for reg in get_plugin_host().sinks}
    return open_audit_sink(target, sinks=sinks, create=False)


@click.group("provenance", help="Provenance signing keys.")
def provenance_group() -> None:
    pass


@provenance_group.command("keygen")
@click.argument("path", type=click.Path(path_type=Path))
def keygen(path: Path) -> None:
    """Create an Ed25519 signing key at PATH (mode 600) and its public key at PATH.pub."""
    from gensdk.audit.keys import create_private_key, key_id_of, public_key_pem, public_raw
    from gensdk.errors import ConfigError

    if path.exists():
        raise ConfigError(f"{path} already exists; a signing key is never overwritten")
    raw = public_raw(create_private_key(path))
    pub = path.with_name(path.name + ".pub")
    pub.write_bytes(public_key_pem(raw))
    console().print(f"[green]written[/green] {path} and {pub} (key id {key_id_of(raw)})", highlight=False)
