"""The core's essential plugin: built the same way as every other plugin, but it cannot be disabled."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gensdk._markers import hookimpl

if TYPE_CHECKING:
    from pathlib import Path

    from gensdk.outputs import Output
    from gensdk.registry import Registrar


@hookimpl(trylast=True)
def register_audit_sinks(register: Registrar) -> None:
    from gensdk.audit import SQLiteAuditSink
    from gensdk.audit.postgres import PostgresAuditSink  # psycopg itself is imported when a sink is opened

    register(SQLiteAuditSink)
    register(PostgresAuditSink)


@hookimpl(trylast=True)
def write_outputs(outputs: list[Output], path: Path) -> list[Path]:
    from gensdk.outputs import write_plain_outputs

    return write_plain_outputs(outputs, path)
