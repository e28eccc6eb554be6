"""Fairness-aware generation: sample a table whose demographic-parity gap is within a target.

    sample = fair_generate(engine, "models/adult-gmm", n=10_000, sensitive=["sex"], target="income",
                           positive=">50K", max_difference=0.01, reference=real)
    sample.frame                 # released rows, every one through the engine's policies and audit trail
    sample.before, sample.after  # group shares, selection rates and parity of a plain vs the fair sample
    sample.quality               # what it cost: marginal and association distances to the reference

How: a plain sample of `n` rows shows the model's group shares s_g, selection rates r_g and overall rate m.
The fair sample keeps the shares and moves each group's rate the least it must: r'_g = clip(r_g, m - h, m + h),
with the band half-width h chosen so that, after rounding rows to whole numbers, every pair of groups differs
by at most `max_difference`. Each (group, label) cell is then filled:

* ``method="conditional"`` (conditional families: GMM, GAN, VAE): one `Engine.generate` call per cell with
  `conditions={sensitive..., target: label}`; the families make conditions hold exactly. A neural family's
  rejection sampler can run out of rounds on a combination the model rarely makes; that cell is then filled
  from larger requests conditioned on the target label alone, keeping the rows of the cell's group.
* ``method="resample"`` (any table family): rows are picked per cell from unconditional samples, drawing more
  (at most `max_rounds` times) when a cell runs short.

Every generation goes through the engine (policies, audit trail); a summary record of kind
``fairness-sampling`` ties the generation records together with the before/after figures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

import numpy as np

from gensdk.errors import DataError, GenerationError, RequestError
from gensdk.family import ModelFamily, Progress
from gensdk_fairness.checks import json_safe
from gensdk_fairness.groups import binarize, encode_groups, sensitive_frame
from gensdk_fairness.metrics import GroupMetrics, cell_counts
from gensdk_fairness.quality import quality_distances

__all__ = ["FairSample", "describe", "fair_generate", "plan_counts"]

Method = Literal["auto", "conditional", "resample"]

# Smallest and largest request when a cell is filled from target-conditioned rows (see _generate_cell).
PARTIAL_REQUEST_ROWS = 2000
MAX_PARTIAL_REQUEST_ROWS = 500_000


@dataclass
class FairSample:
    frame: Any
    before: dict[str, Any]
    after: dict[str, Any]
    plan: dict[str, Any]
    quality: dict[str, Any]
    max_difference: float
    method: str
    record_ids: list[str] = field(default_factory=list)
    summary_record: dict[str, Any] | None = None

    @property
    def met(self) -> bool:
        return self.after["dp_difference"] <= self.max_difference + 1e-12

    def to_dict(self) -> dict[str, Any]:
        return json_safe({"kind": "fairness-sampling", "max_difference": self.max_difference, "met": self.met,
                          "method": self.method, "rows": len(self.frame), "before": self.before, "after": self.after,
                          "plan": self.plan, "quality": self.quality, "generation_records": self.record_ids})


def fair_generate(engine: Any, model: Any, n: int, *, sensitive: str | Sequence[str], target: str, positive: Any,
                  max_difference: float = 0.01, method: Method = "auto", reference: Any = None, seed: int = 0,
                  max_rounds: int = 10, progress: Progress | None = None) -> FairSample:
    """`n` rows through `engine` whose parity difference over `sensitive` is at most `max_difference`."""
    columns = [sensitive] if isinstance(sensitive, str) else list(sensitive)
    if not 0 <= max_difference < 1:
        raise RequestError(f"max_difference must lie in [0, 1), not {max_difference}")
    family = model if isinstance(model, ModelFamily) else engine.load_model(model)
    method = _choose_method(family, method)
    records: list[str] = []
    plain = _generate(engine, family, n, _seed(seed, 0), {}, records)
    before = describe(plain, columns, target, positive)
    plan = plan_counts(before, n, max_difference)
    if progress:
        progress(1, 3, "plain sample measured")
    fill = _fill_conditional if method == "conditional" else _fill_resample
    frame = fill(engine, family, plan, columns, target, positive, _negative_label(family, plain, target, positive),
                 plain, seed, max_rounds, records)
    frame = frame.iloc[np.random.default_rng(seed).permutation(len(frame))].reset_index(drop=True)
    if progress:
        progress(2, 3, "fair sample generated")
    after = describe(frame, columns, target, positive)
    quality = _quality(reference, plain, frame)
    sample = FairSample(frame, before, after, plan, quality, max_difference, method, records)
    sample.summary_record = engine.record_event("fairness-sampling", {**sample.to_dict(), "model": family.identity()})
    if progress:
        progress(3, 3, f"parity difference {before['dp_difference']:.4f} -> {after['dp_difference']:.4f}")
    return sample


def _choose_method(family: Any, method: Method) -> str:
    if family.modality != "table":
        raise RequestError(f"fairness-aware sampling needs a table model; {family.id!r} generates {family.modality}")
    if method == "auto":
        return "conditional" if family.conditional else "resample"
    if method == "conditional" and not family.conditional:
        raise RequestError(f"model family {family.id!r} cannot condition; use method='resample'")
    return method


def _seed(seed: int, index: int) -> int:
    """Independent, reproducible seeds for the plain sample and each cell."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1, np.uint64)[0] >> 1)


def _generate(engine: Any, family: Any, n: int, seed: int, conditions: dict[str, Any], records: list[str]) -> Any:
    """Rows through the engine; anything blocked stops the sampling (fail closed)."""
    result = engine.generate(family, n=n, seed=seed, conditions=conditions)
    records.append(result.audit_record_id)
    result.raise_for_verdict()
    return result.table()


def describe(frame: Any, columns: list[str], target: str, positive: Any) -> dict[str, Any]:
    """Group shares, selection rates and parity of a table (the before / after figures)."""
    groups = encode_groups(sensitive_frame(frame, columns, "sample"))
    if target not in frame.columns:
        raise DataError(f"target column {target!r} is not in the generated table")
    y = binarize(frame[target], positive, f"target {target!r}")
    metrics = GroupMetrics(groups, cell_counts(groups, y, y))
    counts = metrics.rates["count"]
    return {
        "rows": len(frame), "columns": columns,
        "labels": [list(label) if isinstance(label, tuple) else [label] for label in groups.labels],
        "groups": {name: {"count": int(c), "share": float(c / counts.sum()), "selection_rate": float(r)}
                   for name, c, r in zip(groups.names, counts, metrics.rates["selection_rate"])},
        "overall_rate": float(metrics.rates["selection_rate_overall"]),
        "dp_difference": metrics.demographic_parity_difference, "dp_ratio": metrics.demographic_parity_ratio,
    }


def plan_counts(before: dict[str, Any], n: int, max_difference: float) -> dict[str, Any]:
    """Rows and positive rows per group: shares kept, rates clipped into a band around the overall rate."""
    names = list(before["groups"])
    shares = np.array([before["groups"][g]["share"] for g in names])
    rates = np.array([before["groups"][g]["selection_rate"] for g in names])
    sizes = _largest_remainder(shares, n)
    if len(names) < 2:
        raise DataError(f"the model generated one group only ({names[0]!r}): there is no parity to adjust")
    smallest = int(sizes.argmin())
    if sizes[smallest] == 0 or 1 / sizes[smallest] > max_difference:
        need = int(np.ceil(1 / (max_difference * shares[smallest]))) if max_difference > 0 else None
        hint = f"ask for at least {need} rows or" if need else "parity within 0 is not reachable in whole rows;"
        raise RequestError(f"group {names[smallest]!r} would get {sizes[smallest]} of {n} rows: too few to hold its "
                           f"selection rate within {max_difference} of the others ({hint} a looser max_difference)")
    # Rounding each group's positives moves its rate by at most 1/(2 n_g): keep that much room in the band.
    half = max(0.0, max_difference / 2 - 1 / (2 * sizes.min()))
    overall = float(before["overall_rate"])
    planned = np.clip(rates, overall - half, overall + half)
    positives = np.rint(sizes * planned).astype(int)
    return {"groups": {g: {"rows": int(s), "positives": int(p), "rate_before": float(r), "rate_planned": float(p / s)}
                       for g, s, p, r in zip(names, sizes, positives, rates)},
            "labels": before["labels"], "band": [overall - half, overall + half]}


def _largest_remainder(shares: np.ndarray, n: int) -> np.ndarray:
    raw = shares * n
    sizes = np.floor(raw).astype(int)
    sizes[np.argsort(raw - sizes)[::-1][: n - sizes.sum()]] += 1
    return sizes


def _negative_label(family: Any, plain: Any, target: str, positive: Any) -> Any:
    """The target's other value, from the model's schema (or the plain sample)."""
    schema = getattr(family, "schema", None)
    values = [c for c in schema.column(target).categories] if schema is not None else list(plain[target].unique())
    others = [v for v in values if str(v) != str(positive)]
    if len(others) != 1:
        raise DataError(f"target {target!r} takes the values {sorted(map(str, values))}: fairness-aware sampling "
                        "needs a binary target")
    return others[0]


def _cells(plan: dict[str, Any], columns: list[str], target: str, positive: Any, negative: Any) -> list[tuple[dict[str, Any], int]]:
    """(conditions, rows) for every (group, label) cell of the plan."""
    cells = []
    for (name, spec), label in zip(plan["groups"].items(), plan["labels"]):
        group = dict(zip(columns, label))
        cells.append(({**group, target: positive}, spec["positives"]))
        cells.append(({**group, target: negative}, spec["rows"] - spec["positives"]))
    return [(cond, count) for cond, count in cells if count > 0]


def _fill_conditional(engine: Any, family: Any, plan: dict[str, Any], columns: list[str], target: str, positive: Any,
                      negative: Any, plain: Any, seed: int, max_rounds: int, records: list[str]) -> Any:
    import pandas as pd

    parts = []
    for index, (conditions, count) in enumerate(_cells(plan, columns, target, positive, negative), start=1):
        rows = _generate_cell(engine, family, count, _seed(seed, index), conditions, target, max_rounds, records)
        for round_ in range(max_rounds):  # a policy may drop rows (memorisation): top the cell up
            if len(rows) >= count:
                break
            # Ask for more than is missing: what removed rows once will likely remove some again.
            extra = max(2 * (count - len(rows)), 16)
            more = _generate(engine, family, extra, _seed(seed, 1000 * index + round_), conditions, records)
            rows = pd.concat([rows, more], ignore_index=True)
        if len(rows) < count:
            raise GenerationError(f"only {len(rows)} of {count} rows with {conditions} were released after "
                                  f"{max_rounds} extra requests")
        parts.append(rows.iloc[:count])
    return pd.concat(parts, ignore_index=True)


def _generate_cell(engine: Any, family: Any, count: int, seed: int, conditions: dict[str, Any], target: str,
                   max_rounds: int, records: list[str]) -> Any:
    """One cell's rows. Neural families meet several conditions by rejection with a bounded number of rounds,
    and a combination the model rarely makes (the very rows a fair sample needs more of) can run out of them.
    Then the cell is filled from rows conditioned on its target label alone, which the model steers towards,
    keeping those whose sensitive values match: the same rows, found with larger requests."""
    import pandas as pd

    try:
        return _generate(engine, family, count, seed, conditions, records)
    except GenerationError:  # recorded in the trail by the engine; fall back below
        pass
    kept: list[Any] = []
    have = asked = 0
    size = max(4 * count, PARTIAL_REQUEST_ROWS)
    for round_ in range(max_rounds):
        rows = _generate(engine, family, size, _seed(seed, 50_000 + round_), {target: conditions[target]}, records)
        rows = rows[_matches_all(rows, conditions)]
        kept.append(rows)
        have, asked = have + len(rows), asked + size
        if have >= count:
            return pd.concat(kept, ignore_index=True).iloc[:count]
        # Size the next request by the share of rows that matched so far, with a quarter to spare.
        share = max(have / asked, 1 / MAX_PARTIAL_REQUEST_ROWS)
        size = int(min(max(1.25 * (count - have) / share, PARTIAL_REQUEST_ROWS), MAX_PARTIAL_REQUEST_ROWS))
    raise GenerationError(f"the model produced only {have} of {count} rows with {conditions} in {max_rounds} rounds "
                          "of target-conditioned requests: it almost never makes this combination")


def _matches_all(frame: Any, conditions: dict[str, Any]) -> np.ndarray:
    hit = np.ones(len(frame), dtype=bool)
    for name, value in conditions.items():
        hit &= frame[name].astype(str).to_numpy() == str(value)
    return hit


def _fill_resample(engine: Any, family: Any, plan: dict[str, Any], columns: list[str], target: str, positive: Any,
                   negative: Any, plain: Any, seed: int, max_rounds: int, records: list[str]) -> Any:
    import pandas as pd

    wanted = _cells(plan, columns, target, positive, negative)
    pool = plain
    for round_ in range(max_rounds):
        keys = _cell_keys(pool, [c for c, _ in wanted])
        have = np.bincount(keys[keys >= 0], minlength=len(wanted))
        if all(have[i] >= count for i, (_, count) in enumerate(wanted)):
            rng = np.random.default_rng(_seed(seed, 10_000 + round_))
            picks = [rng.choice(np.flatnonzero(keys == i), count, replace=False) for i, (_, count) in enumerate(wanted)]
            return pd.concat([pool.iloc[p] for p in picks], ignore_index=True)
        extra = _generate(engine, family, len(plain), _seed(seed, 20_000 + round_), {}, records)
        pool = pd.concat([pool, extra], ignore_index=True)
    short = [f"{c} ({have[i]} of {count})" for i, (c, count) in enumerate(wanted) if have[i] < count]
    raise GenerationError(f"after {max_rounds} extra samples the model still produced too few rows for {'; '.join(short)}")


def _cell_keys(frame: Any, conditions: list[dict[str, Any]]) -> np.ndarray:
    """Index of the cell each row belongs to, -1 for none."""
    keys = np.full(len(frame), -1)
    for i, cond in enumerate(conditions):
        keys[_matches_all(frame, cond)] = i
    return keys


def _quality(reference: Any, plain: Any, fair: Any) -> dict[str, Any]:
    """Distances to the real data when it is given (the cost is fair minus plain), else fair vs plain."""
    if reference is None:
        to_plain = quality_distances(plain, fair)
        return {"reference": "plain sample", "fair": _brief(to_plain), "cost": _brief(to_plain)}
    plain_q, fair_q = quality_distances(reference, plain), quality_distances(reference, fair)
    cost = {k: fair_q[k] - plain_q[k] for k in ("marginal_tvd", "association_distance")}
    return {"reference": "real data", "plain": _brief(plain_q), "fair": _brief(fair_q), "cost": cost}


def _brief(q: dict[str, Any]) -> dict[str, float]:
    return {k: q[k] for k in ("marginal_tvd", "association_distance")}
