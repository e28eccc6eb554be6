"""Concurrent load over real HTTP: requests batched onto the model, every one with its own committed record,
the trail verifying afterwards; a hanging policy holds up only its own request."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from gensdk.cli import main as cli_main


def _together(srv, calls):
    """Send every (path, json) at once from its own thread; (status, body, finished_at) in order."""
    start = threading.Barrier(len(calls))

    def send(call):
        path, body = call
        with srv.client() as client:
            start.wait()
            response = client.post(path, json=body)
            return response.status_code, response.json(), time.monotonic()

    with ThreadPoolExecutor(len(calls)) as pool:
        return [f.result() for f in [pool.submit(send, c) for c in calls]]


def test_concurrent_mixed_load_is_batched_and_fully_audited(live, tmp_path):
    text = [("/v1/completions", {"model": "lm", "prompt": f"LINE {i}:", "max_tokens": 8}) for i in range(6)]
    chat = [("/v1/chat/completions", {"model": "lm", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5})] * 2
    other = [("/v1/images/generations", {"model": "gan", "n": 2})] * 2 + [("/v1/tables/generate", {"model": "gmm", "n": 20})]
    with live(batching={"max_batch": 8, "wait_ms": 100}) as srv:
        answers = _together(srv, text + chat + other)
        lm, gan = srv.service.models["lm"].batcher, srv.service.models["gan"].batcher
        audit_path = str(srv.audit.path)
        ids = [body["audit_record_id"] for _, body, _ in answers]
        records = {r["record_id"]: r["body"] for r in srv.audit.records()}
    assert [status for status, _, _ in answers] == [200] * len(answers)
    assert len(set(ids)) == len(ids) and set(ids) <= set(records)  # every answer has its own committed record
    assert lm.calls < lm.batched_requests  # requests shared model calls
    assert sum("batch" in records[i] for i in ids) == lm.batched_requests + gan.batched_requests
    assert cli_main.run(["audit", "verify", "--audit", audit_path]) == 0  # what `gensdk audit verify` says


def test_a_hanging_policy_holds_up_only_its_own_request(live):
    policies = [{"id": "hang-on-word", "timeout_s": 1.5, "options": {"word": "hang", "seconds": 30}}]
    calls = [("/v1/completions", {"model": "lm", "prompt": "please hang", "max_tokens": 4})]
    calls += [("/v1/completions", {"model": "lm", "prompt": f"ROMEO {i}:", "max_tokens": 4}) for i in range(3)]
    with live(policies=policies, batching={"max_batch": 4, "wait_ms": 100}) as srv:
        (hung_status, hung, hung_at), *others = _together(srv, calls)
        assert srv.audit.verify().ok
    assert hung_status == 451
    assert hung["policies"][0]["status"] == "timeout" and hung["audit_record_id"]
    for status, body, finished_at in others:
        assert status == 200 and body["policies"][0]["status"] == "ok"
        assert finished_at < hung_at  # they did not wait for the stuck policy


def test_slow_policy_times_out_each_request_on_its_own_while_the_server_answers(live):
    policies = [{"id": "slow", "timeout_s": 1.0, "options": {"seconds": 20}}]
    with live(policies=policies) as srv:
        box = {}
        thread = threading.Thread(target=lambda: box.update(answers=_together(srv, [
            ("/v1/tables/generate", {"model": "gmm", "n": 5}), ("/v1/images/generations", {"model": "gan"})])))
        thread.start()
        with srv.client() as client:
            assert client.get("/v1/models").status_code == 200  # the event loop is free meanwhile
        thread.join()
    for status, body, _ in box["answers"]:
        assert status == 451 and body["policies"][0]["status"] == "timeout" and body["error"]["type"] == "output_blocked"
