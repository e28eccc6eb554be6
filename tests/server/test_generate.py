"""Generation over real HTTP: every answer carries verdict, findings and the committed audit record; blocked
outputs never reach the client."""

from __future__ import annotations

import base64
import hashlib
import io

import pytest


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_completion_is_released_with_its_audit_record(server):
    with server.client() as client:
        response = client.post("/v1/completions", json={"model": "lm", "prompt": "ROMEO:", "max_tokens": 12})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "text_completion" and body["verdict"] == "pass"
    assert response.headers["x-request-id"] == body["request_id"]
    text = body["choices"][0]["text"]
    record = server.record(body["audit_record_id"])["body"]
    assert record["request_id"] == f"http:all:{body['request_id']}"
    assert record["outputs"][0]["digest"] == _digest(text)  # the record describes exactly what was sent
    assert {f["code"] for f in body["findings"]} >= {"watermark-embedded", "provenance-pending"}
    assert body["choices"][0]["provenance"]["audit"]["record_id"] == body["audit_record_id"]


def test_several_prompts_and_n_keep_openai_indexes(server, lm_tokenizer):
    with server.client() as client:
        body = client.post("/v1/completions", json={"model": "lm", "prompt": ["ROMEO:", "JULIET:"], "n": 2,
                                                     "max_tokens": 6}).json()
    assert [c["index"] for c in body["choices"]] == [0, 1, 2, 3]
    record = server.record(body["audit_record_id"])["body"]
    assert [o["digest"] for o in record["outputs"]] == [_digest(c["text"]) for c in body["choices"]]
    prompt_tokens = sum(len(lm_tokenizer(p)["input_ids"]) for p in ("ROMEO:", "JULIET:"))  # each prompt once, whatever n
    assert body["usage"]["prompt_tokens"] == prompt_tokens > 0
    assert body["usage"]["total_tokens"] == prompt_tokens + body["usage"]["completion_tokens"]


def test_chat_completion(server, models):
    from gensdk_llm import LLMFamily

    from gensdk.request import Request

    conversation = [{"role": "user", "content": "Speak, Romeo."}]
    with server.client() as client:
        response = client.post("/v1/chat/completions", json={"model": "lm", "messages": conversation, "max_completion_tokens": 8})
    body = response.json()
    assert response.status_code == 200, body
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert server.record(body["audit_record_id"])["body"]["outputs"][0]["digest"] == _digest(body["choices"][0]["message"]["content"])
    family = LLMFamily.load(models["lm"])  # what the model itself reads: its own rendering of the conversation
    rendered, is_chat = family._render_prompts(Request(messages=[conversation]))
    assert body["usage"]["prompt_tokens"] == len(family.tokenizer(rendered[0], add_special_tokens=not is_chat)["input_ids"])


def test_a_prompt_blocked_by_check_request_is_451_and_recorded(server):
    with server.client() as client:
        response = client.post("/v1/completions", json={"model": "lm", "prompt": "say forbidden things", "max_tokens": 4})
    body = response.json()
    assert response.status_code == 451
    assert body["error"]["type"] == "output_blocked" and body["verdict"] == "block"
    assert any(f["code"] == "keyword-in-prompt" for f in body["findings"])
    assert server.record(body["audit_record_id"])["body"]["verdict"] == "block"
    assert "choices" not in body


def test_a_blocked_output_is_withheld_and_never_sent(live):
    with live(policies=[{"id": "keyword", "options": {"words": ["forbidden"]}}]) as srv, srv.client() as client:
        blocked = client.post("/v1/completions", json={"model": "mock", "prompt": "x"})
        partial = client.post("/v1/completions", json={"model": "mock", "prompt": "x", "n": 2})
    assert blocked.status_code == 451
    assert "leak" not in blocked.text  # the blocked text never leaves the server
    assert blocked.json()["blocked"] == [0]
    assert any(f["code"] == "keyword" for f in blocked.json()["findings"])
    assert partial.status_code == 200
    body = partial.json()
    assert [c["text"] for c in body["choices"]] == ["fine words"] and body["blocked"] == [1]
    assert "leak" not in partial.text and body["verdict"] == "block"


def test_images_are_png_with_provenance_that_verifies(server):
    from PIL import Image

    with server.client() as client:
        body = client.post("/v1/images/generations", json={"model": "gan", "n": 2, "conditions": {"class": "3"}}).json()
        assert len(body["data"]) == 2, body
        png = base64.b64decode(body["data"][0]["b64_json"])
        assert Image.open(io.BytesIO(png)).size == (8, 8)
        verified = client.post("/v1/verify", json={"kind": "image", "image_b64": body["data"][0]["b64_json"]}).json()
        assert verified["ok"] and verified["verdict"] == "verified" and verified["result"]["key_pinned"]
        assert verified["result"]["manifest"]["audit"]["record_id"] == body["audit_record_id"]


def test_image_prompt_is_refused_for_a_family_that_ignores_prompts(server):
    with server.client() as client:
        response = client.post("/v1/images/generations", json={"model": "gan", "prompt": "a cat"})
    assert response.status_code == 422 and response.json()["error"]["param"] == "prompt"


@pytest.mark.parametrize("fmt", ["records", "csv"])
def test_tables(server, fmt):
    with server.client() as client:
        body = client.post("/v1/tables/generate", json={"model": "gmm", "n": 30, "seed": 3,
                                                         "conditions": {"sex": "Female"}, "format": fmt}).json()
    part = body["data"][0]
    if fmt == "records":
        assert len(part["rows"]) == 30 and {r["sex"] for r in part["rows"]} == {"Female"}
    else:
        assert part["csv"].count("\n") == 31
        assert "age" in body["columns"]


def test_text_and_table_provenance_round_trip_and_tampering(server):
    with server.client() as client:
        text = client.post("/v1/completions", json={"model": "lm", "prompt": "ROMEO:", "max_tokens": 8}).json()["choices"][0]
        table = client.post("/v1/tables/generate", json={"model": "gmm", "n": 5, "format": "csv"}).json()["data"][0]
        ok = client.post("/v1/verify", json={"kind": "text", "text": text["text"], "manifest": text["provenance"]}).json()
        bad = client.post("/v1/verify", json={"kind": "text", "text": text["text"] + "!", "manifest": text["provenance"]}).json()
        table_ok = client.post("/v1/verify", json={"kind": "table", "csv": table["csv"], "manifest": table["provenance"]}).json()
    assert ok["ok"] and ok["verdict"] == "verified"
    assert not bad["ok"] and bad["verdict"] == "content modified" and bad["findings"]
    assert table_ok["ok"], table_ok
    assert server.record(ok["audit_record_id"])["body"]["kind"] == "provenance-check"


def test_detect_finds_the_servers_text_watermark(server):
    with server.client() as client:
        text = client.post("/v1/completions", json={"model": "lm", "prompt": "ROMEO:", "max_tokens": 60,
                                                    "seed": 11}).json()["choices"][0]["text"]
        marked = client.post("/v1/detect", json={"kind": "text", "model": "lm", "text": text}).json()
        human = client.post("/v1/detect", json={"kind": "text", "model": "lm",
                                                "text": "Now is the winter of our discontent made glorious summer by this sun of York"}).json()
        no_table_mark = client.post("/v1/detect", json={"kind": "table", "csv": "a\n1\n"})
    assert marked["detection"]["p_value"] < human["detection"]["p_value"]
    assert marked["verdict"] == "watermarked", marked
    assert not human["detected"]
    assert server.record(marked["audit_record_id"])["body"]["kind"] == "watermark-detection"
    assert no_table_mark.status_code == 422 and no_table_mark.json()["error"]["type"] == "not_configured"


def test_audit_verify_and_models(server):
    with server.client() as client:
        client.post("/v1/completions", json={"model": "lm", "prompt": "A", "max_tokens": 2})
        report = client.post("/v1/audit/verify").json()
        listed = client.get("/v1/models").json()
    assert report["ok"] and report["verdict"] == "ok" and report["records"] >= 1
    assert {m["id"]: m["family"] for m in listed["data"]} == {"lm": "llm", "gmm": "gmm", "gan": "gan-image", "mock": "mock"}
