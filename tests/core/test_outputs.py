"""Typed outputs: the canonical bytes the audit trail hashes, and writing released outputs to files."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gensdk import TableOutput, TextOutput, write_outputs
from gensdk.errors import RequestError


def frame() -> pd.DataFrame:
    return pd.DataFrame({"age": [39, 50], "income": [0.1, 2.5], "job": ["clerk", "chef, sous"]})


def test_same_table_gives_the_same_digest() -> None:
    first, second = TableOutput(frame()), TableOutput(frame())
    assert first.canonical_bytes() == second.canonical_bytes()
    assert first.digest() == second.digest()
    assert len(first.digest()) == 64


def test_changed_cell_changes_the_digest() -> None:
    changed = frame()
    changed.loc[1, "income"] = 2.5000001
    assert TableOutput(changed).digest() != TableOutput(frame()).digest()
    renamed = frame().rename(columns={"job": "occupation"})
    assert TableOutput(renamed).digest() != TableOutput(frame()).digest()


def test_table_canonical_bytes_keep_column_boundaries() -> None:
    # Length-prefixed fields: moving a value between columns or names cannot give the same bytes.
    left = TableOutput(pd.DataFrame({"a": ["xy"], "b": ["z"]}))
    right = TableOutput(pd.DataFrame({"a": ["x"], "b": ["yz"]}))
    swapped = TableOutput(pd.DataFrame({"ab": ["xy"], "": ["z"]}))
    assert len({left.digest(), right.digest(), swapped.digest()}) == 3
    assert TableOutput(frame()).canonical_bytes().startswith(b"gensdk-table/3")


def test_table_canonical_bytes_are_names_tags_and_column_data_digests() -> None:
    # Written out by hand from the documented form, so a change of format cannot pass unnoticed.
    def field(raw: bytes) -> bytes:
        return len(raw).to_bytes(8, "big") + raw

    ages = np.array([39, 50], dtype="<i8").tobytes()
    jobs = np.array([5, 10], dtype="<u4").tobytes() + "clerkchef, sous".encode()
    expected = (b"gensdk-table/3" + field(b"age") + field(b"int64") + hashlib.sha256(ages).digest()
                + field(b"job") + field(b"utf8-len32") + hashlib.sha256(jobs).digest())
    output = TableOutput(frame()[["age", "job"]])
    assert output.canonical_bytes() == expected
    assert output.digest() == hashlib.sha256(expected).hexdigest()


def many_dtypes() -> pd.DataFrame:
    n = 7
    return pd.DataFrame({
        "i8": np.arange(n, dtype="int8"), "big_endian": np.arange(n, dtype=">u2"), "f4": np.linspace(0, 1, n).astype("float32"),
        "flag": [True, False] * 3 + [True], "arrow_text": pd.array(list("ñçéaaaa"), dtype=pd.StringDtype("pyarrow")),
        "python_text": pd.array(list("ñçéaaaa"), dtype=pd.StringDtype("python")), "objects": pd.Series(list("abcdefg"), dtype=object),
        "mixed": [1, "a", None, 2.5, "b", True, b"x"], "text_with_null": ["a", None, "b", "c", "d", "e", "f"],
        "category": pd.Categorical(list("abcabca")), "when": pd.date_range("2020-01-01", periods=n),
        "nullable_int": pd.array([1, None, 3, 4, 5, 6, 7], dtype="Int64"), "nullable_bool": pd.array([True, None, False] + [True] * 4, dtype="boolean"),
        "span": pd.to_timedelta(np.arange(n), unit="s"), 3: np.arange(n) * 1j,
    })


class SeriesPerColumn(pd.DataFrame):
    """A frame without pandas' private column-array iterator: the public items() path must agree with it."""

    _iter_column_arrays = None


@pytest.mark.parametrize("table", [many_dtypes(), pd.DataFrame([[1, "a", 2.0]], columns=["x", "x", 3]), pd.DataFrame(),
                                   pd.DataFrame({"s": pd.Series(["a", "bb", "ccc", "dddd"], dtype="str")}).iloc[1:3]],
                         ids=["many-dtypes", "duplicate-names", "empty", "sliced-arrow-text"])
def test_fast_column_access_gives_the_same_bytes_as_items(table: pd.DataFrame) -> None:
    assert TableOutput(table).canonical_bytes() == TableOutput(SeriesPerColumn(table)).canonical_bytes()


def test_text_columns_hash_the_same_in_every_storage() -> None:
    values = ["ñ", "chef, sous", ""]
    import pyarrow as pa

    storages = [pd.array(values, dtype=pd.StringDtype("pyarrow")), pd.array(values, dtype=pd.StringDtype("python")),
                pd.Series(values, dtype=object), pd.array(values, dtype=pd.ArrowDtype(pa.string())),
                pd.array(values, dtype=pd.ArrowDtype(pa.large_string()))]
    assert len({TableOutput(pd.DataFrame({"job": s})).digest() for s in storages}) == 1


def test_text_lengths_take_four_bytes_unless_a_value_is_4_gib_or_longer() -> None:
    from gensdk.table_bytes import _lengths

    assert _lengths(np.array([3, 0])) == ("utf8-len32", np.array([3, 0], dtype="<u4").tobytes())
    assert _lengths(np.array([1 << 32, 1])) == ("utf8-len64", np.array([1 << 32, 1], dtype="<i8").tobytes())


def test_large_tables_hash_the_same_on_one_thread_and_on_two(monkeypatch: pytest.MonkeyPatch) -> None:
    from gensdk import table_bytes

    rng = np.random.default_rng(0)
    table = pd.DataFrame({f"c{i}": rng.normal(size=40_000) for i in range(6)} | {"t": pd.Series(["x" * 9] * 40_000, dtype="str")})
    monkeypatch.setattr(table_bytes, "PARALLEL_MIN_BYTES", 1 << 40)
    serial = TableOutput(table).digest()
    monkeypatch.setattr(table_bytes, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(table_bytes, "_cores", lambda: 2)
    assert TableOutput(table).digest() == serial
    table.loc[39_999, "c5"] += 1e-9
    assert TableOutput(table).digest() != serial


def test_table_digest_depends_on_dtype_and_value() -> None:
    ints = TableOutput(pd.DataFrame({"a": [1, 2]}))
    floats = TableOutput(pd.DataFrame({"a": [1.0, 2.0]}))
    texts = TableOutput(pd.DataFrame({"a": ["1", "2"]}))
    assert len({ints.digest(), floats.digest(), texts.digest()}) == 3


def test_text_canonical_bytes_are_utf8() -> None:
    output = TextOutput("naïve café ✓", prompt="ignored")
    assert output.canonical_bytes() == "naïve café ✓".encode("utf-8")
    assert output.digest() == TextOutput("naïve café ✓").digest()  # the prompt is not part of the output
    assert output.digest() != TextOutput("naive cafe").digest()


def test_metadata_does_not_change_the_digest() -> None:
    plain = TextOutput("same")
    stamped = TextOutput("same")
    stamped.metadata["audit_record_id"] = "abc"
    assert plain.digest() == stamped.digest()


def test_tables_are_written_to_one_csv(tmp_path: Path) -> None:
    target = tmp_path / "out" / "rows.csv"
    second = pd.DataFrame({"age": [23], "income": [1.0], "job": ["nurse"]})
    written = write_outputs([TableOutput(frame()), TableOutput(second)], target)
    assert written == [target]
    with target.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["job"] for r in rows] == ["clerk", "chef, sous", "nurse"]
    assert [r["age"] for r in rows] == ["39", "50", "23"]


def test_tables_are_written_as_jsonl_when_asked(tmp_path: Path) -> None:
    target = tmp_path / "rows.jsonl"
    write_outputs([TableOutput(frame())], target)
    lines = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
    assert lines[1] == {"age": 50, "income": 2.5, "job": "chef, sous"}


def test_texts_are_written_as_jsonl(tmp_path: Path) -> None:
    target = tmp_path / "texts.jsonl"
    write_outputs([TextOutput("héllo\nworld", prompt="p1"), TextOutput("second")], target)
    lines = target.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [
        {"prompt": "p1", "text": "héllo\nworld"},
        {"prompt": None, "text": "second"},
    ]
    assert "héllo" in lines[0]  # written as UTF-8, not \\u escapes


def test_nothing_to_write_writes_nothing(tmp_path: Path) -> None:
    assert write_outputs([], tmp_path / "empty.csv") == []
    assert not (tmp_path / "empty.csv").exists()


def test_mixed_modalities_are_refused(tmp_path: Path) -> None:
    with pytest.raises(RequestError, match="mixed modalities"):
        write_outputs([TextOutput("a"), TableOutput(frame())], tmp_path / "out")


def test_text_with_lone_surrogates_still_has_a_stable_digest() -> None:
    from gensdk.outputs import TextOutput

    broken = b"caf\xe9 ok".decode("utf-8", "surrogateescape")  # what reading non-UTF-8 bytes leaves
    assert TextOutput(broken).digest() == TextOutput(broken).digest()
    assert TextOutput(broken).digest() != TextOutput("caf ok").digest()


def test_text_cells_holding_the_separator_fall_back_to_an_unambiguous_form() -> None:
    joined_wrongly = TableOutput(pd.DataFrame({"a": ["x\0y", "z"]}))
    split_differently = TableOutput(pd.DataFrame({"a": ["x", "y\0z"]}))
    assert joined_wrongly.digest() != split_differently.digest()
    mixed = TableOutput(pd.DataFrame({"a": ["1", 1]}, dtype=object))
    assert mixed.digest() != TableOutput(pd.DataFrame({"a": ["1", "1"]})).digest()


@pytest.mark.parametrize("values", [["a", "bé", "", "x\0y"], ["only"], []])
def test_table_text_bytes_do_not_depend_on_the_string_storage(values: list[str]) -> None:
    # Arrow-backed columns are hashed from their buffers, Python ones value by value: the bytes must agree.
    arrow = pd.DataFrame({"c": pd.Series(values, dtype=pd.StringDtype("pyarrow"))})
    python = pd.DataFrame({"c": pd.Series(values, dtype=pd.StringDtype("python"))})
    objects = pd.DataFrame({"c": pd.Series(values, dtype=object)})
    assert len({TableOutput(f).canonical_bytes() for f in (arrow, python, objects)}) == 1


def test_table_text_bytes_of_a_sliced_arrow_column_cover_only_the_slice() -> None:
    column = pd.Series(["first", "second", "third", "fourth"], dtype=pd.StringDtype("pyarrow"))
    sliced = pd.DataFrame({"c": column.iloc[1:3]}).reset_index(drop=True)
    fresh = pd.DataFrame({"c": pd.Series(["second", "third"], dtype=object)})
    assert TableOutput(sliced).canonical_bytes() == TableOutput(fresh).canonical_bytes()


def test_table_text_with_nulls_keeps_them_distinct_from_the_string_none() -> None:
    with_null = pd.DataFrame({"c": pd.Series(["a", None], dtype=pd.StringDtype("pyarrow"))})
    with_word = pd.DataFrame({"c": pd.Series(["a", "None"], dtype=pd.StringDtype("pyarrow"))})
    assert TableOutput(with_null).digest() != TableOutput(with_word).digest()


@pytest.mark.parametrize("table", [
    pd.DataFrame({"age": [39, 50], "c": pd.Series(["a", "bé"], dtype=pd.StringDtype("pyarrow"))}),
    pd.DataFrame({"big_endian": pd.Series([1, 2, 3], dtype=">i4"), "f": [0.5, -1.0, 2.0]}),
    pd.DataFrame({"c": pd.Series(["x", "y", "z", "w"], dtype=pd.StringDtype("pyarrow")).iloc[1:3]}),
    pd.DataFrame({"mixed": pd.Series(["1", 1, None], dtype=object)}),
    pd.DataFrame({"empty": pd.Series([], dtype="float32"), "s": pd.Series([], dtype=pd.StringDtype("pyarrow"))}),
])
def test_table_digest_hashes_exactly_the_canonical_bytes(table: pd.DataFrame) -> None:
    # digest() streams the pieces into the hash without joining them: it must hash the very same bytes
    import hashlib

    output = TableOutput(table)
    assert output.digest() == hashlib.sha256(output.canonical_bytes()).hexdigest()


def test_tables_with_duplicate_column_names_are_hashed_column_by_column() -> None:
    twice = pd.DataFrame([[1, 2], [3, 4]], columns=["a", "a"])
    swapped = pd.DataFrame([[2, 1], [4, 3]], columns=["a", "a"])
    assert TableOutput(twice).digest() != TableOutput(swapped).digest()
    assert TableOutput(twice).canonical_bytes().count(b"int64") == 2
