"""Load test of `gensdk serve`: latency, throughput, and the audit trail afterwards; against the Python API.

    .venv/bin/python benchmarks/bench_server.py                        # tiny LM and tiny image GAN, trained here
    .venv/bin/python benchmarks/bench_server.py --requests 96 --concurrency 8 --json out.json

What it does, side by side in one run:

1. Trains a tiny GPT-2 (TinyShakespeare from ../shared/data, else generated text) and a tiny image GAN (digits)
   unless --lm / --gan name model directories; writes a server config with the text watermark and the
   provenance policies (every output watermarked, signed and audited).
2. Starts `gensdk serve` in a subprocess on a free loopback port (the server is one process, this load
   generator another), once with dynamic batching and once without.
3. Sends a bounded number of requests (--requests per model, --concurrency at a time, every request bounded
   by a timeout) and records each latency; reports p50, p99 and throughput (requests and outputs per second).
4. Runs the same requests through the Python API in this process (`Engine.generate`, one after another: what
   a Python program does), with the same policies on the same model: the throughput ratio server / Python.
5. Opens the server's audit trail and checks: the chain verifies (`gensdk audit verify`), every answer's audit
   record exists, every released output's digest is in its record (no output without a record), and no
   request left more than one record.

Timings on a shared machine are noisy: compare the ratios, which are measured in the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHAKESPEARE = REPO.parent / "shared" / "data" / "tinyshakespeare.txt"


def main() -> None:
    args = _arguments()
    import torch

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="gensdk-bench-server-"))
    lm, gan = _models(args, work)
    key = _key()
    report: dict[str, Any] = {"requests_per_model": args.requests, "concurrency": args.concurrency, "runs": {}}
    for batching in (True, False):
        name = "batching" if batching else "no-batching"
        config = _config(work / name, lm, gan, key[1], batching)
        report["runs"][name] = _serve_and_load(config, key[0], args)
    report["python_api"] = _python_api(_config(work / "python", lm, gan, key[1], False), args)
    report["ratios"] = {f"{run} {model}": round(report["runs"][run][model]["throughput_rps"] / report["python_api"][model]["throughput_rps"], 3)
                        for run in report["runs"] for model in ("lm", "gan")}
    _print(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2), encoding="utf-8")


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=64, help="requests per model (bounded load)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--images", type=int, default=2, help="images per image request")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds one request may take")
    parser.add_argument("--lm", type=Path, help="an LM directory instead of training a tiny one")
    parser.add_argument("--gan", type=Path, help="an image GAN directory instead of training a tiny one")
    parser.add_argument("--json", help="write the report here")
    return parser.parse_args()


# -- set-up ---------------------------------------------------------------------------------------------------------


def _models(args: argparse.Namespace, work: Path) -> tuple[Path, Path]:
    from gensdk_gan import ImageGANFamily
    from gensdk_llm import LLMFamily

    from gensdk.images import ImageData, load_digits

    lm, gan = args.lm, args.gan
    if lm is None:
        text = work / "train.txt"
        text.write_text(_text(), encoding="utf-8")
        options = dict(vocab_size=512, n_layer=2, n_embd=64, n_head=2, context=128, batch_size=16, steps=60, learning_rate=5e-3)
        lm = LLMFamily(train_options=options).fit(text).save(work / "lm")
    if gan is None:
        digits = load_digits()
        data = ImageData(digits.pixels[:500], digits.labels[:500], digits.classes)
        gan = ImageGANFamily({"epochs": 3, "batch_size": 32, "diagnostic_samples": 0}).fit(data).save(work / "gan")
    return lm, gan


def _text() -> str:
    if SHAKESPEARE.is_file():
        return SHAKESPEARE.read_text(encoding="utf-8")[:100_000]
    rng = random.Random(0)
    words = "the and to of my thou thee love night day sweet fair good lord what is this that not be".split()
    return "\n".join(f"ROMEO:\n{' '.join(rng.choice(words) for _ in range(10))}.\n" for _ in range(3000))


def _key() -> tuple[str, str]:
    from gensdk.server.keys import hash_key, new_key

    key = new_key()
    return key, hash_key(key)


def _config(folder: Path, lm: Path, gan: Path, key_hash: str, batching: bool) -> Path:
    from gensdk_watermark.keys import create_key_file

    folder.mkdir(parents=True)
    create_key_file(folder / "wm.key")
    path = folder / "serve.toml"
    path.write_text(f"""
[server]
host = "127.0.0.1"
port = 0
log_level = "warning"
generation_threads = 16

[engine]
device = "cpu"
audit = "{folder / 'audit.db'}"

[[engine.policies]]
id = "watermark-text"
options = {{ key_file = "{folder / 'wm.key'}" }}

[[engine.policies]]
id = "provenance"
options = {{ key_file = "{folder / 'prov.pem'}", create_key = true }}

[models.lm]
path = "{lm}"
batching = {{ enabled = {str(batching).lower()}, max_batch = 8, wait_ms = 5 }}

[models.gan]
path = "{gan}"
batching = {{ enabled = {str(batching).lower()}, max_batch = 8, wait_ms = 5 }}

[[keys]]
name = "bench"
hash = "{key_hash}"
scopes = ["generate", "audit-read"]
rate_per_minute = 1000000
burst = 100000
""", encoding="utf-8")
    return path


def _requests(args: argparse.Namespace) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    rng = random.Random(0)
    names = ["ROMEO", "JULIET", "NURSE", "MERCUTIO", "FRIAR", "CAPULET"]
    text = [("/v1/completions", {"model": "lm", "prompt": f"{rng.choice(names)}:\n", "max_tokens": args.max_tokens})
            for _ in range(args.requests)]
    images = [("/v1/images/generations", {"model": "gan", "n": args.images, "conditions": {"class": str(i % 10)}})
              for i in range(args.requests)]
    return {"lm": text, "gan": images}


# -- the server run -----------------------------------------------------------------------------------------------


def _serve_and_load(config: Path, key: str, args: argparse.Namespace) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "gensdk", "serve", str(config)], stderr=subprocess.PIPE,
                               text=True, env=env)
    try:
        url = _address(process)
        results = {model: _load(url, key, calls, args) for model, calls in _requests(args).items()}
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=120)
    results["audit"] = _check_audit(config, [a for r in results.values() for a in r.pop("answers")])
    return results


def _address(process: subprocess.Popen) -> str:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        found = re.search(r"on (http://127\.0\.0\.1:\d+)", line)
        if found:
            threading.Thread(target=process.stderr.read, daemon=True).start()  # keep draining its log
            return found.group(1)
        if not line and process.poll() is not None:
            raise SystemExit(f"gensdk serve exited with {process.returncode}")
    raise SystemExit("gensdk serve did not start")


def _load(url: str, key: str, calls: list[tuple[str, dict[str, Any]]], args: argparse.Namespace) -> dict[str, Any]:
    import httpx

    local = threading.local()

    def send(call: tuple[str, dict[str, Any]]) -> tuple[float, int, dict[str, Any]]:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=args.timeout)
        started = time.perf_counter()
        response = local.client.post(call[0], json=call[1])
        return time.perf_counter() - started, response.status_code, response.json()

    with ThreadPoolExecutor(args.concurrency) as pool:
        send(calls[0])  # warm-up: first use of the model, outside the measurement
        started = time.perf_counter()
        answers = list(pool.map(send, calls))
        wall = time.perf_counter() - started
    return _figures(answers, wall)


def _figures(answers: list[tuple[float, int, dict[str, Any]]], wall: float) -> dict[str, Any]:
    latencies = sorted(a[0] for a in answers)
    outputs = sum(len(a[2].get("choices") or a[2].get("data") or []) for a in answers)
    return {
        "requests": len(answers), "wall_s": round(wall, 3),
        "throughput_rps": round(len(answers) / wall, 3), "outputs_per_s": round(outputs / wall, 3),
        "p50_ms": round(1000 * statistics.median(latencies), 1),
        "p99_ms": round(1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 1),
        "statuses": {str(s): sum(1 for a in answers if a[1] == s) for s in sorted({a[1] for a in answers})},
        "answers": answers,
    }


def _check_audit(config: Path, answers: list[tuple[float, int, dict[str, Any]]]) -> dict[str, Any]:
    """The trail verifies; every answer has its record; every released output's digest is in its record."""
    from gensdk.audit import open_audit_sink
    from gensdk.cli import main as cli_main

    audit = str(config.parent / "audit.db")
    with contextlib.redirect_stdout(io.StringIO()):  # `gensdk audit verify`, as an operator would run it
        verified = cli_main.run(["audit", "verify", "--audit", audit, "--json"]) == 0
    with open_audit_sink(audit, create=False) as sink:
        records = {r["record_id"]: r["body"] for r in sink.records()}
    by_request = [b.get("request_id") for b in records.values() if b.get("kind") == "generation"]
    missing = [a for a in answers if a[2].get("audit_record_id") not in records]
    unrecorded = 0
    for _, _, body in answers:
        digests = {o["digest"] for o in records.get(body.get("audit_record_id"), {}).get("outputs", [])}
        for choice in body.get("choices", []):
            unrecorded += hashlib.sha256(choice["text"].encode()).hexdigest() not in digests
        for image in body.get("data", []):
            unrecorded += image.get("b64_json") is None
    return {"trail_verifies": verified, "records": len(records), "answers_without_record": len(missing),
            "released_outputs_without_record": unrecorded,
            "requests_with_several_records": len(by_request) - len(set(by_request))}


# -- the Python API -----------------------------------------------------------------------------------------------


def _python_api(config: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The same requests, one after another, through Engine.generate with the same policies."""
    from gensdk.server import load_server_config
    from gensdk.engine import Engine

    cfg = load_server_config(config)
    results = {}
    with Engine(cfg.engine) as engine:
        for model, calls in _requests(args).items():
            family = engine.load_model(cfg.models[model].path)
            engine.generate(family, _engine_request(calls[0][1]))  # warm-up
            answers = []
            started = time.perf_counter()
            for _, body in calls:
                t0 = time.perf_counter()
                result = engine.generate(family, _engine_request(body))
                answers.append((time.perf_counter() - t0, 200, {"choices": [{}] * len(result.outputs)}))
            results[model] = _figures(answers, time.perf_counter() - started)
            results[model].pop("answers")
    return results


def _engine_request(body: dict[str, Any]) -> dict[str, Any]:
    if "prompt" in body:
        return {"prompts": [body["prompt"]], "params": {"max_new_tokens": body["max_tokens"], "temperature": 1.0, "top_p": 1.0, "stop": []}}
    return {"n": body["n"], "conditions": body["conditions"]}


def _print(report: dict[str, Any]) -> None:
    print(f"{report['requests_per_model']} requests per model, {report['concurrency']} at a time")
    print(f"{'run':<14}{'model':<6}{'req/s':>8}{'out/s':>8}{'p50 ms':>9}{'p99 ms':>9}  statuses")
    rows = [(run, model, figures) for run, res in report["runs"].items() for model, figures in res.items() if model != "audit"]
    rows += [("python-api", model, figures) for model, figures in report["python_api"].items()]
    for run, model, f in rows:
        print(f"{run:<14}{model:<6}{f['throughput_rps']:>8.2f}{f['outputs_per_s']:>8.2f}{f['p50_ms']:>9.1f}{f['p99_ms']:>9.1f}  {f['statuses']}")
    for run, res in report["runs"].items():
        print(f"audit after {run}: {res['audit']}")
    print("throughput server / Python API:", report["ratios"])


if __name__ == "__main__":
    main()
