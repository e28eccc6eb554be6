"""`gensdk serve`'s HTTP API on Ray Serve, over real HTTP: the same requests sent to a `gensdk serve` server
(uvicorn, in this process) and to a Ray Serve deployment of one replica get the same statuses, error bodies
and results, and the replica's audit trail holds what it sent.

Two models: the mock text family (its queued "a forbidden leak" is blocked; the text watermark, which the mock
cannot apply, blocks anything else it writes: fail closed) and a tiny random GPT-2 that is watermarked and
streams. The deployment sits under route_prefix="/gensdk", so the key check is shown to hold under a
prefix too.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

import pytest

from gensdk.audit import SQLiteAuditSink
from gensdk.testing import MockFamily

pytest.importorskip("fastapi", reason="the server extra is not installed: pip install 'gensdk[server]'")

PLUGINS = ["gensdk.testing.plugin", "gensdk_llm.plugin", "gensdk_watermark.plugin"]
WATERMARK_KEY = "a7" * 32  # a test key, never a real one
PREFIX = "/gensdk"


def tiny_gpt2(path: Path) -> Path:
    """A random GPT-2 of width 16 with a byte-level tokenizer: it writes noise, fast, and streams."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    vocab = {symbol: i for i, symbol in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    vocab["<|endoftext|>"] = eos = len(vocab)
    bpe = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    bpe.pre_tokenizer, bpe.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=eos + 1, n_positions=64, n_embd=16, n_layer=1, n_head=2, bos_token_id=eos,
                        eos_token_id=eos)
    GPT2LMHeadModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def server_config(root: Path, models: dict[str, Path], key_hashes: dict[str, str]) -> dict[str, Any]:
    return {
        "engine": {"device": "cpu", "audit": str(root / "audit.db"), "policies": [
            {"id": "keyword", "options": {"words": ["forbidden"]}},
            {"id": "watermark-text", "options": {"key": WATERMARK_KEY}},
        ]},
        "models": {name: {"path": str(path)} for name, path in models.items()},
        "keys": [
            {"name": "all", "hash": key_hashes["all"], "scopes": ["generate", "detect", "audit-read"]},
            {"name": "gen", "hash": key_hashes["gen"], "scopes": ["generate"]},
        ],
        "limits": {"max_body_bytes": 4096},
        "server": {"generation_threads": 2},
    }


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """The reference server generates in this process: one torch thread, as in a replica (Ray sets
    OMP_NUM_THREADS=1 for an actor of one CPU); on two shared cores, more threads spin against each other."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def keys() -> dict[str, str]:
    from gensdk.server.keys import new_key

    return {"all": new_key(), "gen": new_key()}


@pytest.fixture(scope="module")
def configs(tmp_path_factory: pytest.TempPathFactory, keys: dict[str, str]) -> dict[str, dict[str, Any]]:
    """One configuration each for the reference server and the deployment: the same but for the audit trail."""
    from gensdk.server.keys import hash_key

    root = tmp_path_factory.mktemp("serve")
    models = {"mock": MockFamily().enqueue("a forbidden leak").save(root / "mock"), "lm": tiny_gpt2(root / "lm")}
    hashes = {name: hash_key(key) for name, key in keys.items()}
    return {where: server_config(root / where, models, hashes) for where in ("reference", "ray")}


class ReferenceServer:
    """What `gensdk serve` runs: the Service, its app and uvicorn on a loopback port, in a thread."""

    def __init__(self, config: dict[str, Any]):
        from gensdk.distributed.job import import_plugins
        from gensdk.server import ServerConfig, Service
        from gensdk.server.app import bind, uvicorn_server

        service = Service(ServerConfig.parse(config), plugins=import_plugins(PLUGINS), load_entrypoints=False)
        sock = bind("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self.server = uvicorn_server(service, configure_logging=False)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started and self.thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self.server.started, "the reference server did not start"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def servers(ray_cluster: Any, configs: dict[str, dict[str, Any]]) -> Iterator[tuple[str, str, Path]]:
    """The reference server's URL, the deployment's URL (under PREFIX) and the replica's audit trail. Both start
    at once: each spends most of its start-up importing torch and transformers."""
    from ray import serve

    from gensdk.distributed.serve import server_app

    for config in configs.values():
        Path(config["engine"]["audit"]).parent.mkdir(exist_ok=True)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    app = server_app(configs["ray"], plugins=PLUGINS, load_entrypoints=False)
    with ThreadPoolExecutor(1) as pool:
        deploying = pool.submit(serve.run, app, name="gensdk", route_prefix=PREFIX)
        reference = ReferenceServer(configs["reference"])
        try:
            deploying.result()
            yield reference.url, f"http://127.0.0.1:{port}{PREFIX}", Path(configs["ray"]["engine"]["audit"])
        finally:
            reference.stop()
            serve.shutdown()


# Requests in the order they are sent to each server: the mock's queued "a forbidden leak" is the first output
# either one generates. (name, method, path, key, body): a dict is sent as JSON, bytes as they are.
CASES: list[tuple[str, str, str, str | None, Any]] = [
    ("every output blocked", "POST", "/v1/completions", "gen", {"model": "mock", "prompt": "x"}),
    ("released", "POST", "/v1/completions", "gen", {"model": "lm", "prompt": "ab", "n": 2, "max_tokens": 8, "seed": 3}),
    ("blocked at the prompt", "POST", "/v1/chat/completions", "gen",
     {"model": "mock", "messages": [{"role": "user", "content": "say forbidden things"}]}),
    ("no key", "POST", "/v1/completions", None, {"model": "mock", "prompt": "hi"}),
    ("unknown key", "POST", "/v1/completions", "gsk_" + "x" * 43, {"model": "mock", "prompt": "hi"}),
    ("missing scope", "POST", "/v1/audit/verify", "gen", {}),
    ("not JSON", "POST", "/v1/completions", "gen", b"{not json"),
    ("unknown model", "POST", "/v1/completions", "gen", {"model": "nope", "prompt": "hi"}),
    ("a policy switched off", "POST", "/v1/completions", "gen",
     {"model": "mock", "prompt": "hi", "disable_policies": ["keyword"]}),
    ("too large", "POST", "/v1/completions", "gen", {"model": "mock", "prompt": "x" * 5000}),
    ("audit verify", "POST", "/v1/audit/verify", "all", {}),
    ("models", "GET", "/v1/models", "all", None),
    ("health", "GET", "/healthz", None, None),
]
EXPECTED = {"every output blocked": 451, "released": 200, "blocked at the prompt": 451,
            "no key": 401, "unknown key": 401, "missing scope": 403, "not JSON": 400, "unknown model": 404,
            "a policy switched off": 422, "too large": 413, "audit verify": 200, "models": 200, "health": 200}
# Differ between any two answers by nature: ids, times, each trail's own head.
_VOLATILE = {"request_id", "audit_record_id", "id", "created", "head", "head_hash", "time"}
_RECORD_ID = re.compile(r"\b[0-9a-f]{32}\b")  # an audit record id inside a message


def send(client: Any, base: str, keys: dict[str, str], case: tuple) -> Any:
    _, method, path, key, body = case
    headers = {"Authorization": f"Bearer {keys.get(key, key)}"} if key else {}
    if isinstance(body, bytes):
        return client.request(method, base + path, content=body, headers={**headers, "content-type": "application/json"})
    return client.request(method, base + path, json=body, headers=headers)


def stable(value: Any) -> Any:
    """The answer without what differs between two servers by nature (ids, times)."""
    if isinstance(value, dict):
        return {k: stable(v) for k, v in value.items() if k not in _VOLATILE}
    if isinstance(value, list):
        return [stable(v) for v in value]
    return _RECORD_ID.sub("<record id>", value) if isinstance(value, str) else value


def test_ray_serve_answers_like_gensdk_serve(servers: tuple[str, str, Path], keys: dict[str, str]) -> None:
    import httpx

    reference, url, audit = servers
    with httpx.Client(timeout=120) as client:
        answers = [(case[0], send(client, reference, keys, case), send(client, url, keys, case)) for case in CASES]
    for name, ours, theirs in answers:
        assert (name, theirs.status_code) == (name, EXPECTED[name]), theirs.text
        assert (name, theirs.status_code, stable(theirs.json())) == (name, ours.status_code, stable(ours.json()))
        if "request_id" in theirs.json():  # gensdk's X-Request-ID comes first; Ray's proxy adds its own after it
            assert theirs.headers.get_list("x-request-id")[0] == theirs.json()["request_id"]
    by_name = {name: theirs for name, _, theirs in answers}
    blocked = by_name["every output blocked"]
    assert blocked.json()["error"]["type"] == "output_blocked" and "leak" not in blocked.text  # never the content
    assert any(f["code"] == "keyword" for f in blocked.json()["findings"])
    assert [c["index"] for c in by_name["released"].json()["choices"]] == [0, 1]  # texts: equal to the reference's
    assert by_name["no key"].json()["error"]["type"] == "unauthorized"  # the key is checked under the prefix too
    assert by_name["audit verify"].json()["verdict"] == "ok"

    with SQLiteAuditSink(audit, create=False) as sink:  # written by the replica, in its own process
        assert sink.verify().ok
        records = {r["record_id"]: r["body"] for r in sink.records()}
    released = by_name["released"].json()
    digests = [hashlib.sha256(c["text"].encode()).hexdigest() for c in released["choices"]]
    assert [o["digest"] for o in records[released["audit_record_id"]]["outputs"]] == digests
    assert records[blocked.json()["audit_record_id"]]["verdict"] == "block"
    assert records[released["audit_record_id"]]["request_id"] == f"http:gen:{released['request_id']}"


def test_a_stream_through_ray_serve_is_the_audited_text(servers: tuple[str, str, Path], keys: dict[str, str]) -> None:
    import httpx

    reference, url, audit = servers
    request = {"model": "lm", "prompt": "ab", "max_tokens": 12, "seed": 5, "stream": True}
    texts = []
    for base in (reference, url):
        with httpx.Client(timeout=120, headers={"Authorization": f"Bearer {keys['gen']}"}) as client:
            with client.stream("POST", base + "/v1/completions", json=request) as response:
                assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
                data = [line[len("data: "):] for line in response.iter_lines() if line.startswith("data: ")]
        assert data[-1] == "[DONE]"
        chunks = [json.loads(d) for d in data[:-1]]
        texts.append("".join(c["choices"][0]["text"] for c in chunks))  # chunks: the replica's, after the loop
    assert texts[0] == texts[1] and texts[1]  # same model, seed and watermark key: the same text, streamed
    with SQLiteAuditSink(audit, create=False) as sink:
        record = sink.lookup(chunks[-1]["audit_record_id"])
    assert record["body"]["outputs"][0]["digest"] == hashlib.sha256(texts[1].encode()).hexdigest()


def test_deleting_the_deployment_closes_its_audit_trail(servers: tuple[str, str, Path]) -> None:
    from ray import serve

    wal = Path(f"{servers[2]}-wal")
    assert wal.exists()  # the replica holds the trail open
    serve.delete("gensdk")
    # Ray ran the application's lifespan shutdown: the Service closed, so SQLite removed the WAL of its last
    # connection (the trail's records are all in the file).
    assert not wal.exists()
    with SQLiteAuditSink(servers[2], create=False) as sink:
        assert sink.verify().ok


@pytest.mark.parametrize(
    ("args", "message"),
    [({}, "needs config=SERVER.toml"), ({"config": "s.toml", "models": "a=/x"}, "unknown argument.*models"),
     ({"config": "s.toml", "num_replicas": "0"}, "num_replicas must be")],
)
def test_app_builder_names_what_is_wrong(args: dict, message: str) -> None:
    from gensdk.distributed.serve import app_builder
    from gensdk.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        app_builder(args)


def test_a_bad_configuration_stops_on_the_driver(tmp_path: Path, configs: dict[str, dict[str, Any]]) -> None:
    from gensdk.distributed.serve import server_app
    from gensdk.errors import ConfigError, GensdkError

    config = tmp_path / "serve.toml"
    config.write_text('[models.m]\npath = "no/such/dir"\n[[keys]]\nname = "a"\nhash = "sha256:' + "0" * 64 + '"\n'
                      'scopes = ["generate"]\n')
    with pytest.raises(ConfigError, match="models.m.path: no/such/dir is not a directory"):
        server_app(config)
    config.write_text(config.read_text() + "typo = 1\n")
    with pytest.raises(ConfigError, match="typo"):
        server_app(config)
    # A policy no plugin provides: Ray alone would say only that the deployment failed.
    unknown = {**configs["ray"], "engine": {**configs["ray"]["engine"], "policies": [{"id": "no-such-policy"}]}}
    with pytest.raises(GensdkError, match="no-such-policy"):
        server_app(unknown, plugins=PLUGINS, load_entrypoints=False)
