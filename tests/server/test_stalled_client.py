"""A streaming client that stops reading mid-stream but keeps its connection open: the server drops it after
`send_timeout_s`, commits a record of exactly the text the connection was handed, holds no generation thread
while it waits, and answers other requests meanwhile."""

from __future__ import annotations

import hashlib
import json
import logging
import socket
import threading

import h11

SEND_TIMEOUT_S = 2.0
SERVER_BUFFER = 4096  # bytes the server side holds for the connection, kernel and uvicorn each
FORCED = "the night is sweet and fair and good my lord " * 40  # 1200 tokens


def test_a_client_that_stops_reading_is_dropped_with_an_exact_record(live, models, long_lm, lm_tokenizer, api_keys,
                                                                     parse_sse, caplog):
    caplog.set_level(logging.WARNING)
    ids = lm_tokenizer(FORCED, add_special_tokens=False)["input_ids"]
    served = {"long": long_lm, "gan": models["gan"], "gmm": models["gmm"]}
    with live(served=served, send_buffer=SERVER_BUFFER, policies=[{"id": "force-text", "options": {"token_ids": ids}}],
              limits={"send_timeout_s": SEND_TIMEOUT_S, "stream_lookback": 0, "max_tokens": 1500},
              server={"generation_threads": 1}) as srv:  # one thread: a stream stuck on its client must not hold it
        sock, head = _stalled_stream(srv.port, api_keys["all"], max_tokens=len(ids))
        with srv.client() as client:  # answered while the stream is open, filling up and then stuck
            image = client.post("/v1/images/generations", json={"model": "gan", "n": 1})
            table = client.post("/v1/tables/generate", json={"model": "gmm", "n": 5})
        assert image.status_code == 200 and table.status_code == 200
        rid = next(line[13:].strip().decode() for line in head.split(b"\r\n") if line.lower().startswith(b"x-request-id:"))
        record = srv.wait_for_record(f"http:all:{rid}", timeout=SEND_TIMEOUT_S + 30)  # it does not hang
        received = _body(head + _read_to_end(sock))  # the client reads again: all it was handed, then the end
        assert not any(t.name == "gensdk-llm-stream" and t.is_alive() for t in threading.enumerate())
        assert srv.service._limiter.borrowed_tokens == 0  # no generation thread held
        with srv.client() as client:
            again = client.post("/v1/completions", json={"model": "long", "prompt": "A", "max_tokens": 3})
        assert again.status_code == 200  # the model is free again
        seqs = {r["record_id"]: r["seq"] for r in srv.audit.records()}
        assert srv.audit.verify().ok
    events = [e["data"] for e in parse_sse(_Lines(received))]
    chunks = [json.loads(d) for d in events]
    sent = "".join(c["choices"][0]["text"] for c in chunks)
    assert "[DONE]" not in events and all(c["choices"][0]["finish_reason"] is None for c in chunks)
    forced = lm_tokenizer.decode(ids)
    assert sent and forced.startswith(sent) and len(sent) < len(forced) // 2  # cut short by the stall
    assert "stream closed by the client" in record["body"]["error"]
    assert record["body"]["outputs"][0]["digest"] == hashlib.sha256(sent.encode()).hexdigest()  # exactly what was sent
    assert seqs[image.json()["audit_record_id"]] < record["seq"] and seqs[table.json()["audit_record_id"]] < record["seq"]
    assert f"request {rid}: the client took no data for 2 s; stream dropped" in caplog.text  # a line, no traceback
    assert "Exception in ASGI application" not in caplog.text and FORCED[:20] not in caplog.text


def test_a_keep_alive_never_strands_a_taken_piece(live, long_lm, lm_tokenizer, api_keys, parse_sse):
    """The client stops reading while the model takes 3 s over one piece (a slow policy pass), with a
    keep-alive due every 2 ms. Keep-alives written during those 3 s would fill the connection's buffer, and
    the piece, taken meanwhile, would be in the record and never delivered. Written only between pieces
    (and drained like them), they cannot: the piece reaches the connection, and the record is exactly the
    text the client was handed."""
    ids = lm_tokenizer(FORCED, add_special_tokens=False)["input_ids"]
    slow = {"id": "slow-once", "options": {"after_chars": 40, "seconds": 3.0}}
    with live(served={"long": long_lm}, send_buffer=SERVER_BUFFER,
              policies=[{"id": "force-text", "options": {"token_ids": ids}}, slow],
              limits={"send_timeout_s": 1.0, "stream_lookback": 0, "max_tokens": 1500, "stream_ping_s": 0.002}) as srv:
        sock, head = _stalled_stream(srv.port, api_keys["all"], max_tokens=len(ids))
        rid = next(line[13:].strip().decode() for line in head.split(b"\r\n") if line.lower().startswith(b"x-request-id:"))
        record = srv.wait_for_record(f"http:all:{rid}", timeout=30)
        received = _body(head + _read_to_end(sock))
    sent = "".join(json.loads(e["data"])["choices"][0]["text"] for e in parse_sse(_Lines(received)))
    assert len(sent) > 40  # the slow piece was delivered, and the stream went on until the buffer was full
    assert record["body"]["outputs"][0]["digest"] == hashlib.sha256(sent.encode()).hexdigest()


def _stalled_stream(port: int, key: str, max_tokens: int) -> tuple[socket.socket, bytes]:
    """Send a streaming request, read the head and a little of the stream, then stop reading (the socket
    stays open)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: the window it advertises
    sock.settimeout(30)
    sock.connect(("127.0.0.1", port))
    body = json.dumps({"model": "long", "prompt": "A", "max_tokens": max_tokens, "stream": True}).encode()
    sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                 + f"Authorization: Bearer {key}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
    head = b""
    while b"data:" not in head:
        chunk = sock.recv(1024)
        assert chunk, f"the server closed the stream at once: {head!r}"
        head += chunk
    return sock, head


def _read_to_end(sock: socket.socket) -> bytes:
    data = b""
    with sock:
        while chunk := sock.recv(65536):
            data += chunk
    return data


def _body(raw: bytes) -> bytes:
    """The response body as h11 parses it (chunked encoding undone), up to where the server cut it off."""
    connection = h11.Connection(h11.CLIENT)
    connection.send(h11.Request(method="POST", target="/", headers=[("Host", "test"), ("Content-Length", "0")]))
    connection.send(h11.EndOfMessage())
    connection.receive_data(raw)
    connection.receive_data(b"")  # the connection ended
    body = b""
    while True:
        try:
            event = connection.next_event()
        except h11.RemoteProtocolError:  # no final chunk: the server dropped the stream
            return body
        if isinstance(event, h11.Response):
            assert event.status_code == 200
        elif isinstance(event, h11.Data):
            body += event.data
        else:
            raise AssertionError(f"the stream ended normally ({event!r}), not dropped")


class _Lines:
    """What parse_sse reads: an object with iter_lines()."""

    def __init__(self, body: bytes):
        self.body = body

    def iter_lines(self):
        return iter(self.body.decode().splitlines())
