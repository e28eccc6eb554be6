"""`gensdk generate DIR`: generate through the engine's policies, write what was released."""

from __future__ import annotations

from pathlib import Path

import click

from gensdk.cli.output import console, parse_assignments, print_json

AUDIT_HELP = "Audit trail (path or URL). Default: $GENSDK_AUDIT, else the user data directory."


@click.command()
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.option("--n", "n", default=1, show_default=True, help="Outputs to generate (rows for tables).")
@click.option("--seed", type=int, default=None, help="Seed; the same seed gives the same outputs.")
@click.option("--prompt", "prompts", multiple=True, help="Prompt (repeat for several).")
@click.option("--condition", "conditions", multiple=True, metavar="COLUMN=VALUE", help="Condition on a column (tables).")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="Family-specific option (JSON value).")
@click.option("--out", "out", type=click.Path(path_type=Path), default=None, help="Where to write released outputs.")
@click.option("--config", "config", type=click.Path(path_type=Path), default=None, envvar="GENSDK_CONFIG", help="gensdk.toml with the policies to enforce.")
@click.option("--audit", "audit", default=None, envvar="GENSDK_AUDIT", help=AUDIT_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the result summary as JSON.")
@click.option("--chat", "chat", type=click.Path(path_type=Path), default=None, help="JSONL of conversations: each line a list of {role, content} messages, or {\"messages\": [...]}.")
@click.option("--stream", "stream", is_flag=True, help="Print text as the policies release it (one prompt or conversation).")
@click.option("--allow-pickle", is_flag=True, help="Load pickle (*.bin) weights; unsafe, recorded in the audit trail.")
@click.option("--trust-remote-code", is_flag=True, help="Run code shipped with the model; unsafe, recorded in the audit trail.")
def generate(model_dir: Path, n: int, seed: int | None, prompts: tuple[str, ...], conditions: tuple[str, ...],
             params: tuple[str, ...], out: Path | None, config: Path | None, audit: str | None, as_json: bool,
             chat: Path | None, stream: bool, allow_pickle: bool, trust_remote_code: bool) -> None:
    """Generate from a model directory through every enabled policy."""
    from gensdk.engine import Engine

    request = {"n": n, "seed": seed, "prompts": list(prompts) or None, "messages": _read_chat(chat) if chat else None,
               "conditions": parse_assignments(conditions, "--condition"), "params": parse_assignments(params, "--param")}
    unsafe = {k: True for k, on in (("allow_pickle", allow_pickle), ("trust_remote_code", trust_remote_code)) if on}
    with Engine(config, audit=audit) as engine:
        model = engine.load_model(model_dir, **unsafe)
        result = _stream(engine, model, request) if stream else engine.generate(model, request)
        written = engine.write_outputs(result.outputs, out) if out and result.outputs else []
    if not (stream or out or as_json):
        for output in result.outputs:
            if output.modality == "text":
                click.echo(output.text)
    summary = _summary(result, written)
    if as_json:
        print_json(summary)
    else:
        _print_summary(summary)
    result.raise_for_verdict()


def _stream(engine, model, request: dict):
    """Echo chunks as they are released; the Result arrives once the stream is exhausted."""
    chunks = engine.stream(model, request)
    for chunk in chunks:
        click.echo(chunk, nl=False)
    click.echo()
    return chunks.result


def _read_chat(path: Path) -> list[list[dict]]:
    """Conversations from JSONL; a line that is not one is a DataError naming the line."""
    import json

    from gensdk.errors import DataError

    try:
        lines = path.read_bytes().decode("utf-8").splitlines()
    except OSError as exc:
        raise DataError(f"cannot read chat file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"chat file {path} is not UTF-8: undecodable byte at offset {exc.start}") from None
    conversations = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{number} is not JSON: {exc.msg}") from None
        messages = item.get("messages") if isinstance(item, dict) else item
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            raise DataError(f"{path}:{number} is not a list of messages or an object with \"messages\"")
        conversations.append(messages)
    if not conversations:
        raise DataError(f"chat file {path} holds no conversation")
    return conversations


def _summary(result, written: list[Path]) -> dict:
    return {
        "verdict": result.verdict.value,
        "generated": len(result.output_verdicts),
        "released": len(result.outputs),
        "blocked": result.blocked,
        "seed": result.seed,
        "audit_record_id": result.audit_record_id,
        "policies": [{"id": o.policy_id, "status": o.status, "verdict": o.verdict.value, "error": o.error,
                      "findings": len(o.findings)} for o in result.outcomes],
        "written": [str(p) for p in written],
    }


def _print_summary(summary: dict) -> None:
    out = console()
    colour = {"pass": "green", "warn": "yellow", "bypassed": "yellow", "block": "red"}[summary["verdict"]]
    out.print(f"verdict [{colour}]{summary['verdict']}[/{colour}]: {summary['released']} of "
              f"{summary['generated']} outputs released (seed {summary['seed']}, audit record {summary['audit_record_id']})")
    for policy in summary["policies"]:
        out.print(f"  policy {policy['id']}: {policy['status']} -> {policy['verdict']}"
                  + (f" ({policy['error']})" if policy["error"] else ""), highlight=False)
    for path in summary["written"][:5]:
        out.print(f"  wrote {path}")
