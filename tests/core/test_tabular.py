"""Tables in and out: CSV reading errors, schema inference, restore() and the training-data fingerprint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gensdk.errors import DataError, RequestError
from gensdk.tabular import MAX_CATEGORIES, TableSchema, fingerprint, read_table


def mixed_frame() -> pd.DataFrame:
    return pd.DataFrame({
        "age": [23, 35, 41, 58],
        "score": [0.5, 1.25, -3.0, 2.0],
        "city": ["Oslo", "Lima", "Oslo", "Accra"],
        "member": [True, False, True, True],
    })


# -- inference --------------------------------------------------------------------------------------------------

def test_infers_each_kind_with_ranges_and_categories() -> None:
    schema = TableSchema.infer(mixed_frame())
    by_name = {c.name: c for c in schema.columns}
    assert schema.names == ["age", "score", "city", "member"]
    assert (by_name["age"].kind, by_name["age"].minimum, by_name["age"].maximum) == ("integer", 23, 58)
    assert (by_name["score"].kind, by_name["score"].minimum, by_name["score"].maximum) == ("continuous", -3.0, 2.0)
    assert by_name["city"].kind == "categorical" and by_name["city"].categories == ["Accra", "Lima", "Oslo"]
    assert by_name["member"].kind == "boolean" and by_name["member"].categories == [False, True]
    assert [c.numeric for c in schema.columns] == [True, True, False, False]


def test_infers_the_same_kinds_from_a_csv(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("age, score, city, member\n23, 0.5, Oslo, True\n35, 1.25, Lima, False\n")
    frame = read_table(path)
    assert list(frame.columns) == ["age", "score", "city", "member"]  # skipinitialspace: no " score"
    kinds = [c.kind for c in TableSchema.infer(frame).columns]
    assert kinds == ["integer", "continuous", "categorical", "boolean"]
    assert frame["city"].tolist() == ["Oslo", "Lima"]


def test_schema_json_round_trip() -> None:
    schema = TableSchema.infer(mixed_frame())
    again = TableSchema.from_json(json.loads(json.dumps(schema.to_json())))
    assert again == schema


# -- read_table errors ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'a,b\n1,"never closed\n2,y\n', "not a readable CSV"),
        (b"a,b\n1,x\n2,y,z,w\n", "not a readable CSV"),
        (bytes(range(128, 256)) * 20, "not a readable CSV"),
        (b"", "is empty"),
        (b"a,b,c\n", r"is empty \(0 rows, 3 columns\)"),
    ],
    ids=["open-quote", "ragged-row", "binary", "empty-file", "header-only"],
)
def test_unreadable_csvs_are_data_errors_naming_the_file(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as info:
        read_table(path)
    assert str(path) in str(info.value)


def test_missing_file_and_duplicate_columns(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        read_table(tmp_path / "nope.csv")
    frame = pd.DataFrame([[1, 2]], columns=["a", "a"])
    with pytest.raises(DataError, match=r"duplicate column names: \['a'\]"):
        read_table(frame)
    with pytest.raises(DataError, match="empty"):
        read_table(pd.DataFrame())


def test_dataframes_pass_through_unchanged() -> None:
    frame = mixed_frame()
    assert read_table(frame) is frame


# -- inference errors -------------------------------------------------------------------------------------------

def test_missing_values_name_each_column_and_count() -> None:
    frame = mixed_frame()
    frame.loc[[0, 2], "score"] = np.nan
    frame.loc[1, "city"] = None
    with pytest.raises(DataError) as info:
        TableSchema.infer(frame)
    message = str(info.value)
    assert "'score' (2 rows)" in message and "'city' (1 rows)" in message
    assert "age" not in message


def test_mixed_python_types_are_rejected() -> None:
    frame = pd.DataFrame({"code": pd.Series([1, "a", 2.5, "b"], dtype=object)})
    with pytest.raises(DataError, match=r"column 'code' mixes value types \(float, int, str\)"):
        TableSchema.infer(frame)


def test_numbers_with_a_few_words_in_a_csv_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("age\n" + "\n".join(["31", "45", "?", "52", "unknown", "28"] * 10) + "\n")
    with pytest.raises(DataError, match=r"column 'age' mixes numbers and text \(20 of 60 .*'\?', 'unknown'"):
        TableSchema.infer(read_table(path))


def test_text_with_some_numbers_is_still_a_category() -> None:
    frame = pd.DataFrame({"grade": ["10th", "Bachelors", "9", "Masters"] * 5})
    assert TableSchema.infer(frame).columns[0].kind == "categorical"


def test_identifier_columns_are_rejected() -> None:
    frame = pd.DataFrame({"id": [f"user-{i:05d}" for i in range(MAX_CATEGORIES + 1)]})
    with pytest.raises(DataError, match=rf"'id' has {MAX_CATEGORIES + 1} distinct values: it looks like an identifier"):
        TableSchema.infer(frame)


def test_date_columns_are_rejected_from_a_frame_and_from_a_csv(tmp_path: Path) -> None:
    frame = pd.DataFrame({"day": pd.date_range("2024-01-01", periods=12, freq="MS"), "x": range(12)})
    with pytest.raises(DataError, match="column 'day' holds dates"):
        TableSchema.infer(frame)
    frame.to_csv(tmp_path / "d.csv", index=False)  # read back, the dates are text
    with pytest.raises(DataError, match="column 'day' holds dates"):
        TableSchema.infer(read_table(tmp_path / "d.csv"))


# -- condition values -------------------------------------------------------------------------------------------

def test_check_value_types_and_known_categories() -> None:
    schema = TableSchema.infer(mixed_frame())
    assert schema.check_value("age", 30) == 30.0 and isinstance(schema.check_value("age", 30), float)
    assert schema.check_value("city", "Lima") == "Lima"
    assert schema.check_value("member", True) is True
    with pytest.raises(RequestError, match="numeric column 'age' must be a number"):
        schema.check_value("age", "30")
    with pytest.raises(RequestError, match="numeric column 'age'"):
        schema.check_value("age", True)
    with pytest.raises(RequestError, match="column 'city' has no category 'Paris'; known: 'Accra', 'Lima', 'Oslo'"):
        schema.check_value("city", "Paris")
    with pytest.raises(RequestError, match="unknown column 'town'; the table has: age, score, city, member"):
        schema.check_value("town", "Oslo")


# -- restore ----------------------------------------------------------------------------------------------------

def test_restore_rounds_clips_casts_and_reorders() -> None:
    schema = TableSchema.infer(mixed_frame())
    raw = pd.DataFrame({
        "member": np.array([1.0, 0.0, 1.0]).astype(bool),
        "city": ["Oslo", "Lima", "Accra"],
        "score": [9.9, -7.0, 0.3333],
        "age": [22.6, 40.4, 99.0],
    })
    out = schema.restore(raw)
    assert list(out.columns) == ["age", "score", "city", "member"]
    assert out["age"].tolist() == [23, 40, 58]  # rounded, then the 58 maximum
    assert out["age"].dtype == np.int64
    assert out["score"].tolist() == [2.0, -3.0, 0.3333]  # clipped, not rounded
    assert out["score"].dtype == np.float64
    assert out["member"].dtype == bool


def test_restore_clips_below_the_minimum() -> None:
    schema = TableSchema.infer(mixed_frame())
    out = schema.restore(pd.DataFrame({"age": [-5.0], "score": [0.0], "city": ["Oslo"], "member": [False]}))
    assert out["age"].tolist() == [23]


# -- fingerprint ------------------------------------------------------------------------------------------------

def test_fingerprint_is_stable() -> None:
    first = fingerprint(mixed_frame())
    assert first == fingerprint(mixed_frame()) == fingerprint(mixed_frame().copy())
    assert len(first) == 64 and int(first, 16) >= 0


def test_fingerprint_ignores_the_index() -> None:
    moved = mixed_frame()
    moved.index = [10, 11, 12, 13]
    assert fingerprint(moved) == fingerprint(mixed_frame())


def test_fingerprint_is_order_and_content_sensitive() -> None:
    base = fingerprint(mixed_frame())
    assert fingerprint(mixed_frame().iloc[::-1].reset_index(drop=True)) != base  # rows reordered
    assert fingerprint(mixed_frame()[["score", "age", "city", "member"]]) != base  # columns reordered
    assert fingerprint(mixed_frame().rename(columns={"age": "years"})) != base  # a column renamed
    changed = mixed_frame()
    changed.loc[3, "city"] = "Lima"
    assert fingerprint(changed) != base  # one cell changed
    assert fingerprint(mixed_frame().iloc[:3]) != base  # a row dropped
