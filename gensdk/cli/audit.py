"""`gensdk audit ...`: verify, show and export the audit trail, and export its public key.

Errors are raised as gensdk errors (they carry `.exit_code`); the root command turns them into one line and
that exit code. A trail that does not verify raises `AuditVerificationError` (exit 4).
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterable

import click

from gensdk.errors import AuditVerificationError

__all__ = ["audit_group"]

_HASH = re.compile(r"[0-9a-fA-F]{64}")
_VERDICT_STYLE = {"pass": "green", "warn": "yellow", "bypassed": "yellow", "block": "red"}

audit_option = click.option(
    "--audit",
    "audit_target",
    metavar="PATH",
    default=None,
    help="Audit trail: a path or sqlite:/// URL. Default: $GENSDK_AUDIT, else the gensdk user data directory.",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a readable summary.")


@click.group("audit")
def audit_group() -> None:
    """Inspect and verify the tamper-evident audit trail."""


@audit_group.command("verify")
@audit_option
@click.option(
    "--public-key",
    type=click.Path(exists=True, dir_okay=False),
    help="PEM public key from `gensdk audit key export`; checkpoints must be signed by it.",
)
@click.option(
    "--expect-head",
    metavar="HASH",
    callback=lambda ctx, param, value: _checked_hash(value),
    help="A record hash saved earlier; it must still be in the trail (detects records deleted from the tail).",
)
@click.option(
    "--checkpoint-every",
    type=click.IntRange(min=1),
    metavar="N",
    help="The checkpoint interval you configured, instead of trusting the one stored in the trail.",
)
@json_option
def verify_command(
    audit_target: str | None,
    public_key: str | None,
    expect_head: str | None,
    checkpoint_every: int | None,
    as_json: bool,
) -> None:
    """Check the hash chain and signed checkpoints.

    Exits 0 when the whole trail verifies; otherwise raises AuditVerificationError (exit 4) naming the first
    bad record.
    """
    with _open_existing(audit_target) as sink:
        report = sink.verify(public_key, expect_head=expect_head, checkpoint_every=checkpoint_every)
        location = str(getattr(sink, "path", audit_target))
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        _print_report(report, location)
    if not report.ok:
        raise AuditVerificationError(f"the audit trail {location} does not verify: {report.problem}")


@audit_group.command("show")
@audit_option
@click.option("--last", type=click.IntRange(min=1), default=20, show_default=True, help="How many records.")
@json_option
def show_command(audit_target: str | None, last: int, as_json: bool) -> None:
    """List the most recent records.

    One row per record: seq, time, kind, verdict, shortened record id, model family.
    """
    with _open_existing(audit_target) as sink:
        head = sink.head()
        start = max(1, head.seq - last + 1) if head else 1
        records = list(sink.records(start=start, limit=last))
        location = str(getattr(sink, "path", audit_target))
    if as_json:
        click.echo(json.dumps(records, indent=2, ensure_ascii=False))
    else:
        _print_table(records, location, head.seq if head else 0)


@audit_group.command("export")
@click.option("--jsonl", "jsonl_path", required=True, type=click.Path(dir_okay=False, allow_dash=True),
              help="Output file, one record per line ('-' for stdout).")
@audit_option
def export_command(jsonl_path: str, audit_target: str | None) -> None:
    """Export every record as JSON Lines.

    One line per record with seq, record_id, prev_hash, hash and body.
    """
    with _open_existing(audit_target) as sink:
        # atomic: a half-written export must never pass for a complete one
        with click.open_file(jsonl_path, "w", encoding="utf-8", atomic=jsonl_path != "-") as out:
            count = _write_jsonl(sink.records(), out)
    click.echo(f"exported {count} audit records to {jsonl_path}", err=True)


@audit_group.group("key")
def key_group() -> None:
    """The Ed25519 key that signs checkpoints."""


@key_group.command("export")
@click.option("--out", required=True, type=click.Path(dir_okay=False, allow_dash=True),
              help="Where to write the PEM public key ('-' for stdout).")
@audit_option
def key_export_command(out: str, audit_target: str | None) -> None:
    """Write the checkpoint public key (PEM).

    Keep it apart from the trail and pass it to `verify --public-key`.

    Creates the trail and its signing key if there are none yet, so the key can be pinned before first use.
    """
    from gensdk.audit import keys, open_audit_sink

    with open_audit_sink(audit_target) as sink:
        raw, source = sink.public_key()
    with click.open_file(out, "wb") as f:
        f.write(keys.public_key_pem(raw))
    click.echo(f"wrote public key {keys.key_id_of(raw)} to {out}", err=True)
    if source == "meta":
        click.echo(
            "warning: the private key file is missing, so this key was read from the audit database itself; "
            "compare it with a copy you trust before relying on it",
            err=True,
        )


def _open_existing(target: str | None) -> Any:
    from gensdk.audit import open_audit_sink

    return open_audit_sink(target, create=False)


def _checked_hash(value: str | None) -> str | None:
    if value is not None and not _HASH.fullmatch(value):
        raise click.BadParameter("expected a 64-digit hex sha256 record hash")
    return value.lower() if value else None


def _write_jsonl(records: Iterable[dict], out: Any) -> int:
    count = 0
    for record in records:
        out.write(json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n")
        count += 1
    return count


def _print_report(report: Any, location: str) -> None:
    from rich.console import Console
    from rich.markup import escape

    location = escape(location)
    console = Console(highlight=False, soft_wrap=True)
    plural = "" if report.checkpoints == 1 else "s"
    counts = f"{report.records} records, {report.checkpoints} signed checkpoint{plural}"
    if report.ok:
        console.print(f"[green]OK[/] the audit trail {location} verifies: {counts}")
        console.print(f"head hash: {report.head_hash or '(empty trail)'}")
        _print_key_note(console, report)
    else:
        console.print(f"[red]FAILED[/] the audit trail {location} does not verify ({counts})")
        if report.first_bad_seq is not None:
            console.print(f"first bad record: seq {report.first_bad_seq}")
        console.print(f"problem: {escape(report.problem or '')}")


def _print_key_note(console: Any, report: Any) -> None:
    if report.key_source == "meta":
        console.print(
            "[yellow]note[/] signatures were checked against the key stored in the database itself; "
            "pass --public-key with a key exported earlier to rule out a re-signed trail"
        )
    elif report.key_source != "none":
        console.print(f"signatures checked with the key from the {report.key_source.replace('-', ' ')}")


def _print_table(records: list[dict], location: str, total: int) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"last {len(records)} of {total} audit records in {escape(location)}")
    for column in ("seq", "time", "kind", "verdict", "record_id", "model"):
        table.add_column(column, justify="right" if column == "seq" else "left", no_wrap=column != "time")
    for record in records:
        table.add_row(*_row_cells(record))
    Console(highlight=False).print(table)


def _row_cells(record: dict) -> list[Any]:
    """Cells for one record; engine bodies are tolerated with any key missing. Text cells: no markup parsing."""
    from rich.text import Text

    body = record.get("body") if isinstance(record.get("body"), dict) else {}
    model = body.get("model") if isinstance(body.get("model"), dict) else {}
    verdict = str(body.get("verdict", ""))
    return [
        Text(str(record["seq"])),
        Text(str(body.get("time", ""))),
        Text(str(body.get("kind", ""))),
        Text(verdict, style=_VERDICT_STYLE.get(verdict, "")),
        Text(str(record.get("record_id", ""))[:12]),
        Text(str(model.get("family", ""))),
    ]
