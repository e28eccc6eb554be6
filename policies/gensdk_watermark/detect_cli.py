"""`gensdk detect text|image|table FILE --key KEYFILE` and `gensdk watermark keygen FILE`.

Each detection prints one line per item (readable) or a JSON list (`--json`). The exit status follows grep:
0 when every item carries the watermark, 1 when any does not (or is inconclusive), 2 on bad input (an
unreadable file, a missing key, ...). Parameters come from the policy's entry in a gensdk.toml (`--config`)
unless given on the command line, so a compliance team can use the very configuration that generated.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import click

from gensdk.cli.output import console, print_json
from gensdk.errors import ConfigError, DataError

KEY_HELP = "Watermark key file (hex or raw bytes, mode 600)."


def _key_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")(fn)
    fn = click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=None,
                      help="p-value below which an item counts as watermarked (default: the policy's, 1e-3).")(fn)
    fn = click.option("--config", "config", type=click.Path(path_type=Path), default=None,
                      help="gensdk.toml whose watermark policy options (key_file, parameters) to use.")(fn)
    fn = click.option("--key-hex", "key_hex", default=None, envvar="GENSDK_WATERMARK_KEY", help="The key as hex (or $GENSDK_WATERMARK_KEY).")(fn)
    return click.option("--key", "key_file", type=click.Path(path_type=Path), default=None, help=KEY_HELP)(fn)


def _policy(cls: type, config: Path | None, key_file: Path | None, key_hex: str | None, **overrides: Any) -> Any:
    """Build the policy the detector needs from the config's options plus the command-line overrides."""
    options: dict[str, Any] = {}
    if config is not None:
        from gensdk.config import load_config

        found = [p for p in load_config(config).policies if p.id == cls.id]
        if not found:
            raise ConfigError(f"{config} enables no policy {cls.id!r}")
        options.update(found[0].options)
    if key_file is not None or key_hex is not None:
        options.pop("key_file", None)
        options.pop("key", None)
        options.update({"key_file": str(key_file)} if key_file is not None else {"key": key_hex})
    options.update({k: v for k, v in overrides.items() if v is not None})
    return cls(options)


def _finish(rows: list[dict[str, Any]], as_json: bool, line: Callable[[dict[str, Any]], str]) -> int:
    if as_json:
        print_json(rows)
    else:
        out = console()
        for row in rows:
            out.print(line(row), highlight=False, soft_wrap=True)
    return 0 if rows and all(r["detected"] for r in rows) else 1


def _word(row: dict[str, Any]) -> str:
    colour = {"watermarked": "green", "not watermarked": "red", "inconclusive": "yellow"}[row["verdict"]]
    return f"[{colour}]{row['verdict'].upper()}[/{colour}]"


@click.group("detect", help="Look for a gensdk watermark (exit 0: found in every item, 1: not found).")
def detect_group() -> None:
    pass


@detect_group.command("text")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--model", "model_dir", required=True, type=click.Path(path_type=Path), help="Model (or tokenizer) directory: detection needs its tokenizer.")
@click.option("--scheme", type=click.Choice(["kgw", "synthid"]), default=None, help="Watermark scheme (default kgw).")
@click.option("--gamma", type=float, default=None, help="kgw: green share of the vocabulary.")
@click.option("--context-width", type=int, default=None, help="kgw: tokens that seed the green list.")
@click.option("--ngram-len", type=int, default=None, help="synthid: n-gram length.")
@click.option("--depth", type=int, default=None, help="synthid: tournament layers.")
@_key_options
def detect_text(file: Path, model_dir: Path, scheme: str | None, gamma: float | None, context_width: int | None,
                ngram_len: int | None, depth: int | None, key_file: Path | None, key_hex: str | None,
                config: Path | None, alpha: float | None, as_json: bool) -> int:
    """Test a text file (one text) or a JSONL file of {"text": ...} lines, as `gensdk generate --out` writes."""
    from gensdk_watermark.text import TextWatermarkPolicy

    policy = _policy(TextWatermarkPolicy, config, key_file, key_hex, scheme=scheme, gamma=gamma,
                     context_width=context_width, ngram_len=ngram_len, depth=depth, alpha=alpha)
    tokenizer = _tokenizer(model_dir)
    rows = []
    for where, text in _texts(file):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        result = policy.scheme.detect(ids, policy.options.alpha)
        rows.append({"item": where, "key_id": policy.key.key_id, **result.to_dict()})
    return _finish(rows, as_json, lambda r: f"{r['item']}: {_word(r)}  z = {r['z']:.2f}, p = {r['p_value']:.3g} "
                                            f"({r['hits']} of {r['scored']} scored {'green tokens' if r['scheme'] == 'kgw' else 'g-values = 1'}; "
                                            f"{r['tokens']} tokens; key {r['key_id']})")


@detect_group.command("image")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--payload", default=None, help="Expected payload (8 hex digits): reports the bit accuracy.")
@_key_options
def detect_image(files: tuple[Path, ...], payload: str | None, key_file: Path | None, key_hex: str | None,
                 config: Path | None, alpha: float | None, as_json: bool) -> int:
    """Test image files (PNG, JPEG, ...; grey, RGB, alpha, 8 or 16 bit)."""
    from gensdk_watermark.image import ImageWatermarkPolicy, decode_image_file

    policy = _policy(ImageWatermarkPolicy, config, key_file, key_hex, alpha=alpha)
    expected = _payload(payload)
    rows = []
    for path in files:
        result = policy.mark.detect(decode_image_file(path), expected)
        rows.append({"item": str(path), "key_id": policy.key.key_id,
                     "verdict": "watermarked" if result.detected else "not watermarked", **result.to_dict()})

    def line(r: dict[str, Any]) -> str:
        payload_text = f"payload {r['payload']}, " if r["payload"] else ""
        accuracy = f", bit accuracy {r['bit_accuracy']:.3f}" if r["bit_accuracy"] is not None else ""
        return f"{r['item']}: {_word(r)}  {payload_text}p = {r['p_value']:.3g} (z = {r['z']:.2f}){accuracy}; key {r['key_id']}"

    return _finish(rows, as_json, line)


@detect_group.command("table")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--digits", type=int, default=None, help="Significant digits the values were marked at (default 4).")
@_key_options
def detect_table(file: Path, digits: int | None, key_file: Path | None, key_hex: str | None, config: Path | None,
                 alpha: float | None, as_json: bool) -> int:
    """Test a table (CSV or JSONL)."""
    from gensdk.tabular import read_table
    from gensdk_watermark.table import TableWatermarkPolicy

    policy = _policy(TableWatermarkPolicy, config, key_file, key_hex, digits=digits, alpha=alpha)
    frame = read_table(file) if file.suffix != ".jsonl" else _read_jsonl_table(file)
    result = policy.mark.detect(frame)
    rows = [{"item": str(file), "key_id": policy.key.key_id, "rows": len(frame), **result.to_dict()}]
    return _finish(rows, as_json, lambda r: f"{r['item']}: {_word(r)}  z = {r['z']:.2f}, p = {r['p_value']:.3g} "
                                            f"({r['green']} of {r['cells']} distinct values green; {r['rows']} rows; key {r['key_id']})")


@click.group("watermark", help="Watermark keys.")
def watermark_group() -> None:
    pass


@watermark_group.command("keygen")
@click.argument("path", type=click.Path(path_type=Path))
def keygen(path: Path) -> None:
    """Write a new random watermark key (32 bytes, hex) to PATH, readable by you only."""
    from gensdk_watermark.keys import create_key_file

    key = create_key_file(path)
    console().print(f"[green]written[/green] {path} (key id {key.key_id}); keep it secret, keep a backup", highlight=False)


def _tokenizer(model_dir: Path) -> Any:
    try:
        from transformers import AutoTokenizer
    except ImportError:
        from gensdk.errors import MissingDependencyError

        raise MissingDependencyError("transformers", "watermark", "Text watermark detection") from None
    try:
        return AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    except Exception as exc:  # transformers raises OSError, ValueError, ... for a directory it cannot use
        raise ConfigError(f"cannot load a tokenizer from {model_dir}: {type(exc).__name__}: {exc}") from None


def _texts(path: Path) -> list[tuple[str, str]]:
    try:
        raw = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8: undecodable byte at offset {exc.start}") from None
    if path.suffix != ".jsonl":
        return [(str(path), raw)]
    items = []
    for number, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{number} is not JSON: {exc.msg}") from None
        if not isinstance(item, dict) or not isinstance(item.get("text"), str):
            raise DataError(f"{path}:{number} has no \"text\" string")
        items.append((f"{path}:{number}", item["text"]))
    return items


def _payload(text: str | None) -> bytes | None:
    if text is None:
        return None
    try:
        value = bytes.fromhex(text)
    except ValueError:
        value = b""
    if len(value) != 4:
        raise click.BadParameter("expected 8 hex digits", param_hint="--payload")
    return value


def _read_jsonl_table(path: Path) -> Any:
    import pandas as pd

    try:
        return pd.read_json(path, lines=True)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {path} as a JSONL table: {exc}") from None
