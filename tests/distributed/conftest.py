"""Fixtures for batch jobs and Ray: a saved mock model, request files, a PostgreSQL schema, one Ray cluster.

The local Ray cluster (2 CPUs, no dashboard) is started by the first test that needs it and shared by the rest of
the session (starting one costs about 10 s here).
PostgreSQL tests read GENSDK_TEST_POSTGRES_URL (.ci/run sets it); without it they skip, except under CI=true,
where a missing server is a failure.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from gensdk.testing import MockFamily

TESTING_PLUGINS = ["gensdk.testing.plugin"]
POSTGRES_ENV = "GENSDK_TEST_POSTGRES_URL"


@pytest.fixture(scope="session")
def mock_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return MockFamily().save(tmp_path_factory.mktemp("models") / "mock")


@pytest.fixture
def write_requests(tmp_path: Path) -> Callable[..., Path]:
    """Write request dicts as JSONL; `model` defaults to the mock model."""

    def write(requests: list[dict[str, Any]], model: Path, name: str = "requests.jsonl") -> Path:
        path = tmp_path / name
        lines = [json.dumps({"model": str(model), **request}) for request in requests]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    return write


@pytest.fixture
def keyword_config() -> Callable[..., dict[str, Any]]:
    """An engine configuration with the KeywordPolicy double blocking `words` (and anything in `extra`)."""

    def make(*words: str, **extra: Any) -> dict[str, Any]:
        return {"device": "cpu", "policies": [{"id": "keyword", "options": {"words": list(words)}}], **extra}

    return make


@pytest.fixture
def assert_published() -> Callable[[Path, Any], int]:
    """Check every request directory under OUT/ against the audit trail: its record exists, and the texts on
    disk are exactly the outputs the record lists as released (by digest, in order). Returns the count."""
    from gensdk._canonical import sha256_hex

    def check(out_dir: Path, sink: Any) -> int:
        summaries = sorted(out_dir.glob("*/record.json"))
        for summary_path in summaries:
            summary = json.loads(summary_path.read_text(encoding="utf-8"))
            stored = sink.lookup(summary["audit_record_id"])
            assert stored is not None, f"{summary_path.parent.name} was published without an audit record"
            assert stored["body"]["request_id"] == summary["request_id"]
            released = [o["digest"] for o in stored["body"]["outputs"] if o["verdict"] != "block"]
            texts = summary_path.parent / "texts.jsonl"
            lines = texts.read_text(encoding="utf-8").splitlines() if texts.exists() else []
            on_disk = [sha256_hex(json.loads(line)["text"].encode("utf-8", "surrogatepass")) for line in lines]
            assert on_disk == released, f"{summary_path.parent.name}: files differ from the audit record"
        return len(summaries)

    return check


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[Any]:
    ray = pytest.importorskip("ray", reason="the ray extra is not installed: pip install 'gensdk[ray]'")
    # Ray's workers run at niceness 15 by default: on a shared machine that starves them; 0 keeps tests quick.
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _system_config={"worker_niceness": 0})
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def postgres_server() -> str:
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        message = f"{POSTGRES_ENV} is not set, so there is no PostgreSQL server to test against"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message}; under CI=true that is a failure (.ci/run starts one)", pytrace=False)
        pytest.skip(f'{message} (start one: eval "$(bash .ci/postgres.sh start)")')
    return url


@pytest.fixture
def pg_url(postgres_server: str) -> Iterator[str]:
    """A URL whose search_path is a fresh schema, dropped afterwards."""
    psycopg = pytest.importorskip("psycopg")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    yield f"{postgres_server}{'&' if '?' in postgres_server else '?'}options=-csearch_path%3D{schema}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")
