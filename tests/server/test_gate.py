"""Bad input over real HTTP: documented statuses and bodies for keys, scopes, rates, sizes, slow uploads,
malformed JSON, wrong types, unknown fields and models. Keys and prompts never reach the logs."""

from __future__ import annotations

import logging
import socket
import time

import pytest


def _error(response):
    body = response.json()
    assert set(body["error"]) >= {"type", "message"} and body["request_id"] == response.headers["x-request-id"]
    return body["error"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer gsk_" + "x" * 43}, {"Authorization": "Basic abc"},
                                     {"Authorization": "Bearer not-a-gensdk-key"}])
def test_missing_or_unknown_key_is_401(server, headers):
    with server.client(key=None) as client:
        response = client.post("/v1/completions", json={"model": "lm", "prompt": "x"}, headers=headers)
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
    assert _error(response)["type"] == "unauthorized"


def test_key_without_the_scope_is_403(server):
    with server.client("detect") as client:
        generate = client.post("/v1/completions", json={"model": "lm", "prompt": "x"})
        audit = client.post("/v1/audit/verify")
    with server.client("gen") as client:
        detect = client.post("/v1/detect", json={"kind": "table", "csv": "a\n1\n"})
    for response in (generate, audit, detect):
        assert response.status_code == 403 and _error(response)["type"] == "forbidden"


def test_rate_limit_is_429_with_retry_after(server):
    with server.client("slow") as client:
        statuses = [client.get("/v1/models") for _ in range(3)]
    assert [r.status_code for r in statuses] == [200, 200, 429]  # burst 2, then 1 a minute
    assert int(statuses[2].headers["retry-after"]) >= 1 and _error(statuses[2])["type"] == "rate_limited"


def test_malformed_json_wrong_types_unknown_fields(server):
    with server.client() as client:
        broken = client.post("/v1/completions", content=b'{"model": "lm", "prompt": ', headers={"content-type": "application/json"})
        wrong_type = client.post("/v1/completions", json={"model": "lm", "prompt": "x", "n": "2"})
        out_of_range = client.post("/v1/completions", json={"model": "lm", "prompt": "x", "temperature": -1})
        switch_off = client.post("/v1/completions", json={"model": "lm", "prompt": "x", "disable_policies": ["keyword"]})
        unknown_model = client.post("/v1/completions", json={"model": "nope", "prompt": "x"})
        wrong_modality = client.post("/v1/completions", json={"model": "gmm", "prompt": "x"})
        over_limit = client.post("/v1/completions", json={"model": "lm", "prompt": "x", "n": 1000})
    assert broken.status_code == 400 and _error(broken)["type"] == "invalid_json"
    assert wrong_type.status_code == 422 and _error(wrong_type)["param"] == "n"
    assert out_of_range.status_code == 422 and "temperature" in _error(out_of_range)["message"]
    # no request field can switch a policy off: the field does not exist, and unknown fields are refused
    assert switch_off.status_code == 422 and _error(switch_off)["param"] == "disable_policies"
    assert unknown_model.status_code == 404 and _error(unknown_model)["type"] == "not_found"
    assert wrong_modality.status_code == 422 and _error(wrong_modality)["param"] == "model"
    assert over_limit.status_code == 422 and _error(over_limit)["param"] == "n"


def test_oversized_body_is_413_and_slow_upload_is_408(live, api_keys):
    with live(limits={"max_body_bytes": 2048, "body_timeout_s": 0.5}) as srv:
        with srv.client() as client:
            declared = client.post("/v1/completions", json={"model": "lm", "prompt": "x" * 5000})
            chunked = client.post("/v1/completions", content=iter([b'{"model": "lm", "prompt": "', b"x" * 3000, b'"}']),
                                  headers={"content-type": "application/json"})
            fine = client.post("/v1/completions", json={"model": "lm", "prompt": "ROMEO:", "max_tokens": 2})
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:  # sends 8 of 100 bytes, then stalls
            sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         + f"Authorization: Bearer {api_keys['all']}\r\nContent-Length: 100\r\n\r\n".encode() + b'{"model"')
            reply = _read_reply(sock)
    assert declared.status_code == 413 and _error(declared)["type"] == "request_too_large"
    assert chunked.status_code == 413
    assert fine.status_code == 200
    assert reply.startswith(b"HTTP/1.1 408") and b"request_timeout" in reply


def _read_reply(sock: socket.socket) -> bytes:
    data = b""
    while b"}" not in data.partition(b"\r\n\r\n")[2]:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def test_unknown_path_and_health(server):
    with server.client() as client:
        assert client.get("/v1/nothing-here").status_code == 404
    with server.client(key=None) as client:
        health = client.get("/healthz")
        assert client.get("/v1/nothing-here").status_code == 401  # the key is checked before anything else
    assert health.status_code == 200 and health.json()["status"] == "ok"


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def test_keys_and_prompts_never_reach_the_logs(server, api_keys):
    handler = _Collect()
    loggers = [logging.getLogger(n) for n in ("", "gensdk", "uvicorn", "uvicorn.error", "uvicorn.access", "sse_starlette")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)
    prompt = "SECRET-PROMPT-4711 ROMEO:"
    try:
        with server.client() as client:
            client.post("/v1/completions", json={"model": "lm", "prompt": prompt, "max_tokens": 4})
            with client.stream("POST", "/v1/completions", json={"model": "lm", "prompt": prompt, "max_tokens": 4, "stream": True}) as r:
                r.read()
            client.post("/v1/completions", json={"model": "lm", "prompt": prompt + " forbidden"})
            client.post("/v1/completions", json={"model": "lm", "prompt": prompt, "n": "bad"})
        with server.client(key=None) as client:
            client.post("/v1/completions", json={"model": "lm"}, headers={"Authorization": f"Bearer {api_keys['all']}x"})
        time.sleep(0.2)  # the gate logs after the response is sent
    finally:
        for lg, level in zip(loggers, levels):
            lg.removeHandler(handler)
            lg.setLevel(level)
    text = "\n".join(handler.lines)
    assert "POST /v1/completions -> 200" in text and "key all" in text  # requests are logged, by key name
    assert "SECRET-PROMPT" not in text
    assert not any(key in text for key in api_keys.values())



def test_the_key_check_covers_the_routes_under_a_root_path(server) -> None:
    """Mounted under a prefix (a proxy's root_path: the full path arrives), /prefix/v1/... is still a /v1
    route: without a key it is refused, with one it is served."""
    import asyncio

    import httpx

    from gensdk.server.app import create_app

    from .conftest import KEYS

    async def ask(headers: dict) -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app(server.service), root_path="/gensdk")
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get("/gensdk/v1/models", headers=headers)

    assert asyncio.run(ask({})).status_code == 401
    assert asyncio.run(ask({"Authorization": f"Bearer {KEYS['all']}"})).status_code == 200


def test_a_well_formed_incoming_request_id_is_kept_end_to_end(server):
    """A proxy's id (Ray Serve sends a UUID) names the answer and the audit record: one id per request."""
    proxy_id = "0b3c9a6e-5f1d-4c2b-9e8a-7d6f5e4c3b2a"
    with server.client() as client:
        response = client.post("/v1/images/generations", json={"model": "gan", "n": 1}, headers={"X-Request-ID": proxy_id})
    assert response.status_code == 200
    assert response.headers.get_list("x-request-id") == [proxy_id] and response.json()["request_id"] == proxy_id
    assert server.record(response.json()["audit_record_id"])["body"]["request_id"] == f"http:all:{proxy_id}"


@pytest.mark.parametrize("presented", ["", "a" * 129, "has space", "colon:inside", "-leading-dash", "new\tline", "é"])
def test_a_malformed_incoming_request_id_is_replaced_by_our_own(server, presented):
    with server.client(key=None) as client:
        response = client.get("/healthz", headers={"X-Request-ID": presented.encode("utf-8")})
    assert response.status_code == 200
    assert response.headers.get_list("x-request-id")[0].startswith("req_") and len(response.headers.get_list("x-request-id")) == 1
