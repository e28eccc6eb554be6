"""The OpenAPI document, checked against the live server by schemathesis: every operation, generated valid
and invalid requests (a bounded number), answers that match the documented statuses, types and schemas."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

OPERATIONS = {"POST /v1/completions", "POST /v1/chat/completions", "POST /v1/images/generations",
              "POST /v1/tables/generate", "POST /v1/detect", "POST /v1/verify", "POST /v1/audit/verify",
              "GET /v1/models", "GET /healthz"}


@pytest.fixture(scope="module")
def fuzz_server(live_module):
    # Small limits keep each generated request cheap: the tiny model, a few tokens, a few rows.
    with live_module(limits={"max_outputs": 2, "max_prompts": 2, "max_tokens": 16, "max_rows": 50}) as srv:
        yield srv


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def test_every_operation_answers_as_documented(fuzz_server, api_keys):
    """Each operation's generated cases through hypothesis (schemathesis' pytest plugin does not run under
    this pytest), each answer checked by schemathesis' own checks."""
    schema = schemathesis.openapi.from_url(f"{fuzz_server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {f"{op.method.upper()} {op.path}" for op in operations} == OPERATIONS
    headers = {"Authorization": f"Bearer {api_keys['all']}"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def answers_as_documented(case):
            case.call_and_validate(headers=headers, timeout=60, checks=CHECKS)

        answers_as_documented()


def test_the_document_names_every_endpoint_status_and_the_key_scheme(fuzz_server):
    import httpx

    doc = httpx.get(f"{fuzz_server.url}/openapi.json").json()
    found = {f"{method.upper()} {path}" for path, ops in doc["paths"].items() for method in ops}
    assert found == OPERATIONS
    completions = doc["paths"]["/v1/completions"]["post"]["responses"]
    assert {"200", "400", "401", "403", "404", "413", "422", "429", "451", "503"} <= set(completions)
    assert "text/event-stream" in completions["200"]["content"]
    assert completions["451"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
