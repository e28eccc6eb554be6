"""Reading a batch input: every bad line is an error naming it, before any worker starts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gensdk.distributed.requests import output_dir_name, read_requests, record_id_for, seed_for
from gensdk.errors import DataError


def write_lines(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_each_line_becomes_a_validated_request(tmp_path: Path, mock_model_dir: Path) -> None:
    path = write_lines(
        tmp_path,
        json.dumps({"request_id": "a", "model": str(mock_model_dir), "n": 3, "prompts": ["hi"]}),
        "",
        json.dumps({"request_id": "b", "model": str(mock_model_dir), "seed": 11, "params": {"x": 1}}),
    )
    first, second = read_requests(path)
    assert (first.line, first.request_id, first.model) == (1, "a", str(mock_model_dir))
    assert first.request["n"] == 3 and first.request["prompts"] == ["hi"]
    assert first.request["seed"] == seed_for("a")  # no seed given: the request id fixes it
    assert (second.line, second.request["seed"], second.request["params"]) == (3, 11, {"x": 1})
    assert first.record_id == record_id_for("a") != second.record_id


def test_relative_model_paths_are_made_absolute(tmp_path: Path, mock_model_dir: Path, monkeypatch) -> None:
    monkeypatch.chdir(mock_model_dir.parent)
    (item,) = read_requests(write_lines(tmp_path, json.dumps({"request_id": "a", "model": mock_model_dir.name})))
    assert item.model == str(mock_model_dir)


def test_ids_seeds_and_directories_are_stable_and_distinct() -> None:
    assert record_id_for("q-1") == record_id_for("q-1") != record_id_for("q-2")
    assert record_id_for("q-1").startswith("req-") and len(record_id_for("q-1")) == 36
    assert seed_for("q-1") == seed_for("q-1") != seed_for("q-2")
    assert 0 <= seed_for("anything") < 2**63
    assert output_dir_name("q-0001") == "q-0001"
    odd = [output_dir_name(r) for r in ("a/b", "a_b", "../etc", ".hidden", "x" * 200)]
    assert odd[1] == "a_b" and odd[0] != odd[1]  # "a/b" cannot land in "a_b"'s directory
    assert all("/" not in name and not name.startswith(".") and len(name) <= 80 for name in odd)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", r"in\.jsonl:2 is not JSON"),
        ("[1, 2]", r"in\.jsonl:2 is not a JSON object"),
        ('{"model": "MODEL"}', r'in\.jsonl:2 needs a non-empty string "request_id"'),
        ('{"request_id": "b"}', r'in\.jsonl:2 needs a string "model"'),
        ('{"request_id": "b", "model": "/no/such/model"}', r"in\.jsonl:2: model directory /no/such/model does not exist"),
        ('{"request_id": "b", "model": "MODEL", "promts": ["x"]}', r"in\.jsonl:2: invalid request: promts: Extra inputs"),
        ('{"request_id": "b", "model": "MODEL", "n": "5"}', r"in\.jsonl:2: invalid request: n: Input should be a valid integer"),
        ('{"request_id": "a", "model": "MODEL"}', r"in\.jsonl:2: request_id 'a' is already used on line 1"),
    ],
)
def test_a_bad_line_is_named(tmp_path: Path, mock_model_dir: Path, line: str, message: str) -> None:
    good = json.dumps({"request_id": "a", "model": str(mock_model_dir)})
    path = write_lines(tmp_path, good, line.replace("MODEL", str(mock_model_dir)))
    with pytest.raises(DataError, match=message):
        read_requests(path)


def test_an_empty_or_missing_input_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="holds no request"):
        read_requests(write_lines(tmp_path, "", "  "))
    with pytest.raises(DataError, match="cannot read batch input"):
        read_requests(tmp_path / "absent.jsonl")
