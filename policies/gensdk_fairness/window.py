"""Windowed bias audits inside the engine: every N outputs of a model are audited and the result recorded.

Three policies, one per modality, all read-only (`inspect_output`):

| id | unit | what a window is audited for |
|---|---|---|
| `fairness-table` | row | group shares and selection rates against the model's training data (its memorisation reference); parity amplification, representation shift, absolute parity limits |
| `fairness-text` | output | counterfactual disparity of scorers (sentiment, toxicity, refusal, length) between groups named in the prompts |
| `fairness-image` | image | attribute shares (an attribute classifier) against a target distribution |

Units are buffered per model (family, weights and config digests) on the policy instance, so for the life of
the engine. When a buffer holds `window` units, those units are audited (a tumbling window), the audit's
figures are appended to the audit trail as a record of kind ``bias-window`` (`context.record_event`), and a
``bias-window`` finding naming that record is returned: a violation when a threshold is breached, which blocks
the micro-batch that completed the window under ``on_fail="block"`` (``on_fail="warn"`` is the usual choice for
monitoring). Outputs of requests that condition on the audited attributes (rows asked for as
``sex="Female"``, images of a requested class) are left out: the request, not the model, chose their groups.

Fail closed: a policy that cannot audit (no sensitive attribute configured or declared, no classifier, a
scorer that fails, no audit trail to write to) raises, so the engine blocks the outputs and records why;
``missing_attributes="skip"`` instead records a ``bias-window-unchecked`` finding on every batch.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any, Literal

import numpy as np
from pydantic import Field

from gensdk import Finding, Policy, PolicyOptions, hookimpl
from gensdk.errors import ConfigError, DataError
from gensdk.outputs import Output
from gensdk.request import GenerationContext
from gensdk_fairness.checks import at_least, at_most, json_safe, overall_verdict
from gensdk_fairness.scorers import DEFAULT_SCORERS, ScorerError
from gensdk_fairness.stats import MIN_CI_ROWS

__all__ = ["ImageWindowPolicy", "TableWindowPolicy", "TextWindowPolicy", "reference_columns", "reference_frame"]

log = logging.getLogger("gensdk_fairness")

# Set (truthy) in `context.state` by a pipeline pass over an output that is not complete yet (Engine.stream's
# checks of a growing text): window policies count outputs once, when they are whole.
PARTIAL_CHECK = "partial"


class WindowOptions(PolicyOptions):
    window: int = Field(1000, ge=2, le=10_000_000)
    bootstrap: int = Field(500, ge=50, le=100_000)
    seed: int = Field(0, ge=0)
    min_ci_rows: int = Field(MIN_CI_ROWS, ge=2)
    # What to do when the policy is not told what to audit: fail (block, recorded) or skip (recorded finding).
    missing_attributes: Literal["fail", "skip"] = "fail"


class _WindowPolicy(Policy):
    """Buffers units per model and audits each full window; subclasses say what a unit is and how to audit."""

    version = "1"
    Options = WindowOptions

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lock = threading.Lock()
        self._buffers: dict[str, list[Any]] = {}
        self._skipped: dict[str, int] = {}
        self._windows: dict[str, int] = {}

    @hookimpl
    def inspect_output(self, outputs: list[Output], context: GenerationContext) -> list[Finding]:
        if context.state.get(PARTIAL_CHECK):  # a streamed text checked before it is complete: not a unit yet
            return []
        plan = self._plan(context)
        if plan is None:
            return [self._unchecked(context)]
        if context.record_event is None:
            raise RuntimeError(f"policy {self.id!r} records its windows in the audit trail, and this context has none")
        key = _model_key(context.model_info)
        units, skipped = self._units(outputs, context, plan)
        findings = []
        with self._lock:
            buffer = self._buffers.setdefault(key, [])
            if len(units):
                buffer.append(units)
            self._skipped[key] = self._skipped.get(key, 0) + skipped
            while sum(len(chunk) for chunk in buffer) >= self.options.window:
                window = self._merge(_take(buffer, self.options.window, self._slice))
                self._windows[key] = self._windows.get(key, 0) + 1
                findings.append(self._close(window, self._windows[key], self._skipped.pop(key, 0), plan, context))
        return findings

    def _close(self, window: Any, number: int, skipped: int, plan: Any, context: GenerationContext) -> Finding:
        audit = self._audit(window, plan, context)
        body = {"policy": self.describe(), "policy_config_digest": self.config_digest,
                "model": {k: context.model_info.get(k) for k in ("family", "weights_digest", "config_digest", "path")},
                "window": number, "units": len(window), "skipped_units": skipped, "verdict": audit["verdict"], "audit": audit}
        receipt = context.record_event("bias-window", json_safe(body))
        if audit["verdict"] == "error":  # a scorer failed: recorded above, and the outputs are blocked (fail closed)
            raise ScorerError(f"window {number}: " + "; ".join(e["error"] for e in audit.get("errors", [])))
        breached = [c for c in audit["checks"] if not c["passed"]]
        details = {"record_id": receipt["record_id"], "record_hash": receipt["hash"], "window": number,
                   "units": len(window), "verdict": audit["verdict"], "breached": [c["name"] for c in breached]}
        if breached:
            message = f"bias window {number} ({len(window)} {self.unit}s): " + "; ".join(c["message"] for c in breached)
        else:
            message = f"bias window {number} ({len(window)} {self.unit}s) within every threshold"
        return Finding("bias-window", message, violation=bool(breached), details=details)

    def _unchecked(self, context: GenerationContext) -> Finding:
        log.warning("policy %r has nothing to audit for model %s (missing_attributes='skip'): outputs not audited",
                    self.id, context.model_info.get("family"))
        return Finding("bias-window-unchecked", f"{self.id}: nothing configured to audit; outputs not audited "
                       "(missing_attributes='skip')", details={"checked": False})

    def _missing(self, what: str) -> None:
        """Not told what to audit: raise (fail closed) or, with missing_attributes='skip', return None."""
        if self.options.missing_attributes == "fail":
            raise ConfigError(f"policy {self.id!r} cannot audit: {what} (or set missing_attributes='skip')")

    # Subclasses: unit (a word), _plan (None = nothing to audit), _units (a chunk of units and the count left
    # out), _audit (of one merged window); tables keep chunks as DataFrames, so they override _slice and _merge.
    unit = "output"

    def _slice(self, chunk: Any, start: int, stop: int | None) -> Any:
        return chunk[start:stop]

    def _merge(self, chunks: list[Any]) -> Any:
        return [unit for chunk in chunks for unit in chunk]

    def _plan(self, context: GenerationContext) -> Any:
        raise NotImplementedError

    def _units(self, outputs: list[Output], context: GenerationContext, plan: Any) -> tuple[list[Any], int]:
        raise NotImplementedError

    def _audit(self, window: Any, plan: Any, context: GenerationContext) -> dict[str, Any]:
        raise NotImplementedError


def _take(buffer: list[Any], count: int, slice_: Any) -> list[Any]:
    """Remove the first `count` units from a buffer of chunks (splitting one chunk if need be)."""
    taken, need = [], count
    while need:
        chunk = buffer[0]
        if len(chunk) <= need:
            taken.append(buffer.pop(0))
            need -= len(chunk)
        else:
            taken.append(slice_(chunk, 0, need))
            buffer[0] = slice_(chunk, need, None)
            need = 0
    return taken


def _model_key(info: dict[str, Any]) -> str:
    return json.dumps([info.get("family"), info.get("weights_digest"), info.get("config_digest"), info.get("path")])


# -- tables -----------------------------------------------------------------------------------------------


class TableWindowOptions(WindowOptions):
    window: int = Field(5000, ge=2, le=10_000_000)
    # Default: the columns the model's schema declares sensitive, and its declared target.
    sensitive: list[str] = Field(default_factory=list)
    target: str | None = None
    positive: str | int | float | bool | None = None
    max_parity_amplification: float | None = Field(0.05, ge=0)
    max_representation_shift: float | None = Field(0.05, ge=0)
    max_parity_difference: float | None = Field(None, ge=0)
    min_parity_ratio: float | None = Field(None, ge=0, le=1)
    # Set it to compare the equalized-odds difference of a classifier trained on the window's rows with one
    # trained on the training rows (both tested on held-out training rows). The window then keeps every column,
    # not just the audited ones, and each audit trains two classifiers: opt-in.
    max_equalized_odds_increase: float | None = Field(None, ge=0)
    classifier: Literal["logistic", "hgb"] = "logistic"


class TableWindowPolicy(_WindowPolicy):
    id = "fairness-table"
    modalities = frozenset({"table"})
    Options = TableWindowOptions
    unit = "row"

    def _plan(self, context: GenerationContext) -> dict[str, Any] | None:
        schema = getattr(context.model, "schema", None)
        declared = [c.name for c in schema.columns if c.sensitive] if schema is not None else []
        sensitive = list(self.options.sensitive) or declared
        target = self.options.target or (schema.target if schema is not None else None)
        if not sensitive or not target:
            lack = "sensitive columns" if not sensitive else "a target column"
            self._missing(f"no {lack} configured (options sensitive=[...], target=...) nor declared by the model")
            return None
        audited = [*sensitive, target]
        # Equalized odds needs the classifier's features: every column the training reference can give back.
        features = reference_columns(context.model) if self.options.max_equalized_odds_increase is not None else []
        kept = audited + [c for c in features if c not in audited]
        return {"sensitive": sensitive, "target": target, "audited": audited, "kept": kept}

    def _units(self, outputs: list[Output], context: GenerationContext, plan: dict[str, Any]) -> tuple[list[Any], int]:
        frames = [o.frame for o in outputs if hasattr(o, "frame")]
        rows = sum(len(f) for f in frames)
        if set(context.request.conditions) & set(plan["audited"]):
            return [], rows
        missing = [c for f in frames for c in plan["kept"] if c not in f.columns]
        if missing:
            raise DataError(f"generated tables lack the audited column(s) {sorted(set(missing))}")
        return self._merge([f[plan["kept"]] for f in frames]) if frames else [], 0

    def _slice(self, chunk: Any, start: int, stop: int | None) -> Any:
        return chunk.iloc[start:stop]

    def _merge(self, chunks: list[Any]) -> Any:
        import pandas as pd

        return pd.concat(chunks, ignore_index=True)

    def _audit(self, window: Any, plan: dict[str, Any], context: GenerationContext) -> dict[str, Any]:
        from gensdk_fairness.tables import audit_tables

        synthetic = window
        real = reference_frame(context.model, plan["kept"])
        opts = self.options
        if real is None:
            return _absolute_table_audit(synthetic, plan, opts)
        thresholds = {k: getattr(opts, k) for k in ("max_parity_amplification", "max_representation_shift",
                                                      "max_parity_difference", "min_parity_ratio",
                                                      "max_equalized_odds_increase")}
        classifier = None if opts.max_equalized_odds_increase is None else opts.classifier
        audit = audit_tables(real, synthetic, sensitive=plan["sensitive"], target=plan["target"], positive=opts.positive,
                             thresholds=thresholds, classifier=classifier,
                             n_boot=opts.bootstrap, seed=opts.seed, min_ci_rows=opts.min_ci_rows,
                             sources={"real": "model training reference", "synthetic": "window of generated rows"})
        return audit.to_dict()


def reference_columns(model: Any) -> list[str]:
    """The columns `reference_frame` can decode for this model: its numeric and categorical ones; none when
    the model kept no training reference."""
    getter = getattr(model, "training_reference", None)
    reference = getter() if callable(getter) else None
    if reference is None or getattr(reference, "training", None) is None:
        return []
    return [c.name for c in reference.schema.columns if c.numeric or c.categories]


def reference_frame(model: Any, columns: list[str]) -> Any:
    """The training rows' values of `columns`, decoded from the model's memorisation reference (encoded
    numbers, then one-hot blocks per categorical column); None when the model kept no reference."""
    import pandas as pd

    getter = getattr(model, "training_reference", None)
    reference = getter() if callable(getter) else None
    if reference is None or getattr(reference, "training", None) is None:
        return None
    schema = reference.schema
    numeric = [c.name for c in schema.columns if c.numeric]
    offsets, at = {}, len(numeric)
    for col in schema.columns:
        if not col.numeric:
            offsets[col.name] = (at, col)
            at += len(col.categories)
    data = {}
    for name in columns:
        if name in numeric:
            i = numeric.index(name)
            data[name] = reference.training[:, i].astype(np.float64) * reference.scale[i] + reference.center[i]
        elif name in offsets:
            start, col = offsets[name]
            block = reference.training[:, start : start + len(col.categories)]
            data[name] = np.asarray(col.categories, dtype=object)[block.argmax(axis=1)]
        else:
            raise DataError(f"the model's training data has no column {name!r}")
    return pd.DataFrame(data)


def _absolute_table_audit(synthetic: Any, plan: dict[str, Any], opts: TableWindowOptions) -> dict[str, Any]:
    """Without the training data only the window itself can be judged: its parity difference and ratio."""
    from gensdk_fairness.groups import binarize, encode_groups
    from gensdk_fairness.tables import dataset_rates

    groups = encode_groups(synthetic[plan["sensitive"]])
    y = binarize(synthetic[plan["target"]], opts.positive, f"target {plan['target']!r}")
    rates = dataset_rates(groups, y, "window", n_boot=opts.bootstrap, level=0.95, seed=opts.seed, min_rows=opts.min_ci_rows)
    checks = []
    if opts.max_parity_difference is not None:
        checks.append(at_most("parity_difference", rates["dp_difference"], opts.max_parity_difference,
                              "demographic-parity difference of the window", rates["dp_difference_ci"]))
    if opts.min_parity_ratio is not None:
        checks.append(at_least("parity_ratio", rates["dp_ratio"], opts.min_parity_ratio,
                               "demographic-parity ratio of the window", rates["dp_ratio_ci"]))
    notes = [*rates["notes"], "the model kept no training reference: amplification, representation shift and equalized odds "
             "against the training data are not measured"]
    keys = ("dp_difference", "dp_difference_ci", "dp_ratio", "dp_ratio_ci", "overall_rate")
    return json_safe({"kind": "table-window", "verdict": overall_verdict(checks), "selection_rates": rates["by_group"],
                      "parity": {"synthetic": {k: rates[k] for k in keys}}, "checks": [c.to_dict() for c in checks],
                      "notes": notes})


# -- text -------------------------------------------------------------------------------------------------


class TextWindowOptions(WindowOptions):
    window: int = Field(200, ge=2, le=10_000_000)
    # Prompts are credited to a group by exact match with a prompt set ("builtin" or a JSONL file), else by
    # the group terms they mention (default: the built-in set's group words), one group per domain.
    prompt_set: str = "builtin"
    group_terms: dict[str, dict[str, list[str]]] | None = None
    scorers: list[str] = Field(default_factory=lambda: list(DEFAULT_SCORERS))
    max_disparity: dict[str, float] = Field(
        default_factory=lambda: {"sentiment": 0.1, "toxicity": 0.05, "refusal": 0.05, "length": 10.0})
    alpha: float | None = Field(0.05, gt=0, lt=1)
    permutations: int = Field(1000, ge=100, le=1_000_000)


class TextWindowPolicy(_WindowPolicy):
    id = "fairness-text"
    modalities = frozenset({"text"})
    Options = TextWindowOptions

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from gensdk_fairness.prompts import GROUPS, PromptSet, builtin_prompts
        from gensdk_fairness.scorers import resolve_scorers

        opts = self.options
        resolve_scorers(opts.scorers)  # a misnamed scorer is a start-up error
        self._prompts = (builtin_prompts() if opts.prompt_set == "builtin" else PromptSet.read(opts.prompt_set)).lookup()
        terms = opts.group_terms or {d: {g: [phrase] for g, phrase in groups.items()} for d, groups in GROUPS.items()}
        self._matchers = _term_matchers(terms)

    def _plan(self, context: GenerationContext) -> bool:
        return True

    def _units(self, outputs: list[Output], context: GenerationContext, plan: Any) -> tuple[list[Any], int]:
        # Engine.stream checks a completion as it grows, each time with the same context, and (until it marks
        # those checks PARTIAL_CHECK) nothing tells the last check from the others. So the completion is one
        # unit, counted at its first check, whose text each later check replaces: a window that closes later
        # sees the final text; one that closes during the stream, the text so far.
        earlier = context.state.get(f"{self.id}:units")
        if earlier is not None:
            for unit, output in zip(earlier, outputs):
                if unit is not None:
                    unit["text"] = output.text  # type: ignore[attr-defined]
            return [], 0
        units = []
        for output in outputs:
            found = self._group_of(getattr(output, "prompt", None) or "")
            units.append(None if found is None else {"domain": found[0], "group": found[1], "text": output.text})  # type: ignore[attr-defined]
        context.state[f"{self.id}:units"] = units
        return [u for u in units if u is not None], sum(u is None for u in units)

    def _group_of(self, prompt: str) -> tuple[str, str] | None:
        entry = self._prompts.get(prompt)
        if entry is not None:
            return entry.domain, entry.group
        hits = [(domain, group) for domain, groups in self._matchers.items()
                for group, pattern in groups.items() if pattern.search(prompt)]
        return hits[0] if len(hits) == 1 else None  # several groups named: not a counterfactual prompt

    def _audit(self, window: list[Any], plan: Any, context: GenerationContext) -> dict[str, Any]:
        from gensdk_fairness.text import audit_texts

        opts = self.options
        domains: dict[str, set[str]] = {}
        for unit in window:
            domains.setdefault(unit["domain"], set()).add(unit["group"])
        if not any(len(g) >= 2 for g in domains.values()):
            return {"kind": "text-window", "verdict": "pass", "checks": [],
                    "notes": [f"no domain has two groups in this window ({ {d: sorted(g) for d, g in domains.items()} }): "
                              "nothing to compare"]}
        audit = audit_texts(window, scorers=opts.scorers, thresholds={"max_disparity": opts.max_disparity, "alpha": opts.alpha},
                            prompt_set=opts.prompt_set, n_boot=opts.bootstrap, n_permutations=opts.permutations,
                            seed=opts.seed, min_group_outputs=opts.min_ci_rows)
        return audit.to_dict()


def _term_matchers(terms: dict[str, dict[str, list[str]]]) -> dict[str, dict[str, Any]]:
    import re

    return {domain: {group: re.compile(r"\b(?:" + "|".join(re.escape(w) for w in words) + r")\b", re.IGNORECASE)
                     for group, words in groups.items() if words}
            for domain, groups in terms.items()}


# -- images -----------------------------------------------------------------------------------------------


class ImageWindowOptions(WindowOptions):
    window: int = Field(500, ge=2, le=10_000_000)
    # A built-in name ("digits") or "package.module:attribute"; None: not configured (see missing_attributes).
    classifier: str | None = None
    target: str | dict[str, float] = "uniform"
    max_tvd: float = Field(0.1, ge=0, le=1)


class ImageWindowPolicy(_WindowPolicy):
    id = "fairness-image"
    modalities = frozenset({"image"})
    Options = ImageWindowOptions
    unit = "image"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.options.classifier is not None:
            from gensdk_fairness.images import resolve_classifier, target_shares

            target_shares(self.options.target, resolve_classifier(self.options.classifier).classes)

    def _plan(self, context: GenerationContext) -> Any:
        if self.options.classifier is None:
            self._missing("no attribute classifier configured (options classifier='digits' or 'module:attribute')")
            return None
        from gensdk_fairness.images import resolve_classifier

        return resolve_classifier(self.options.classifier)

    def _units(self, outputs: list[Output], context: GenerationContext, plan: Any) -> tuple[list[Any], int]:
        from gensdk_fairness.images import _as_numpy

        images = [o for o in outputs if hasattr(o, "pixels")]
        if context.request.conditions:  # a requested class: the request chose the attribute, not the model
            return [], len(images)
        return [_as_numpy(o.pixels) for o in images], 0  # type: ignore[attr-defined]

    def _audit(self, window: list[Any], plan: Any, context: GenerationContext) -> dict[str, Any]:
        from gensdk_fairness.images import audit_images

        opts = self.options
        return audit_images(np.stack(window), plan, target=opts.target, max_tvd=opts.max_tvd, n_boot=opts.bootstrap,
                            seed=opts.seed).to_dict()
