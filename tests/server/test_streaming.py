"""SSE streaming over real HTTP: text released only behind the policies, the record committed before the
last event, blocks mid-stream without content, disconnects that still leave their record."""

from __future__ import annotations

import hashlib
import json


def _stream(client, path, body, parse_sse):
    with client.stream("POST", path, json={**body, "stream": True}) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        return response.headers["x-request-id"], parse_sse(response)


def test_completion_stream_is_the_audited_text(server, parse_sse):
    with server.client() as client:
        _, events = _stream(client, "/v1/completions", {"model": "lm", "prompt": "ROMEO:", "max_tokens": 40}, parse_sse)
    assert events[-1]["data"] == "[DONE]"
    chunks = [json.loads(e["data"]) for e in events[:-1]]
    final = chunks[-1]
    text = "".join(c["choices"][0]["text"] for c in chunks)
    assert final["choices"][0]["finish_reason"] == "stop" and final["verdict"] == "pass"
    record = server.record(final["audit_record_id"])["body"]
    assert record["outputs"][0]["digest"] == hashlib.sha256(text.encode()).hexdigest()
    assert final["choices"][0]["provenance"]["output"]["digest"] == record["outputs"][0]["digest"]


def test_chat_stream_deltas(server, parse_sse):
    with server.client() as client:
        _, events = _stream(client, "/v1/chat/completions", {"model": "lm", "max_tokens": 20,
                                                             "messages": [{"role": "user", "content": "Hi"}]}, parse_sse)
    chunks = [json.loads(e["data"]) for e in events[:-1]]
    assert chunks[0]["object"] == "chat.completion.chunk" and chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["audit_record_id"]


def test_stream_blocked_at_the_request_is_a_plain_451(server):
    with server.client() as client:
        response = client.post("/v1/completions", json={"model": "lm", "prompt": "forbidden", "stream": True})
        several = client.post("/v1/completions", json={"model": "lm", "prompt": "a", "n": 2, "stream": True})
    assert response.status_code == 451 and response.json()["verdict"] == "block"
    assert several.status_code == 422 and several.json()["error"]["param"] == "stream"


def test_block_mid_stream_ends_with_an_error_event_and_no_more_text(live, lm_tokenizer, parse_sse):
    forced = "the night is sweet and fair and good my lord, forbidden words come here and more text after"
    ids = lm_tokenizer(forced, add_special_tokens=False)["input_ids"]
    policies = [{"id": "force-text", "options": {"token_ids": ids}}, {"id": "keyword", "options": {"words": ["forbidden"]}}]
    with live(policies=policies, limits={"stream_lookback": 8}) as srv, srv.client() as client:
        _, events = _stream(client, "/v1/completions", {"model": "lm", "prompt": "A", "max_tokens": 60}, parse_sse)
        bodies = [json.loads(e["data"]) for e in events]
        error = bodies[-1]
        sent = "".join(b["choices"][0]["text"] for b in bodies[:-1])
        assert error["error"]["type"] == "output_blocked" and error["verdict"] == "block"
        assert sent and "forbidden" not in sent and forced.startswith(sent)  # checked text only, up to the block
        assert all(e["data"] != "[DONE]" for e in events)
        assert srv.record(error["audit_record_id"])["body"]["verdict"] == "block"


def test_disconnect_mid_stream_commits_the_record(live, parse_sse):
    with live(policies=[], limits={"stream_lookback": 0}) as srv, srv.client() as client:
        with client.stream("POST", "/v1/completions", json={"model": "lm", "prompt": "ROMEO:", "max_tokens": 80,
                                                            "stream": True}) as response:
            rid = response.headers["x-request-id"]
            next(response.iter_lines())  # one event, then the client goes away
        record = srv.wait_for_record(f"http:all:{rid}")
        assert "stream closed by the client" in record["body"]["error"]  # what it was sent, no more
        assert srv.audit.verify().ok



def test_a_stream_waiting_for_a_generation_thread_sends_keep_alives(live, long_lm, lm_tokenizer, parse_sse):
    """One generation thread; mid-stream, a request whose policy pass takes 1.5 s takes it. The stream waits
    for it between two pieces and sends `: ping` comments meanwhile; the text and its record are unchanged."""
    import threading

    text = "the night is sweet and fair and good my lord " * 40
    ids = lm_tokenizer(text, add_special_tokens=False)["input_ids"]
    policies = [{"id": "force-text", "options": {"token_ids": ids}},
                {"id": "hang-on-word", "options": {"word": "hang", "seconds": 1.5}}]
    with live(served={"long": long_lm}, policies=policies, server={"generation_threads": 1},
              limits={"stream_lookback": 0, "max_tokens": 1500, "stream_ping_s": 0.05}) as srv, srv.client() as client:
        hanging: list = []
        other = threading.Thread(target=lambda: hanging.append(
            client.post("/v1/completions", json={"model": "long", "prompt": "hang", "max_tokens": 2})))
        with client.stream("POST", "/v1/completions", json={"model": "long", "prompt": "A", "max_tokens": len(ids),
                                                            "stream": True}) as response:
            lines = []
            for line in response.iter_lines():
                lines.append(line)
                if line.startswith("data:") and other.ident is None:
                    other.start()  # after the first piece: the stream has begun
        other.join()
        events = parse_sse(_Lines(lines))
        chunks = [json.loads(e["data"]) for e in events[:-1]]
        record = srv.record(chunks[-1]["audit_record_id"])["body"]
    sent = "".join(c["choices"][0]["text"] for c in chunks)
    assert hanging[0].status_code == 200 and events[-1]["data"] == "[DONE]"
    assert ": ping" in lines  # keep-alives while the other request held the only thread
    assert sent == text and record["outputs"][0]["digest"] == hashlib.sha256(sent.encode()).hexdigest()


class _Lines:
    def __init__(self, lines):
        self.lines = lines

    def iter_lines(self):
        return iter(self.lines)
