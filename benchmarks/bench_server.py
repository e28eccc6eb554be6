"""Load test of `gensdk serve`: latency, throughput, and the audit trail afterwards; against the Python API.

    .venv/bin/python benchmarks/bench_server.py                  # tiny LM, image GAN and diffusion model, trained here
    .venv/bin/python benchmarks/bench_server.py --requests 64 --concurrency 8 --rounds 3 --json out.json
    .venv/bin/python benchmarks/bench_server.py --models diffusion --bursts 4     # one model, finer turns

What it does:

1. Trains a tiny GPT-2 (TinyShakespeare from ../shared/data, else generated text), a tiny image GAN and a tiny
   class-conditional diffusion model (a diffusers DDPM, digits at 8x8) unless --lm / --gan / --diffusion name
   model directories; writes server configs with the text watermark and the provenance policies (every
   output watermarked where it applies, signed and audited).
2. Starts two `gensdk serve` processes on free loopback ports, one with dynamic batching and one without
   (the servers are their own processes, this load generator another).
3. In each of --rounds rounds and for each model, measures in turn: the Python API in this process
   (`Engine.generate`, one request after another: what a Python program does, with the same policies on the
   same model), the batching server and the plain server, each with the same --requests requests sent
   --concurrency at a time (each bounded by --timeout). Interleaving keeps the ratios honest on a machine
   whose load from other jobs drifts: each round's ratio compares runs a few seconds apart, and the report
   gives the median over rounds. With --bursts K the targets take turns K times a round, each on its next
   share of the requests, so a round's ratio compares runs about a second apart.
   Besides throughput and latency, each run's CPU time per request: the server process's (from /proc,
   the load generator excluded) and, for the Python API, this process's. CPU time is less disturbed than
   wall time by other jobs on a shared machine.
4. Afterwards opens each server's audit trail and checks: the chain verifies (`gensdk audit verify`), every
   answer's audit record exists, every released output's digest is in its record (no output without a
   record), and no request left more than one record. From every trail (the Python API's too) it reports the
   median time of each engine stage (the records' `timings_ms`): where a target spends its time.

The load generator is http.client with one keep-alive connection per thread; answers are parsed after the
clock stops. It shares the machine's cores with the servers, so it must cost little: httpx took ~5 ms of CPU
per request here, more than the image GAN itself.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import http.client
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
MODELS = ("lm", "gan", "diffusion")
TARGETS = ("python-api", "batching", "no-batching")


def main() -> None:
    args = _arguments()
    import torch

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="gensdk-bench-server-"))
    paths = _models(args, work)
    key = _key()
    report: dict[str, Any] = {"requests_per_model": args.requests, "concurrency": args.concurrency, "rounds": args.rounds,
                              "load_average_before": os.getloadavg()}
    servers = {name: _Server(_config(work / name, paths, key[1], name == "batching", args.generation_threads))
               for name in TARGETS[1:]}
    try:
        for server in servers.values():
            server.start()
        runs = _rounds(args, servers, _PythonApi(_config(work / "python-api", paths, key[1], False, 1)), key[0])
    finally:
        for server in servers.values():
            server.stop()
    report["load_average_after"] = os.getloadavg()
    report["results"] = _summary(runs)
    report["audit"] = {name: _check_audit(server.config, runs, name) for name, server in servers.items()}
    report["stages_ms"] = {name: _stages(work / name / "audit.db") for name in TARGETS}
    _print(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2), encoding="utf-8")


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=64, help="requests per model, target and round (bounded load)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are reported")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--images", type=int, default=2, help="images per image request")
    parser.add_argument("--diffusion-steps", type=int, default=10, help="DDIM steps of the trained diffusion model")
    parser.add_argument("--bursts", type=int, default=1,
                        help="split each round's requests into this many bursts, the targets taking turns burst by "
                             "burst: the ratios then compare runs seconds apart (a shared machine's load drifts)")
    parser.add_argument("--generation-threads", type=int, default=8, help="the servers' [server] generation_threads")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds one request may take")
    parser.add_argument("--lm", type=Path, help="an LM directory instead of training a tiny one")
    parser.add_argument("--gan", type=Path, help="an image GAN directory instead of training a tiny one")
    parser.add_argument("--diffusion", type=Path, help="a diffusion model directory instead of training a tiny one")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS),
                        help="the models to load-test (default: all three); e.g. --models diffusion to iterate fast")
    parser.add_argument("--json", help="write the report here")
    return parser.parse_args()


# -- set-up ---------------------------------------------------------------------------------------------------------


def _models(args: argparse.Namespace, work: Path) -> dict[str, Path]:
    from gensdk_diffusion import DiffusionFamily
    from gensdk_gan import ImageGANFamily
    from gensdk_llm import LLMFamily

    from gensdk.images import ImageData, load_digits

    digits = load_digits()
    data = ImageData(digits.pixels[:500], digits.labels[:500], digits.classes)
    given = {"lm": args.lm, "gan": args.gan, "diffusion": args.diffusion}
    paths = {name: given[name] for name in args.models}
    if "lm" in paths and paths["lm"] is None:
        text = work / "train.txt"
        text.write_text(_text(), encoding="utf-8")
        options = dict(vocab_size=512, n_layer=2, n_embd=64, n_head=2, context=128, batch_size=16, steps=60, learning_rate=5e-3)
        paths["lm"] = LLMFamily(train_options=options).fit(text).save(work / "lm")
    if "gan" in paths and paths["gan"] is None:
        paths["gan"] = ImageGANFamily({"epochs": 3, "batch_size": 32, "diagnostic_samples": 0}).fit(data).save(work / "gan")
    if "diffusion" in paths and paths["diffusion"] is None:
        options = dict(size=8, widths=[8, 16], epochs=2, batch_size=50, train_timesteps=100, class_conditional=True,
                       sample_steps=args.diffusion_steps, license="BSD-3-Clause", data_source="500 scikit-learn digits")
        paths["diffusion"] = DiffusionFamily(train_options=options).fit(data).save(work / "diffusion")
    return paths


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


def _config(folder: Path, paths: dict[str, Path], key_hash: str, batching: bool, threads: int) -> Path:
    from gensdk_watermark.keys import create_key_file

    folder.mkdir(parents=True)
    create_key_file(folder / "wm.key")
    models = "".join(f"""
[models.{name}]
path = "{paths[name]}"
batching = {{ enabled = {str(batching).lower()}, max_batch = 8, wait_ms = 5 }}
""" for name in paths)
    path = folder / "serve.toml"
    path.write_text(f"""
[server]
host = "127.0.0.1"
port = 0
generation_threads = {threads}
log_level = "warning"

[engine]
device = "cpu"
audit = "{folder / 'audit.db'}"

[[engine.policies]]
id = "watermark-text"
options = {{ key_file = "{folder / 'wm.key'}" }}

[[engine.policies]]
id = "provenance"
options = {{ key_file = "{folder / 'prov.pem'}", create_key = true }}
{models}
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
    # Digits of every class: requests for different classes cannot share a model call.
    images = {model: [("/v1/images/generations", {"model": model, "n": args.images, "conditions": {"class": str(i % 10)}})
                      for i in range(args.requests)] for model in ("gan", "diffusion")}
    return {"lm": text, **images}


# -- the runs -------------------------------------------------------------------------------------------------------


def _rounds(args: argparse.Namespace, servers: dict[str, _Server], python: _PythonApi, key: str) -> list[dict[str, Any]]:
    """[{round, model, target, wall_s, latencies, answers, cpu_s}] for every round, model and target. Within a
    round the targets take turns burst by burst (--bursts), and each target's figures add up its bursts."""
    from gensdk.cli.progress import progress_bar

    runs = []
    calls = _requests(args)
    size = -(-args.requests // args.bursts)
    steps = [(r, model, b, target) for r in range(args.rounds) for model in args.models
             for b in range(args.bursts) for target in TARGETS]
    with progress_bar("load test") as progress:
        for done, (index, model, burst, target) in enumerate(steps):
            progress(done, len(steps), f"round {index + 1}: {model} on {target}, burst {burst + 1}")
            part = calls[model][burst * size:(burst + 1) * size]
            if target == "python-api":
                run = python.run(model, part)
            else:
                cpu = servers[target].cpu_s()
                run = _load(servers[target].url, key, part, args)
                run["cpu_s"] = servers[target].cpu_s() - cpu
            runs.append({"round": index, "model": model, "target": target, **run})
        progress(len(steps), len(steps), "done")
    python.close()
    return _joined(runs)


def _joined(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One run per round, model and target: its bursts' times, latencies and answers added up."""
    joined: dict[tuple[int, str, str], dict[str, Any]] = {}
    for run in runs:
        key = (run["round"], run["model"], run["target"])
        if key not in joined:
            joined[key] = {**run, "latencies": list(run["latencies"]), "answers": list(run["answers"])}
            continue
        into = joined[key]
        into["wall_s"] += run["wall_s"]
        into["cpu_s"] += run["cpu_s"]
        into["latencies"] += run["latencies"]
        into["answers"] += run["answers"]
    return list(joined.values())


class _Server:
    """`gensdk serve CONFIG` in a subprocess, on a free loopback port."""

    def __init__(self, config: Path):
        self.config, self.url, self.process = config, "", None

    def start(self) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        self.process = subprocess.Popen([sys.executable, "-m", "gensdk", "serve", str(self.config)],
                                        stderr=subprocess.PIPE, text=True, env=env)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            line = self.process.stderr.readline()
            found = re.search(r"on http://(127\.0\.0\.1:\d+)", line)
            if found:
                threading.Thread(target=self.process.stderr.read, daemon=True).start()  # keep draining its log
                self.url = found.group(1)
                return
            if not line and self.process.poll() is not None:
                raise SystemExit(f"gensdk serve exited with {self.process.returncode}")
        raise SystemExit("gensdk serve did not start")

    def cpu_s(self) -> float:
        """CPU seconds the server process has used (Linux /proc; NaN elsewhere)."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()  # type: ignore[union-attr]
        except OSError:
            return float("nan")
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=120)


def _load(address: str, key: str, calls: list[tuple[str, dict[str, Any]]], args: argparse.Namespace) -> dict[str, Any]:
    host, port = address.split(":")
    local = threading.local()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def send(call: tuple[str, dict[str, Any]]) -> tuple[float, int, bytes]:
        if not hasattr(local, "connection"):
            local.connection = http.client.HTTPConnection(host, int(port), timeout=args.timeout)
        body = json.dumps(call[1])
        started = time.perf_counter()
        local.connection.request("POST", call[0], body, headers)
        response = local.connection.getresponse()
        return time.perf_counter() - started, response.status, response.read()

    with ThreadPoolExecutor(args.concurrency) as pool:
        send(calls[0])  # warm-up: first use of the model, outside the measurement
        started = time.perf_counter()
        raw = list(pool.map(send, calls))
        wall = time.perf_counter() - started
    answers = [(status, json.loads(body)) for _, status, body in raw]  # parsed after the clock stopped
    return {"wall_s": wall, "latencies": [r[0] for r in raw], "answers": answers}


class _PythonApi:
    """The same requests, one after another, through Engine.generate with the same policies."""

    def __init__(self, config: Path):
        from gensdk.engine import Engine
        from gensdk.server import load_server_config

        self.config = load_server_config(config)
        self.engine = Engine(self.config.engine)
        self.families = {m: self.engine.load_model(mc.path) for m, mc in self.config.models.items()}

    def run(self, model: str, calls: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
        family = self.families[model]
        self.engine.generate(family, _engine_request(calls[0][1]))  # warm-up
        latencies, answers = [], []
        started, cpu = time.perf_counter(), time.process_time()
        for _, body in calls:
            t0 = time.perf_counter()
            result = self.engine.generate(family, _engine_request(body))
            latencies.append(time.perf_counter() - t0)
            answers.append((200, {"data": [{}] * len(result.outputs)}))
        return {"wall_s": time.perf_counter() - started, "latencies": latencies, "answers": answers,
                "cpu_s": time.process_time() - cpu}

    def close(self) -> None:
        self.engine.close()


def _engine_request(body: dict[str, Any]) -> dict[str, Any]:
    if "prompt" in body:
        return {"prompts": [body["prompt"]], "params": {"max_new_tokens": body["max_tokens"], "temperature": 1.0, "top_p": 1.0, "stop": []}}
    return {"n": body["n"], "conditions": body["conditions"]}


# -- the report -----------------------------------------------------------------------------------------------------


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per model and target: median throughput over rounds, pooled p50/p99, statuses; per model and server:
    the median over rounds of that round's server / Python API throughput."""
    out: dict[str, Any] = {}
    for model in dict.fromkeys(r["model"] for r in runs):
        mine = [r for r in runs if r["model"] == model]
        rates = {t: [len(r["answers"]) / r["wall_s"] for r in mine if r["target"] == t] for t in TARGETS}
        out[model] = {t: _figures([r for r in mine if r["target"] == t]) for t in TARGETS}
        for target in TARGETS[1:]:
            ratios = [s / p for s, p in zip(rates[target], rates["python-api"])]
            out[model][target]["ratio_to_python_api"] = round(statistics.median(ratios), 3)
            out[model][target]["ratios_by_round"] = [round(x, 3) for x in ratios]
    return out


def _figures(runs: list[dict[str, Any]]) -> dict[str, Any]:
    latencies = sorted(x for r in runs for x in r["latencies"])
    answers = [a for r in runs for a in r["answers"]]
    rates = [len(r["answers"]) / r["wall_s"] for r in runs]
    cpu = [1000 * r["cpu_s"] / len(r["answers"]) for r in runs]
    outputs = [sum(len(a[1].get("choices") or a[1].get("data") or []) for a in r["answers"]) / r["wall_s"] for r in runs]
    return {
        "requests": len(answers), "throughput_rps": round(statistics.median(rates), 2),
        "throughput_rps_by_round": [round(x, 2) for x in rates], "outputs_per_s": round(statistics.median(outputs), 2),
        "cpu_ms_per_request": round(statistics.median(cpu), 2),
        "p50_ms": round(1000 * statistics.median(latencies), 1),
        "p99_ms": round(1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 1),
        "statuses": {str(s): sum(1 for a in answers if a[0] == s) for s in sorted({a[0] for a in answers})},
    }


def _check_audit(config: Path, runs: list[dict[str, Any]], target: str) -> dict[str, Any]:
    """The trail verifies; every answer has its record; every released output's digest is in its record."""
    from gensdk.audit import open_audit_sink
    from gensdk.cli import main as cli_main

    answers = [a[1] for r in runs if r["target"] == target for a in r["answers"]]
    audit = str(config.parent / "audit.db")
    with contextlib.redirect_stdout(io.StringIO()):  # `gensdk audit verify`, as an operator would run it
        verified = cli_main.run(["audit", "verify", "--audit", audit, "--json"]) == 0
    with open_audit_sink(audit, create=False) as sink:
        records = {r["record_id"]: r["body"] for r in sink.records()}
    by_request = [b.get("request_id") for b in records.values() if b.get("kind") == "generation"]
    missing = [a for a in answers if a.get("audit_record_id") not in records]
    unrecorded = 0
    for body in answers:
        digests = {o["digest"] for o in records.get(body.get("audit_record_id"), {}).get("outputs", [])}
        for choice in body.get("choices", []):
            unrecorded += hashlib.sha256(choice["text"].encode()).hexdigest() not in digests
        for image in body.get("data", []):
            unrecorded += _image_digest(image["b64_json"]) not in digests
    return {"trail_verifies": verified, "records": len(records), "answers_without_record": len(missing),
            "released_outputs_without_record": unrecorded,
            "requests_with_several_records": len(by_request) - len(set(by_request))}


def _stages(audit: Path) -> dict[str, dict[str, float]]:
    """Per model, the median time of each engine stage over the generation records (the audit record's
    timings_ms): where a target spends its time, side by side with the Python API's."""
    from gensdk.audit import open_audit_sink

    with open_audit_sink(str(audit), create=False) as sink:
        bodies = [r["body"] for r in sink.records() if r["body"].get("kind") == "generation"]
    out: dict[str, dict[str, float]] = {}
    for model in dict.fromkeys(b["model"]["family"] for b in bodies if isinstance(b.get("model"), dict)):
        timings = [b.get("timings_ms", {}) for b in bodies if b["model"].get("family") == model]
        stages = dict.fromkeys(k for t in timings for k in t)
        out[model] = {k: round(statistics.median(t.get(k, 0.0) for t in timings), 2) for k in stages}
    return out


def _image_digest(b64: str) -> str:
    """The digest gensdk records for an image: of its uint8 pixels with their shape (ImageOutput.digest)."""
    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))))
    pixels = pixels[:, :, None] if pixels.ndim == 2 else pixels
    header = f"uint8:{pixels.shape[0]}x{pixels.shape[1]}x{pixels.shape[2]}\n".encode()
    return hashlib.sha256(header + pixels.tobytes()).hexdigest()


def _print(report: dict[str, Any]) -> None:
    print(f"{report['requests_per_model']} requests per model, target and round, {report['concurrency']} at a time, "
          f"{report['rounds']} rounds; load average before {report['load_average_before'][0]:.2f}, "
          f"after {report['load_average_after'][0]:.2f}")
    print(f"{'model':<10}{'target':<13}{'req/s':>8}{'out/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'vs API':>8}{'cpu ms':>8}  statuses")
    for model, targets in report["results"].items():
        for target, f in targets.items():
            ratio = f.get("ratio_to_python_api")
            shown = f"{ratio:.2f}x" if ratio is not None else "1"
            print(f"{model:<10}{target:<13}{f['throughput_rps']:>8.2f}{f['outputs_per_s']:>8.2f}{f['p50_ms']:>9.1f}"
                  f"{f['p99_ms']:>9.1f}{shown:>8}{f['cpu_ms_per_request']:>8.2f}  {f['statuses']}")
    for target, audit in report["audit"].items():
        print(f"audit of the {target} server: {audit}")
    for target, models in report["stages_ms"].items():
        for model, stages in models.items():
            print(f"median stage ms, {model} on {target}: {stages}")


if __name__ == "__main__":
    main()
