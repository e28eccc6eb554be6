"""The reversible table encoding (mode-specific normalisation, one-hot, missing cells, dates), the conditional
vector with training-by-sampling, conditioned rejection sampling and the coverage report."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gensdk.errors import DataError, GenerationError, RequestError
from gensdk.tabular import TableSchema
from gensdk.tabular_transform import ConditionSampler, TableTransform, check_conditions, conditioned_rows, coverage_report


def mixed(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    bimodal = np.where(rng.random(n) < 0.7, rng.normal(0, 1, n), rng.normal(50, 5, n))
    return pd.DataFrame({
        "income": bimodal,
        "age": rng.integers(18, 90, n),
        "city": rng.choice(["Oslo", "Lima", "Pune"], n, p=[0.6, 0.3, 0.1]),
        "member": rng.random(n) < 0.4,
        "joined": pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 1000, n), unit="D"),
    })


def fitted(frame: pd.DataFrame, **kwargs) -> TableTransform:
    schema = TableSchema.infer(frame, allow_missing=True, allow_datetime=True, **kwargs)
    return TableTransform.fit(frame, schema, seed=0)


def test_round_trip_restores_values_dtypes_and_column_order() -> None:
    frame = mixed()
    transform = fitted(frame)
    x = transform.encode(frame, np.random.default_rng(0))
    assert x.dtype == np.float32 and x.shape == (400, transform.width)
    back = transform.decode(x)
    assert list(back.columns) == list(frame.columns) and (back.dtypes == frame.dtypes).all()
    assert np.allclose(back["income"], frame["income"], atol=1e-3 * frame["income"].std())
    assert (back["age"] == frame["age"]).all() and (back["city"] == frame["city"]).all()
    assert (back["member"] == frame["member"]).all() and (back["joined"] == frame["joined"]).all()


def test_spans_are_tanh_scalars_and_one_hot_blocks() -> None:
    frame = mixed()
    transform = fitted(frame)
    x = transform.encode(frame)
    for span in transform.spans:
        block = x[:, span.start : span.stop]
        if span.activation == "tanh":
            assert span.width == 1 and np.abs(block).max() < 1
        else:
            assert np.array_equal(block.sum(axis=1), np.ones(len(frame))) and set(np.unique(block)) == {0.0, 1.0}
    income = next(c for c in transform.codecs if c.name == "income")
    assert 2 <= len(income.means) <= 10  # the mixture found the two modes (and maybe split them further)


def test_missing_cells_are_encoded_and_restored_at_the_training_rate() -> None:
    frame = mixed()
    frame["age"] = frame["age"].astype(float)
    frame.loc[::4, "age"] = np.nan
    frame.loc[::5, "city"] = None
    schema = TableSchema.infer(frame, allow_missing=True, allow_datetime=True)
    assert schema.column("age").kind == "integer" and schema.column("age").missing == 100
    transform = TableTransform.fit(frame, schema)
    back = transform.decode(transform.encode(frame))
    assert back["age"].isna().sum() == 100 and back["city"].isna().sum() == 80
    filled = transform.decode(transform.encode(frame), allow_missing=False)
    assert filled["age"].notna().all() and filled["city"].notna().all()


def test_dates_written_as_text_come_back_as_text() -> None:
    frame = pd.DataFrame({"day": [f"2024-03-{d:02d}" for d in range(1, 29)] * 2, "x": range(56)})
    transform = fitted(frame)
    assert transform.schema.column("day").kind == "datetime"
    back = transform.decode(transform.encode(frame))
    assert back["day"].tolist() == frame["day"].tolist()


def test_the_default_schema_still_refuses_missing_cells_and_dates() -> None:
    frame = mixed()
    with pytest.raises(DataError, match="column 'joined' holds dates"):
        TableSchema.infer(frame)
    frame.loc[0, "city"] = None
    with pytest.raises(DataError, match="missing values in 'city'"):
        TableSchema.infer(frame.drop(columns="joined"))


def test_declared_roles_are_kept_and_unknown_ones_named() -> None:
    schema = TableSchema.infer(mixed(), allow_datetime=True, sensitive=["city"], target="member")
    assert schema.column("city").sensitive and schema.target == "member"
    again = TableSchema.from_json(schema.to_json())
    assert again.column("member").target
    with pytest.raises(DataError, match="sensitive column 'gender' is not in the table"):
        TableSchema.infer(mixed(), allow_datetime=True, sensitive=["gender"])


@pytest.mark.parametrize(("column", "values", "message"), [
    ("empty", np.nan, "column 'empty' has no values"),
    ("flat", 3, "column 'flat' holds one value \\(3\\)"),
])
def test_columns_with_nothing_to_learn_are_named(column, values, message) -> None:
    frame = mixed().assign(**{column: values})
    with pytest.raises(DataError, match=message):
        fitted(frame)


def test_unseen_categories_are_named_at_encoding() -> None:
    transform = fitted(mixed())
    rows = mixed(5, seed=1)
    rows.loc[2, "city"] = "Rome"
    with pytest.raises(DataError, match="column 'city' has the category 'Rome'"):
        transform.encode(rows)


def test_training_by_sampling_flattens_rare_categories() -> None:
    frame = mixed(2000)
    transform = fitted(frame)
    x = transform.encode(frame)
    sampler = ConditionSampler(transform, x)
    cond, entry, rows = sampler.sample_train(4000, np.random.default_rng(0))
    city = transform.span_of("city")
    j = [c.name for c, _ in sampler.columns].index("city")
    asked = entry[(entry >= sampler.offsets[j]) & (entry < sampler.offsets[j + 1])] - sampler.offsets[j]
    share_pune = (asked == 2).mean()
    assert share_pune > 0.2  # ~10% of the rows, but drawn by log frequency
    picked = x[rows][:, city.start : city.stop].argmax(1)
    chosen = (entry >= sampler.offsets[j]) & (entry < sampler.offsets[j + 1])
    assert np.array_equal(picked[chosen], entry[chosen] - sampler.offsets[j])  # real rows have the category asked for
    assert np.array_equal(cond.sum(1), np.ones(4000))


def test_conditions_and_rejection_sampling() -> None:
    schema = TableSchema.infer(mixed(), allow_datetime=True)
    assert check_conditions(schema, {"city": "Lima", "member": "True"}) == {"city": "Lima", "member": True}
    with pytest.raises(RequestError, match="condition on continuous column 'income'"):
        check_conditions(schema, {"income": 3})
    with pytest.raises(RequestError, match="column 'city' has no category 'Rome'"):
        check_conditions(schema, {"city": "Rome"})
    source = mixed(4000)
    rows = conditioned_rows(lambda n, r: source.sample(n, random_state=r, replace=True), {"city": "Pune"}, 50)
    assert len(rows) == 50 and (rows["city"] == "Pune").all()
    with pytest.raises(GenerationError, match="only 0 of 5 rows with city='Rome'"):
        conditioned_rows(lambda n, r: source.head(n), {"city": "Rome"}, 5, max_rounds=3)


def test_a_rare_combination_is_reached_in_few_rounds_with_bounded_draws() -> None:
    """One row in 2,000 meets the condition: fixed-size rounds (2 x 64 rows each) would find ~3 rows in 50
    rounds; rounds sized from the acceptance rate find all 40 in a handful, never drawing more than MAX_DRAW."""
    from gensdk.tabular_transform import MAX_DRAW

    draws: list[int] = []

    def sample(count: int, round_: int) -> pd.DataFrame:
        draws.append(count)
        return pd.DataFrame({"code": np.random.default_rng(round_).integers(0, 2000, count)})

    rows = conditioned_rows(sample, {"code": 7}, 40)
    assert len(rows) == 40 and (rows["code"] == 7).all()
    assert len(draws) <= 8 and max(draws) <= MAX_DRAW
    assert conditioned_rows(sample, {"code": 7}, 40).equals(rows)  # the same rounds again: the same rows


def test_coverage_report_names_categories_never_generated() -> None:
    real = mixed()
    schema = TableSchema.infer(real, allow_datetime=True)
    collapsed = real.assign(city="Oslo")
    report = coverage_report(schema, real, collapsed)
    city = report["columns"]["city"]
    assert city["covered"] == 1 and sorted(city["not_generated"]) == ["Lima", "Pune"]
    assert city["total_variation"] == pytest.approx(1 - (real["city"] == "Oslo").mean(), abs=1e-3)
    assert coverage_report(schema, real, real)["mean_coverage"] == 1.0
