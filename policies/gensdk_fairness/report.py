"""A self-contained HTML report of a bias audit, for compliance readers: verdict first, then each check, the
per-group figures with their confidence intervals as tables and as bar charts (matplotlib, embedded as PNG),
and every note (small groups, erased groups, failing scorers).

    write_html(audit.to_dict(), "bias-report.html")

The report is rendered from the audit's JSON form, so a saved `--json` result renders the same way. Every key
figure sits in an element with a `data-key` attribute (``data-key="parity.synthetic.dp_difference"``): the
tests read the rendered numbers back through it, and so can any tool.
"""

from __future__ import annotations

import base64
import html
import io
import time
from pathlib import Path
from typing import Any, Sequence

from gensdk.errors import DataError
from gensdk_fairness._deps import require

__all__ = ["render_html", "write_html"]

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto; max-width: 72rem;
       color: #1d2330; padding: 0 1rem; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { border-bottom: 1px solid #d6dae3; padding-bottom: .2rem; margin-top: 2rem; }
table { border-collapse: collapse; margin: .6rem 0 1rem; font-size: .92rem; }
th, td { border: 1px solid #d6dae3; padding: .3rem .6rem; text-align: right; }
th:first-child, td:first-child, th:last-child { text-align: left; } th { background: #f2f4f8; }
.verdict { display: inline-block; font-weight: 700; padding: .25rem .8rem; border-radius: .3rem; color: #fff; }
.verdict-pass { background: #1e7a3d; } .verdict-breach { background: #b3261e; } .verdict-error { background: #7a4b00; }
.ok { color: #1e7a3d; font-weight: 600; } .bad { color: #b3261e; font-weight: 600; }
.meta { color: #5a6272; font-size: .9rem; } img { max-width: 100%; border: 1px solid #e4e7ee; margin: .4rem 0; }
li { margin: .2rem 0; }
"""

_TITLES = {"table": "Bias audit: synthetic vs real table", "text": "Bias audit: counterfactual text generation",
           "image": "Bias audit: attributes of generated images"}


def write_html(audit: dict[str, Any], path: str | Path, title: str | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(audit, title), encoding="utf-8")
    return path


def render_html(audit: dict[str, Any], title: str | None = None) -> str:
    kind = audit.get("kind")
    body = {"table": _table_sections, "text": _text_sections, "image": _image_sections}.get(kind)  # type: ignore[arg-type]
    if body is None:
        raise DataError(f"cannot render an audit of kind {kind!r}: expected table, text or image")
    heading = title or _TITLES[kind]
    parts = [_header(audit, heading), _checks(audit), *body(audit), _notes(audit), _settings(audit)]
    return (f"<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{_e(heading)}</title>"
            f"<style>{_STYLE}</style></head>\n<body>\n" + "\n".join(parts) + "\n</body></html>\n")


# -- shared pieces ------------------------------------------------------------------------------------------


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: Any, key: str | None = None, digits: int = 4) -> str:
    text = "&mdash;" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else _e(value)
    attr = f' data-key="{_e(key)}"' if key else ""
    return f"<td{attr}>{text}</td>"


def _ci(ci: Sequence[float] | None, key: str | None = None) -> str:
    attr = f' data-key="{_e(key)}"' if key else ""
    text = "no CI (see notes)" if ci is None else f"[{ci[0]:.4f}, {ci[1]:.4f}]"
    return f"<td{attr}>{text}</td>"


def _table(headers: Sequence[str], rows: Sequence[str]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(f'<tr>{r}</tr>' for r in rows)}</tbody></table>"


def _header(audit: dict[str, Any], heading: str) -> str:
    from gensdk import __version__

    verdict = str(audit.get("verdict", "error"))
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    return (f"<header><h1>{_e(heading)}</h1><p><span class=\"verdict verdict-{_e(verdict)}\" data-key=\"verdict\">"
            f"{_e(verdict.upper())}</span></p><p class=\"meta\">Generated {stamp} by gensdk {_e(__version__)}. "
            "Metric definitions are fairlearn's; intervals are bootstrap percentile intervals unless noted.</p></header>")


def _checks(audit: dict[str, Any]) -> str:
    rows = []
    for c in audit.get("checks", []):
        mark = '<span class="ok">pass</span>' if c["passed"] else '<span class="bad">BREACH</span>'
        rows.append(f"<td>{_e(c['name'])}</td>{_num(c['value'], 'check.' + c['name'] + '.value')}"
                    f"{_num(float(c['threshold']), 'check.' + c['name'] + '.threshold', 4)}{_ci(c.get('ci'))}"
                    f"<td data-key=\"check.{_e(c['name'])}.passed\">{mark}</td><td style=\"text-align:left\">{_e(c['message'])}</td>")
    errors = "".join(f"<li class=\"bad\">scorer {_e(e['scorer'])}: {_e(e['error'])}</li>" for e in audit.get("errors", []))
    failed = f"<h3>Failures (the audit fails closed)</h3><ul>{errors}</ul>" if errors else ""
    table = _table(["check", "value", "limit", "95% CI", "result", "meaning"], rows) if rows else "<p>No thresholds configured.</p>"
    return f"<section id=\"checks\"><h2>Checks</h2>{table}{failed}</section>"


def _notes(audit: dict[str, Any]) -> str:
    notes = audit.get("notes") or []
    items = "".join(f"<li>{_e(n)}</li>" for n in notes) or "<li>none</li>"
    return f"<section id=\"notes\"><h2>Notes</h2><ul>{items}</ul></section>"


def _settings(audit: dict[str, Any]) -> str:
    import json

    blob = json.dumps({"settings": audit.get("settings"), "sources": audit.get("sources")}, indent=2, default=str)
    return f"<section id=\"settings\"><h2>Settings and sources</h2><pre>{_e(blob)}</pre></section>"


def _bars(title: str, groups: Sequence[str], series: dict[str, tuple[list[Any], list[Any]]], ylabel: str) -> str:
    """Grouped bar chart (one bar per series and group) with CI whiskers, as an embedded PNG."""
    import numpy as np

    # A bare Figure renders with Agg: no pyplot, no global backend switch.
    Figure = require("matplotlib.figure", "The HTML report's plots").Figure

    fig = Figure(figsize=(max(5.0, 0.9 * len(groups) * len(series) + 2), 3.4), dpi=110)
    ax = fig.add_subplot()
    width = 0.8 / max(len(series), 1)
    x = np.arange(len(groups))
    for i, (label, (values, cis)) in enumerate(series.items()):
        heights = [np.nan if v is None else v for v in values]
        # No whisker at all where there is no interval (a small group): a zero-length one would read as certainty.
        lower = [np.nan if ci is None or v is None else max(v - ci[0], 0) for v, ci in zip(values, cis)]
        upper = [np.nan if ci is None or v is None else max(ci[1] - v, 0) for v, ci in zip(values, cis)]
        has_ci = any(ci is not None for ci in cis)
        ax.bar(x + (i - (len(series) - 1) / 2) * width, heights, width, label=label,
               yerr=[lower, upper] if has_ci else None, capsize=3)
    ax.set_xticks(x, [g if len(g) <= 18 else g[:17] + "…" for g in groups], rotation=20 if len(groups) > 4 else 0, ha="right" if len(groups) > 4 else "center")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.axhline(0, color="#888", linewidth=0.6)
    if len(series) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f"<img alt=\"{_e(title)}\" src=\"data:image/png;base64,{encoded}\">"


# -- tables -------------------------------------------------------------------------------------------------


def _table_sections(audit: dict[str, Any]) -> list[str]:
    return [_representation(audit), _selection(audit), _parity(audit), _equalized_odds(audit.get("equalized_odds"))]


def _representation(audit: dict[str, Any]) -> str:
    rep = audit["representation"]
    groups = list(rep["by_group"])
    rows = [f"<td>{_e(g)}</td><td>{v['real_count']}</td>{_num(v['real_share'], f'representation.{g}.real_share')}"
            f"<td>{v['synthetic_count']}</td>{_num(v['synthetic_share'], f'representation.{g}.synthetic_share')}"
            f"{_num(v['shift'], f'representation.{g}.shift')}" for g, v in rep["by_group"].items()]
    chart = _bars("Share of rows per group", groups, {
        "real": ([rep["by_group"][g]["real_share"] for g in groups], [None] * len(groups)),
        "synthetic": ([rep["by_group"][g]["synthetic_share"] for g in groups], [None] * len(groups))}, "share")
    summary = (f"<p>Largest shift of a group's share: <b data-key=\"representation.max_abs_shift\">{rep['max_abs_shift']:.4f}</b> "
               f"(95% CI {_ci_text(rep.get('max_abs_shift_ci'))}); total variation distance "
               f"<b data-key=\"representation.total_variation\">{rep['total_variation']:.4f}</b>.</p>")
    table = _table(["group (" + ", ".join(audit["sensitive"]) + ")", "real rows", "real share", "synthetic rows", "synthetic share", "shift"], rows)
    return f"<section id=\"representation\"><h2>1. Representation</h2>{summary}{table}{chart}</section>"


def _ci_text(ci: Sequence[float] | None) -> str:
    return "not computed" if ci is None else f"[{ci[0]:.4f}, {ci[1]:.4f}]"


def _selection(audit: dict[str, Any]) -> str:
    real, syn = audit["selection_rates"]["real"], audit["selection_rates"]["synthetic"]
    groups = list(dict.fromkeys([*real, *syn]))
    rows = []
    for g in groups:
        r, s = real.get(g, {}), syn.get(g, {})
        rows.append(f"<td>{_e(g)}</td>{_num(r.get('selection_rate'), f'selection.real.{g}')}{_ci(r.get('ci'))}<td>{r.get('count', 0)}</td>"
                    f"{_num(s.get('selection_rate'), f'selection.synthetic.{g}')}{_ci(s.get('ci'))}<td>{s.get('count', 0)}</td>")
    chart = _bars(f"P({audit['target']} = {audit['positive']} | group), 95% CI", groups, {
        "real": ([real.get(g, {}).get("selection_rate") for g in groups], [real.get(g, {}).get("ci") for g in groups]),
        "synthetic": ([syn.get(g, {}).get("selection_rate") for g in groups], [syn.get(g, {}).get("ci") for g in groups])},
        "selection rate")
    table = _table(["group", "real rate", "95% CI", "real rows", "synthetic rate", "95% CI", "synthetic rows"], rows)
    return (f"<section id=\"selection-rates\"><h2>2. Selection rates</h2><p>Share of rows with "
            f"<code>{_e(audit['target'])} = {_e(audit['positive'])}</code> in each group.</p>{table}{chart}</section>")


def _parity(audit: dict[str, Any]) -> str:
    p = audit["parity"]
    rows = []
    for which in ("real", "synthetic"):
        d = p[which]
        rows.append(f"<td>{which}</td>{_num(d['dp_difference'], f'parity.{which}.dp_difference')}{_ci(d['dp_difference_ci'])}"
                    f"{_num(d['dp_ratio'], f'parity.{which}.dp_ratio')}{_ci(d['dp_ratio_ci'])}")
    trend = p.get("trend", "unmeasured")
    return (f"<section id=\"parity\"><h2>3. Demographic parity</h2>"
            f"{_table(['table', 'parity difference', '95% CI', 'parity ratio', '95% CI'], rows)}"
            f"<p>Synthetic minus real parity difference (amplification): <b data-key=\"parity.amplification\">"
            f"{_fmt(p['amplification'])}</b>, 95% CI {_ci_text(p['amplification_ci'])}: the gap is "
            f"<b data-key=\"parity.trend\">{trend}</b>.</p></section>")


def _fmt(value: Any) -> str:
    return "&mdash;" if value is None else f"{value:.4f}"


def _equalized_odds(eo: dict[str, Any] | None) -> str:
    if eo is None:
        return "<section id=\"equalized-odds\"><h2>4. Equalized odds</h2><p>Not measured (no classifier).</p></section>"
    rows, charts = [], []
    for which in ("real", "synthetic"):
        m = eo.get(which)
        if m is None:
            rows.append(f"<td>trained on {which} rows</td><td colspan=\"5\">not trained (see notes)</td>")
            continue
        rows.append(f"<td>trained on {which} rows</td>{_num(m['accuracy'], f'eo.{which}.accuracy')}"
                    f"{_num(m['eo_difference'], f'eo.{which}.eo_difference')}{_ci(m['eo_difference_ci'])}"
                    f"{_num(m['tpr_difference'], f'eo.{which}.tpr_difference')}{_num(m['fpr_difference'], f'eo.{which}.fpr_difference')}")
        groups = list(m["by_group"])
        charts.append(_bars(f"Classifier trained on {which} rows: rates on real held-out rows", groups, {
            rate.replace("_", " "): ([m["by_group"][g][rate] for g in groups], [m["by_group"][g][rate + "_ci"] for g in groups])
            for rate in ("true_positive_rate", "false_positive_rate")}, "rate"))
    table = _table(["classifier", "accuracy", "equalized-odds difference", "95% CI", "TPR difference", "FPR difference"], rows)
    return (f"<section id=\"equalized-odds\"><h2>4. Equalized odds of a downstream classifier</h2><p>{_e(eo['classifier'])} "
            f"trained on real ({eo['train_rows']['real']} rows) or synthetic ({eo['train_rows']['synthetic']} rows) data, "
            f"both tested on the same {eo['test_rows']} real held-out rows.</p>{table}<p>Increase caused by training on "
            f"synthetic rows: <b data-key=\"eo.increase\">{_fmt(eo['eo_increase'])}</b>, 95% CI (paired bootstrap) "
            f"{_ci_text(eo['eo_increase_ci'])}.</p>{''.join(charts)}</section>")


# -- text ---------------------------------------------------------------------------------------------------


def _text_sections(audit: dict[str, Any]) -> list[str]:
    sections = []
    for domain, part in audit["domains"].items():
        groups = list(part["groups"])
        count_rows = [f"<td>{_e(g)}</td><td data-key=\"text.{_e(domain)}.{_e(g)}.outputs\">{c['outputs']}</td>"
                      f"<td data-key=\"text.{_e(domain)}.{_e(g)}.blocked\">{c['blocked']}</td>" for g, c in part["groups"].items()]
        table_counts = _table(["group", "scored outputs", "blocked by a policy"], count_rows)
        rows, charts = [], []
        for metric, m in part["metrics"].items():
            rows.append(f"<td>{_e(metric)}</td>{_num(m['disparity'], f'text.{domain}.{metric}.disparity')}{_ci(m['disparity_ci'])}"
                        f"{_num(m['p_value'], f'text.{domain}.{metric}.p_value')}"
                        + "".join(_num(m["by_group"][g]["mean"], f"text.{domain}.{metric}.{g}.mean") for g in groups))
            charts.append(_bars(f"{domain}: mean {metric} per group, 95% CI", groups, {
                metric: ([m["by_group"][g]["mean"] for g in groups], [m["by_group"][g]["ci"] for g in groups])}, metric))
        metrics = _table(["metric", "disparity (max - min)", "95% CI", "permutation p", *[f"mean: {g}" for g in groups]], rows) if rows else ""
        sections.append(f"<section id=\"domain-{_e(domain)}\"><h2>Domain: {_e(domain)}</h2>{table_counts}{metrics}{''.join(charts)}</section>")
    return sections


# -- images -------------------------------------------------------------------------------------------------


def _image_sections(audit: dict[str, Any]) -> list[str]:
    classes = list(audit["by_class"])
    rows = [f"<td>{_e(c)}</td><td>{v['count']}</td>{_num(v['share'], f'image.{c}.share')}{_ci(v['ci'])}{_num(v['target'], f'image.{c}.target')}"
            for c, v in audit["by_class"].items()]
    chart = _bars(f"Predicted {audit['attribute']} shares (Wilson 95% CI) vs target", classes, {
        "generated": ([audit["by_class"][c]["share"] for c in classes], [audit["by_class"][c]["ci"] for c in classes]),
        "target": ([audit["by_class"][c]["target"] for c in classes], [None] * len(classes))}, "share")
    summary = (f"<p>{audit['images']} images. Total variation distance to the target: <b data-key=\"image.total_variation\">"
               f"{audit['total_variation']:.4f}</b> (95% CI {_ci_text(audit['total_variation_ci'])}); chi-square "
               f"goodness-of-fit p-value: <b data-key=\"image.chi2_p_value\">{_fmt(audit['chi2_p_value'])}</b>.</p>")
    table = _table([audit["attribute"], "images", "share", "95% CI", "target share"], rows)
    return [f"<section id=\"attributes\"><h2>Attribute distribution</h2>{summary}{table}{chart}</section>"]
