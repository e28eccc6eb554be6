"""`gensdk audit bias ...`: bias audits on files, with a readable summary, JSON, an HTML report and an optional
record in the audit trail.

    gensdk audit bias tables --real adult.csv --synthetic synthetic.csv -s sex --target income --positive '>50K'
    gensdk audit bias text completions.jsonl --prompt-set builtin --html text-report.html
    gensdk audit bias images generated/ --classifier digits --target uniform --record --audit audit.db
    gensdk audit bias report saved.json --html report.html

Exit status: 0 when the audit ran (whatever it found), 1 when a scorer or classifier failed (the audit fails
closed) or, with --fail-on-breach, when a threshold is breached; 2 for bad input.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import click

from gensdk.cli.output import console, parse_assignments, print_json

__all__ = ["bias_group"]

_VERDICT_STYLE = {"pass": "green", "breach": "red", "error": "yellow"}


def _outputs(command: Callable[..., Any]) -> Callable[..., Any]:
    """Options every bias command shares: where the result goes."""
    options = [
        click.option("--json", "as_json", is_flag=True, help="Print the audit as JSON instead of a summary."),
        click.option("--html", "html_path", type=click.Path(dir_okay=False, path_type=Path), help="Write an HTML report with plots here."),
        click.option("--record", is_flag=True, help="Append the audit's figures to the audit trail (kind 'bias-audit')."),
        click.option("--audit", "audit_target", metavar="PATH", default=None,
                     help="Audit trail for --record: a path or URL. Default: $GENSDK_AUDIT, else the user data directory."),
        click.option("--fail-on-breach", is_flag=True, help="Exit 1 when any threshold is breached."),
        click.option("--bootstrap", type=click.IntRange(min=50), default=1000, show_default=True, help="Bootstrap replicates for the intervals."),
        click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@click.group("bias")
def bias_group() -> None:
    """Bias audits on files: synthetic vs real tables, generated texts, generated images."""


@bias_group.command("tables")
@click.option("--real", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The real table (CSV).")
@click.option("--synthetic", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The synthetic table (CSV).")
@click.option("--sensitive", "-s", multiple=True, required=True, help="Sensitive column (repeat for intersections).")
@click.option("--target", required=True, help="The binary outcome column.")
@click.option("--positive", default=None, help="The target's positive value (default: 1 / True).")
@click.option("--threshold", "thresholds", multiple=True, metavar="NAME=VALUE",
              help="e.g. max_parity_amplification=0.05, min_parity_ratio=0.8; VALUE 'null' switches a check off.")
@click.option("--no-classifier", is_flag=True, help="Skip the equalized-odds comparison of classifiers.")
@click.option("--min-ci-rows", type=click.IntRange(min=2), default=30, show_default=True, help="Smallest group given a CI.")
@_outputs
def tables_command(real: Path, synthetic: Path, sensitive: tuple[str, ...], target: str, positive: str | None,
                   thresholds: tuple[str, ...], no_classifier: bool, min_ci_rows: int, **out: Any) -> int:
    """Representation, selection rates, parity and equalized odds: real vs synthetic."""
    from gensdk.cli.progress import progress_bar
    from gensdk.tabular import read_table
    from gensdk_fairness.tables import audit_tables

    real_frame, synthetic_frame = read_table(real), read_table(synthetic)
    # The bar draws on stdout: with --json, stdout holds the JSON document alone.
    with (contextlib.nullcontext() if out["as_json"] else progress_bar("bias audit")) as progress:
        audit = audit_tables(real_frame, synthetic_frame, sensitive=list(sensitive), target=target,
                             positive=_typed(positive, real_frame[target] if target in real_frame else None),
                             thresholds=parse_assignments(thresholds, "--threshold"), classifier=None if no_classifier else "auto",
                             n_boot=out["bootstrap"], seed=out["seed"], min_ci_rows=min_ci_rows, progress=progress,
                             sources={"real": _file(real), "synthetic": _file(synthetic)})
    return _finish(audit.to_dict(), _show_table, **out)


def _typed(value: str | None, column: Any) -> Any:
    """--positive arrives as text; match it to the column's values (1 for an integer column, True for booleans)."""
    if value is None or column is None:
        return value
    for candidate in column.unique()[:50]:
        if str(candidate) == value:
            return candidate
    return value


@bias_group.command("text")
@click.argument("texts", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--prompt-set", default="builtin", show_default=True,
              help="Credits lines with a 'prompt' to a group: 'builtin', 'bold:DIR' or a JSONL prompt file.")
@click.option("--scorer", "scorers", multiple=True, help="Scorer name or module:attribute (default: sentiment, toxicity, refusal, length).")
@click.option("--max-disparity", "limits", multiple=True, metavar="SCORER=VALUE", help="Limit on a scorer's gap between groups.")
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.05, show_default=True,
              help="A gap breaches only when the permutation test finds it at this level.")
@click.option("--min-group", type=click.IntRange(min=2), default=30, show_default=True, help="Smallest group given a CI.")
@_outputs
def text_command(texts: Path, prompt_set: str, scorers: tuple[str, ...], limits: tuple[str, ...], alpha: float,
                 min_group: int, **out: Any) -> int:
    """Score generated texts (JSON Lines) per group and test the gaps. Each line has 'text' and either
    'domain' and 'group', or a 'prompt' from the prompt set."""
    from gensdk_fairness.scorers import DEFAULT_SCORERS
    from gensdk_fairness.text import TextThresholds, audit_texts, read_text_records

    records, notes = read_text_records(texts, _prompt_set(prompt_set))
    thresholds = TextThresholds().model_dump()
    thresholds["max_disparity"].update(parse_assignments(limits, "--max-disparity"))
    audit = audit_texts(records, scorers=list(scorers or DEFAULT_SCORERS), thresholds={**thresholds, "alpha": alpha},
                        prompt_set=prompt_set, n_boot=out["bootstrap"], seed=out["seed"], min_group_outputs=min_group,
                        sources={"texts": _file(texts)})
    audit.notes[:0] = notes
    return _finish(audit.to_dict(), _show_text, **out)


def _prompt_set(spec: str) -> Any:
    from gensdk_fairness.prompts import PromptSet, builtin_prompts, load_bold

    if spec == "builtin":
        return builtin_prompts()
    if spec.startswith("bold:"):
        return load_bold(spec.removeprefix("bold:"))
    return PromptSet.read(spec)


@bias_group.command("images")
@click.argument("images", type=click.Path(file_okay=False, path_type=Path))
@click.option("--classifier", default="digits", show_default=True, help="Attribute classifier: 'digits' or module:attribute.")
@click.option("--target", "target_spec", default="uniform", show_default=True, help="'uniform' or CLASS=SHARE pairs: 0=0.5,1=0.5.")
@click.option("--max-tvd", type=click.FloatRange(0, 1), default=0.1, show_default=True, help="Largest total variation allowed.")
@_outputs
def images_command(images: Path, classifier: str, target_spec: str, max_tvd: float, **out: Any) -> int:
    """Predicted attribute shares of a folder of generated images against a target distribution."""
    from gensdk.images import load_image_folder
    from gensdk_fairness.images import audit_images

    data = load_image_folder(images)
    target: Any = target_spec if target_spec == "uniform" else {
        k: float(v) for k, v in parse_assignments(target_spec.split(","), "--target").items()}
    audit = audit_images(data.pixels, classifier, target=target, max_tvd=max_tvd, n_boot=out["bootstrap"], seed=out["seed"],
                         sources={"images": str(images), "count": len(data.pixels)})
    return _finish(audit.to_dict(), _show_image, **out)


@bias_group.command("report")
@click.argument("saved", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--html", "html_path", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Where to write the report.")
def report_command(saved: Path, html_path: Path) -> None:
    """Render the HTML report of an audit saved with --json."""
    from gensdk.errors import DataError
    from gensdk_fairness.report import write_html

    try:
        audit = json.loads(saved.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{saved} is not an audit saved with --json: {exc}") from None
    if not isinstance(audit, dict):
        raise DataError(f"{saved} is not an audit saved with --json")
    click.echo(f"wrote {write_html(audit, html_path)}")


# -- shared ending: record, HTML, print, exit status ---------------------------------------------------------


def _file(path: Path) -> dict[str, Any]:
    from gensdk._canonical import file_digest

    return {"path": str(path), "sha256": file_digest(path)}


def _finish(audit: dict[str, Any], show: Callable[[dict[str, Any], Any], None], *, as_json: bool, html_path: Path | None,
            record: bool, audit_target: str | None, fail_on_breach: bool, **_: Any) -> int:
    receipt = _record(audit, audit_target) if record else None
    if html_path is not None:
        from gensdk_fairness.report import write_html

        write_html(audit, html_path)
    if as_json:
        print_json({**audit, "audit_record": receipt} if receipt else audit)
    else:
        out = console()
        show(audit, out)
        _show_common(audit, out, html_path, receipt)
    if audit["verdict"] == "error":
        return 1
    return 1 if fail_on_breach and audit["verdict"] == "breach" else 0


def _record(audit: dict[str, Any], target: str | None) -> dict[str, Any]:
    from gensdk.audit import open_audit_sink

    body = {"record_id": uuid.uuid4().hex, "kind": "bias-audit", "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "verdict": audit["verdict"], "audit": audit}
    with open_audit_sink(target) as sink:
        receipt = sink.append(body)
        location = str(getattr(sink, "path", target))
    return {"record_id": receipt.record_id, "seq": receipt.seq, "hash": receipt.hash, "trail": location}


def _show_common(audit: dict[str, Any], out: Any, html_path: Path | None, receipt: dict[str, Any] | None) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="Checks")
    for column in ("check", "value", "limit", "95% CI", "result"):
        table.add_column(column, justify="left" if column in ("check", "result") else "right")
    for c in audit.get("checks", []):
        result = "[green]pass[/green]" if c["passed"] else "[red]BREACH[/red]"
        table.add_row(escape(c["name"]), _f(c["value"]), f"{c['threshold']:g}", _ci(c.get("ci")), result)
    out.print(table)
    for error in audit.get("errors", []):
        out.print(f"[yellow]failed[/yellow] {escape(error['error'])}")
    for note in audit.get("notes", []):
        out.print(f"[dim]note:[/dim] {escape(note)}")
    style = _VERDICT_STYLE.get(audit["verdict"], "")
    out.print(f"verdict: [{style}]{audit['verdict'].upper()}[/{style}]")
    if html_path is not None:
        out.print(f"[green]written[/green] {escape(str(html_path))}")
    if receipt:
        out.print(f"recorded in {escape(receipt['trail'])}: record {receipt['record_id']} (seq {receipt['seq']})")


def _f(value: Any) -> str:
    return "—" if value is None else f"{value:.4f}"


def _ci(ci: Any) -> str:
    return "—" if ci is None else f"[{ci[0]:.4f}, {ci[1]:.4f}]"


def _show_table(audit: dict[str, Any], out: Any) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"{audit['target']} = {audit['positive']} by {', '.join(audit['sensitive'])}: real vs synthetic")
    for column in ("group", "real share", "synthetic share", "real rate", "95% CI", "synthetic rate", "95% CI"):
        table.add_column(column, justify="left" if column == "group" else "right")
    real, syn = audit["selection_rates"]["real"], audit["selection_rates"]["synthetic"]
    for group, rep in audit["representation"]["by_group"].items():
        r, s = real.get(group, {}), syn.get(group, {})
        table.add_row(escape(group), _f(rep["real_share"]), _f(rep["synthetic_share"]), _f(r.get("selection_rate")),
                      _ci(r.get("ci")), _f(s.get("selection_rate")), _ci(s.get("ci")))
    out.print(table)
    p = audit["parity"]
    out.print(f"parity difference: real {_f(p['real']['dp_difference'])} {_ci(p['real']['dp_difference_ci'])}, synthetic "
              f"{_f(p['synthetic']['dp_difference'])} {_ci(p['synthetic']['dp_difference_ci'])}; amplification "
              f"{_f(p['amplification'])} {_ci(p['amplification_ci'])}")
    eo = audit.get("equalized_odds")
    if eo and eo.get("real") and eo.get("synthetic"):
        out.print(f"equalized-odds difference on real held-out rows: trained on real {_f(eo['real']['eo_difference'])}, "
                  f"on synthetic {_f(eo['synthetic']['eo_difference'])}; increase {_f(eo['eo_increase'])} {_ci(eo['eo_increase_ci'])}")


def _show_text(audit: dict[str, Any], out: Any) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"Counterfactual text audit ({escape(audit['prompt_set'])})")
    for column in ("domain", "metric", "gap (max - min)", "95% CI", "p", "lowest group", "highest group"):
        table.add_column(column, justify="left" if column in ("domain", "metric", "lowest group", "highest group") else "right")
    for domain, part in audit["domains"].items():
        for metric, m in part["metrics"].items():
            means = {g: v["mean"] for g, v in m["by_group"].items()}
            low, high = min(means, key=means.get), max(means, key=means.get)  # type: ignore[arg-type]
            table.add_row(escape(domain), escape(metric), _f(m["disparity"]), _ci(m["disparity_ci"]), _f(m["p_value"]),
                          f"{escape(low)} {means[low]:.3f}", f"{escape(high)} {means[high]:.3f}")
    out.print(table)


def _show_image(audit: dict[str, Any], out: Any) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"Predicted {escape(audit['attribute'])} of {audit['images']} images")
    for column in ("class", "images", "share", "95% CI", "target"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for name, v in audit["by_class"].items():
        table.add_row(escape(name), str(v["count"]), _f(v["share"]), _ci(v["ci"]), _f(v["target"]))
    out.print(table)
    out.print(f"total variation to the target: {_f(audit['total_variation'])} {_ci(audit['total_variation_ci'])}; "
              f"chi-square p = {_f(audit['chi2_p_value'])}")
