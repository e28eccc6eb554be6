"""`/v1/images/generations` serving a diffusers pipeline (the `diffusion` family) over real HTTP: PNGs that
carry verifiable provenance, concurrent requests sharing denoising runs, seeds that reproduce, and the
family's own refusals as documented 422s."""

from __future__ import annotations

import base64
import io
import threading
from concurrent.futures import ThreadPoolExecutor


def _pixels(b64: str) -> bytes:
    from PIL import Image

    return Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB").tobytes()


def test_a_diffusion_model_serves_images_with_provenance(live, ddpm):
    with live(served={"ddpm": ddpm}) as srv, srv.client() as client:
        response = client.post("/v1/images/generations", json={"model": "ddpm", "n": 2, "conditions": {"class": "3"}})
        body = response.json()
        assert response.status_code == 200, body
        verified = client.post("/v1/verify", json={"kind": "image", "image_b64": body["data"][1]["b64_json"]}).json()
        seeded = [client.post("/v1/images/generations", json={"model": "ddpm", "seed": 7, "conditions": {"class": "1"}}).json()
                  for _ in range(2)]
        prompt = client.post("/v1/images/generations", json={"model": "ddpm", "prompt": "a cat"})
        unknown = client.post("/v1/images/generations", json={"model": "ddpm", "conditions": {"class": "11"}})
        record = srv.record(body["audit_record_id"])["body"]
    from PIL import Image

    assert [d["index"] for d in body["data"]] == [0, 1] and body["verdict"] == "pass"
    assert Image.open(io.BytesIO(base64.b64decode(body["data"][0]["b64_json"]))).size == (8, 8)
    assert record["model"]["family"] == "diffusion" and len(record["outputs"]) == 2
    assert verified["ok"] and verified["result"]["manifest"]["audit"]["record_id"] == body["audit_record_id"]
    assert _pixels(seeded[0]["data"][0]["b64_json"]) == _pixels(seeded[1]["data"][0]["b64_json"])  # same seed, same image
    assert seeded[0]["audit_record_id"] != seeded[1]["audit_record_id"]
    for refused in (prompt, unknown):  # the family's RequestError, named
        assert refused.status_code == 422 and refused.json()["error"]["type"] == "invalid_request"
    assert "class" in unknown.json()["error"]["message"]


def test_concurrent_diffusion_requests_share_denoising_runs(live, ddpm):
    # classes 5, 6, 5 and 7: requests for different classes share a run, each image keeping its own class
    start = threading.Barrier(4)

    def ask(client_n):
        client, n = client_n
        start.wait()
        return client.post("/v1/images/generations", json={"model": "ddpm", "n": n, "conditions": {"class": str(n + 4)}})

    with live(served={"ddpm": ddpm}, batching={"max_batch": 8, "wait_ms": 300}) as srv:
        clients = [srv.client() for _ in range(4)]
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(ask, zip(clients, [1, 2, 1, 3])))
        for client in clients:
            client.close()
        batcher = srv.service.models["ddpm"].batcher
        records = {r["record_id"]: r["body"] for r in srv.audit.records()}
        assert srv.audit.verify().ok
    assert [a.status_code for a in answers] == [200] * 4
    assert [len(a.json()["data"]) for a in answers] == [1, 2, 1, 3]  # each its own slice of the shared runs
    assert batcher.calls < batcher.batched_requests == 4
    bodies = [records[a.json()["audit_record_id"]] for a in answers]
    assert len({b["record_id"] for b in bodies}) == 4 and all("batch" in b for b in bodies)
    assert len({b["batch"]["call_id"] for b in bodies}) == batcher.calls
