"""The input of a batch job: one JSON request per line, all validated on the driver before any worker starts.

    {"request_id": "q-0001", "model": "models/shakespeare", "prompts": ["ROMEO:"], "n": 2, "params": {"max_new_tokens": 32}}
    {"request_id": "q-0002", "model": "models/adult-gmm", "n": 500, "seed": 7, "conditions": {"income": ">50K"}}

Every line needs a `request_id` (unique in the file) and a `model` directory; the other keys are the fields of
`gensdk.Request` (n, seed, prompts, messages, conditions, params), checked the same way, so a misspelt key is an
error naming the line. The request id is what makes a job idempotent: it names the audit record
(`record_id_for`) and, when the line gives no seed, it fixes the seed (`seed_for`), so running a request again
produces the same outputs and finds its committed record instead of adding a second one.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gensdk.errors import DataError, GensdkError
from gensdk.request import parse_request

__all__ = ["BatchItem", "output_dir_name", "read_requests", "record_id_for", "seed_for"]

_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")


def record_id_for(request_id: str) -> str:
    """The audit record_id of a batch request: derived from its request id, so a retry finds it."""
    return "req-" + hashlib.sha256(b"gensdk-batch/1\0" + request_id.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def seed_for(request_id: str) -> int:
    """The seed of a request that names none: stable per request id, below 2**63 like every gensdk seed."""
    digest = hashlib.sha256(b"gensdk-batch-seed/1\0" + request_id.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def output_dir_name(request_id: str) -> str:
    """The directory under OUT/ for a request: the id itself when it is a safe file name, else a safe prefix
    and a digest (ids "a/b" and "a_b" must not share a directory)."""
    if _SAFE.fullmatch(request_id) and request_id not in (".", ".."):
        return request_id
    prefix = re.sub(r"[^A-Za-z0-9._-]", "_", request_id)[:48].lstrip(".") or "request"
    return f"{prefix}-{hashlib.sha256(request_id.encode('utf-8', 'surrogatepass')).hexdigest()[:12]}"


@dataclass(frozen=True)
class BatchItem:
    """One validated line: the request as the engine will get it (seed filled in) and where it came from."""

    line: int
    request_id: str
    model: str  # absolute path of the model directory
    request: dict[str, Any]

    @property
    def record_id(self) -> str:
        return record_id_for(self.request_id)

    @property
    def dir_name(self) -> str:
        return output_dir_name(self.request_id)

    def to_row(self) -> dict[str, Any]:
        """A flat row for Ray Data: the request travels as JSON text, so rows need no common schema."""
        request = json.dumps(self.request)
        return {"line": self.line, "request_id": self.request_id, "model": self.model, "request": request}

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> BatchItem:
        return cls(int(row["line"]), str(row["request_id"]), str(row["model"]), json.loads(row["request"]))


def read_requests(path: str | Path) -> list[BatchItem]:
    """Every line of a JSONL file as a BatchItem; the first bad line is a DataError naming it."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise DataError(f"cannot read batch input {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"batch input {path} is not UTF-8: undecodable byte at offset {exc.start}") from None
    items: list[BatchItem] = []
    first_line: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        item = _parse_line(line, path, number)
        if item.request_id in first_line:
            raise DataError(
                f"{path}:{number}: request_id {item.request_id!r} is already used on line "
                f"{first_line[item.request_id]}; request ids must be unique, they name the audit records"
            )
        first_line[item.request_id] = number
        items.append(item)
    if not items:
        raise DataError(f"batch input {path} holds no request")
    return items


def _parse_line(line: str, path: Path, number: int) -> BatchItem:
    where = f"{path}:{number}"
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where} is not JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise DataError(f"{where} is not a JSON object")
    request_id = data.get("request_id")
    if not isinstance(request_id, str) or not request_id:
        raise DataError(f"{where} needs a non-empty string \"request_id\" (it makes retries idempotent)")
    model = data.pop("model", None)
    if not isinstance(model, str) or not model:
        raise DataError(f"{where} needs a string \"model\": the model directory")
    model_dir = Path(model).expanduser().absolute()
    if not model_dir.is_dir():
        raise DataError(f"{where}: model directory {model} does not exist")
    if data.get("seed") is None:
        data["seed"] = seed_for(request_id)
    try:
        request = parse_request(data, {})
    except GensdkError as exc:
        raise DataError(f"{where}: {exc}") from None
    return BatchItem(number, request_id, str(model_dir), request.model_dump(mode="json"))
