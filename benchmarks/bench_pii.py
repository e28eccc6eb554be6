"""PII detection: precision, recall and throughput on a labelled corpus generated with Faker.

    .venv/bin/python benchmarks/bench_pii.py [--docs 4000] [--seed 0] [--repeat 5] [--baseline DIR] [--compiled]
                                             [--presidio /tmp/bench-venv/bin/python] [--json]

The corpus: documents of a few sentences in eight locales, each sentence holding one entity (or none) in an
ordinary frame, with its exact span recorded. Hard negatives sit beside them: dates, times, prices, postal
addresses, order numbers, version strings, Luhn-invalid card-like numbers, IBANs with a wrong check digit,
never-issued SSNs, out-of-range IPv4 quads, company and city names. Phone numbers are Faker's for the locale,
kept when libphonenumber calls them valid for the locale's region (the detector's definition of a phone
number); Faker's others are reported separately. Scores are exact-span matches per entity type; the streamed
score feeds each document in random 1-40 character chunks through StreamingPIIScanner.

Timings are the best of --repeat runs, each on a freshly built scanner (so no phone-number cache is warm) and a
freshly collected heap, as wall-clock and as CPU time of this process: on a shared machine the CPU time is the
steadier of the two. Throughput is measured on the corpus as one text, document by document (one scan()
call each), in batches of 64 documents (one scan_many() call each, as the policy scans a micro-batch of
outputs), per entity type (a scanner looking for that type only), on TinyShakespeare (plain prose) and on prose
with a corpus document every ~2,000 characters. The load average before and after the timings is printed with them.

With --baseline DIR (a directory holding another gensdk_privacy package, e.g. an earlier commit's
`policies/`), each job is also run for it, in a subprocess, right before or after ours; printed are the ratio
of the two best-of figures and the median over the rounds of the ratio of each pair of runs.
With --presidio PYTHON (a separate venv with presidio-analyzer), Presidio's pattern recognisers are measured on
the same corpus (no spaCy model can be downloaded here, so its NER-based PERSON recogniser cannot run).
"""

from __future__ import annotations

import argparse
import gc
import ipaddress
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# --policies DIR (used for --baseline) puts another gensdk_privacy first on the path, before anything imports it.
_POLICIES = sys.argv[sys.argv.index("--policies") + 1] if "--policies" in sys.argv else str(Path(__file__).resolve().parents[1] / "policies")
sys.path.insert(0, _POLICIES)

BATCH = 64  # documents per scan_many call: a micro-batch as the engine hands it to the policy
LOCALES = {"en_US": "US", "en_GB": "GB", "de_DE": "DE", "fr_FR": "FR", "es_ES": "ES", "it_IT": "IT", "nl_NL": "NL", "pt_BR": "BR"}
FRAMES = [
    "Please contact {} if anything is unclear.", "The form lists {} as the main entry.", "According to the file, {} was updated last week.",
    "{} appears in the second paragraph of the letter.", "We noted {} on the invoice.", "Bitte verwenden Sie {} für Rückfragen.",
    "Le dossier mentionne {} à la page trois.", "Según el registro, {} sigue activo.", "Il modulo riporta {} come riferimento.",
    "Het formulier noemt {} als contact.", "O cadastro informa {} como referência.", "Reply to {}.", "Details: {}",
]
PLAIN = [
    "The meeting moved to {date} at {time}.", "Order #{order} shipped on {date} for ${price}.", "Version {version} fixed {n} bugs.",
    "The office is at {address}.", "{company} reported a {pct}% increase in {year}.", "Room {room} seats {n} people; call it a day.",
    "The reading was {decimal} at {time} on {date2}.", "Reference number {card_bad} was rejected.", "Account {iban_bad} failed validation.",
    "The test value {ssn_bad} is never issued.", "Packets from {ip_bad} were malformed.", "Commit {hexhash} is in {city}.",
    "{word} {word2} said the weather in {city} was fine.", "Population of {city}: {bignum} in {year}.",
]


def make_corpus(docs: int, seed: int) -> tuple[list[tuple[str, list[tuple[str, int, int]]]], dict[str, int]]:
    from faker import Faker

    rng = random.Random(seed)
    fakers = {loc: Faker(loc) for loc in LOCALES}
    for i, f in enumerate(fakers.values()):
        f.seed_instance(seed + i)
    stats = {"phones_generated": 0, "phones_invalid_skipped": 0}
    corpus = []
    for _ in range(docs):
        loc = rng.choice(list(LOCALES))
        text, labels = "", []
        for _ in range(rng.randint(2, 5)):
            sentence, label = _sentence(rng, fakers[loc], loc, stats)
            if label:
                kind, value = label
                start = len(text) + sentence.index("\x00")
                labels.append((kind, start, start + len(value)))
                sentence = sentence.replace("\x00", value)
            text += sentence + " "
        corpus.append((text, labels))
    return corpus, stats


def _sentence(rng: random.Random, fake, loc: str, stats: dict[str, int]) -> tuple[str, tuple[str, str] | None]:
    if rng.random() < 0.45:
        return _plain(rng, fake), None
    kind = rng.choice(["EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "US_SSN", "IPV4", "IPV6", "PERSON"])
    value = _value(rng, fake, loc, kind, stats)
    if value is None:
        return _plain(rng, fake), None
    return rng.choice(FRAMES).format("\x00"), (kind, value)


def _value(rng, fake, loc, kind, stats):
    if kind == "EMAIL":
        return rng.choice([fake.email, fake.free_email, fake.company_email])()
    if kind == "PHONE":
        import phonenumbers

        number = fake.phone_number()
        stats["phones_generated"] += 1
        try:
            valid = phonenumbers.is_valid_number(phonenumbers.parse(number, LOCALES[loc]))
        except phonenumbers.NumberParseException:
            valid = False
        if not valid:
            stats["phones_invalid_skipped"] += 1
            return None
        return number
    if kind == "CREDIT_CARD":
        digits = fake.credit_card_number()
        style = rng.random()
        if len(digits) == 16 and style < 0.3:
            return " ".join(digits[i : i + 4] for i in range(0, 16, 4))
        if len(digits) == 16 and style < 0.5:
            return "-".join(digits[i : i + 4] for i in range(0, 16, 4))
        return digits
    if kind == "IBAN":
        iban = fake.iban()
        return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4)) if rng.random() < 0.5 else iban
    if kind == "US_SSN":
        return _ssn(rng)
    if kind == "IPV4":
        return fake.ipv4()
    if kind == "IPV6":
        address = fake.ipv6()
        return str(ipaddress.IPv6Address(address)) if rng.random() < 0.5 else address
    return f"{fake.first_name()} {fake.last_name()}"


def _ssn(rng: random.Random) -> str:
    area = rng.choice([a for a in range(1, 900) if a != 666])
    return f"{area:03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"


def _luhn_valid(digits: str) -> bool:
    """The textbook Luhn check: the corpus does not depend on the detector it measures."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def _plain(rng: random.Random, fake) -> str:
    digits = "".join(rng.choice("0123456789") for _ in range(16))
    card_bad = digits[:-1] + str((int(digits[-1]) + rng.randint(1, 9)) % 10)  # at most one in ten is Luhn-valid
    while _luhn_valid(card_bad):
        card_bad = card_bad[:-1] + str((int(card_bad[-1]) + 1) % 10)
    iban = fake.iban()
    iban_bad = iban[:2] + f"{(int(iban[2:4]) + rng.randint(1, 50)) % 100:02d}" + iban[4:]
    values = {
        "date": fake.date(), "date2": fake.date(pattern="%d.%m.%Y"), "time": fake.time(), "order": rng.randint(10000, 99999),
        "price": f"{rng.uniform(1, 5000):,.2f}", "version": f"{rng.randint(1, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 20)}",
        "n": rng.randint(2, 400), "address": fake.address().replace("\n", ", "), "company": fake.company(),
        "pct": rng.randint(1, 99), "year": rng.randint(1900, 2030), "room": rng.randint(100, 999),
        "decimal": f"{rng.uniform(0, 1000):.4f}", "card_bad": card_bad, "iban_bad": iban_bad,
        "ssn_bad": rng.choice(["000", "666", f"9{rng.randint(0, 99):02d}"]) + f"-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}",
        "ip_bad": f"{rng.randint(256, 999)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}",
        "hexhash": f"{rng.getrandbits(160):040x}", "city": fake.city(), "word": fake.word().capitalize(),
        "word2": fake.word(), "bignum": f"{rng.randint(1000, 9999999):,}",
    }
    return rng.choice(PLAIN).format(**values)


# -- scoring --------------------------------------------------------------------------------------------------


def score(corpus, predictions) -> dict[str, dict[str, float]]:
    kinds = sorted({k for _, labels in corpus for k, *_ in labels})
    table = {}
    for kind in kinds:
        tp = fp = fn = 0
        for (_, gold), pred in zip(corpus, predictions):
            g = {(s, e) for k, s, e in gold if k == kind}
            p = {(s, e) for k, s, e in pred if k == kind}
            tp, fp, fn = tp + len(g & p), fp + len(p - g), fn + len(g - p)
        table[kind] = {"precision": tp / max(1, tp + fp), "recall": tp / max(1, tp + fn), "support": tp + fn, "fp": fp, "fn": fn}
    return table


def run_ours(corpus, seed: int) -> dict:
    from gensdk_privacy.pii import PIIScanner, StreamingPIIScanner

    scanner = PIIScanner()
    texts = [t for t, _ in corpus]
    predictions = [[(e.type, e.start, e.end) for e in scanner.scan(t)] for t in texts]
    rng = random.Random(seed)
    streamed = []
    for text in texts:
        stream = StreamingPIIScanner(scanner)
        pos = 0
        while pos < len(text):
            step = rng.randint(1, 40)
            stream.feed(text[pos : pos + step])
            pos += step
        stream.finish()
        streamed.append([(e.type, e.start, e.end) for e in stream.entities])
    batched = [[(e.type, e.start, e.end) for e in found] for i in range(0, len(texts), BATCH)
               for found in _scan_many(scanner, texts[i : i + BATCH])]
    return {"scores": score(corpus, predictions), "streamed_scores": score(corpus, streamed),
            "streamed_differs": sum(a != b for a, b in zip(predictions, streamed)),
            "batched_differs": sum(a != b for a, b in zip(predictions, batched))}


def timing_jobs(texts: list[str]) -> dict:
    """name -> (make a fresh scanner, scan with it, the text measured). Fresh scanners: no phone cache is warm."""
    from gensdk_privacy.detectors import ENTITY_TYPES
    from gensdk_privacy.pii import PIIScanner

    joined = " ".join(texts)
    batches = [texts[i : i + BATCH] for i in range(0, len(texts), BATCH)]
    jobs = {"one_text": (PIIScanner, lambda s: s.scan(joined), joined),
            "per_document": (PIIScanner, lambda s: [s.scan(t) for t in texts], joined),
            f"batch_of_{BATCH}_documents": (PIIScanner, lambda s: [_scan_many(s, b) for b in batches], joined)}
    prose_path = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"
    if prose_path.exists():
        prose = prose_path.read_text()
        mixed = _prose_with_pii(prose, texts)
        jobs["tinyshakespeare"] = (PIIScanner, lambda s: s.scan(prose), prose)
        jobs["prose_with_pii"] = (PIIScanner, lambda s: s.scan(mixed), mixed)
    for kind in ENTITY_TYPES:
        jobs[f"only_{kind}"] = (lambda kind=kind: PIIScanner([kind]), lambda s: s.scan(joined), joined)
    PIIScanner().scan("warm up: compile the patterns and name lists once, ada@example.org")
    return jobs


def _scan_many(scanner, texts: list[str]) -> list:
    """The batch path; a baseline scanner without one (before scan_many existed) scans the texts one by one,
    as its policy did."""
    scan_many = getattr(scanner, "scan_many", None)
    return scan_many(texts) if scan_many is not None else [scanner.scan(t) for t in texts]


def time_job(job: tuple) -> list[float]:
    """[wall seconds, CPU seconds] of one run of a job, on a fresh scanner and a freshly collected heap: a full
    collection that garbage of earlier jobs would set off does not land in this one (the scanner's own
    collections still count)."""
    make, run, _ = job
    scanner = make()
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    run(scanner)
    return [time.perf_counter() - wall, time.process_time() - cpu]


def rates(jobs: dict, rounds: list[dict]) -> dict:
    """MB/s (UTF-8 bytes) from the best of the rounds: {"wall": ..., "cpu": ...} per job."""
    result = {}
    for name, (_, _, text) in jobs.items():
        megabytes = len(text.encode()) / 1e6
        wall, cpu = (min(r[name][i] for r in rounds) for i in (0, 1))
        result[name] = {"wall": megabytes / wall, "cpu": megabytes / max(cpu, 1e-9), "megabytes": megabytes}
    return result


def speed_ups(ours: list[dict], theirs: list[dict]) -> dict:
    """Per job, the median over the rounds of (baseline CPU time / our CPU time), the two runs of a job taken
    back to back: steadier on a shared machine than the ratio of two best-of figures."""
    return {name: statistics.median(t[name][1] / max(o[name][1], 1e-9) for o, t in zip(ours, theirs)) for name in ours[0]}


def run_timings(texts: list[str], args) -> tuple[dict, dict | None]:
    """Our rates and, with --baseline, the baseline's: each of its runs in a subprocess right before or after
    ours of the same job (the order alternating by round), so that both see the same load on a shared machine."""
    jobs = timing_jobs(texts)
    baseline = None
    if args.baseline:
        args.baseline = baseline_policies(args.baseline)
        command = [sys.executable, __file__, "--policies", args.baseline, "--serve-rounds", "--docs", str(args.docs),
                   "--seed", str(args.seed)]
        baseline = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if baseline.stdout.readline() != "ready\n":  # corpus built, patterns compiled
            raise SystemExit(f"the baseline in {args.baseline} did not start (see its error above)")
    ours, theirs = [], []
    try:
        for round_index in range(args.repeat):
            ours.append({})
            theirs.append({})
            for name, job in jobs.items():
                if baseline is not None and round_index % 2:
                    theirs[-1][name] = _baseline_run(baseline, name)
                ours[-1][name] = time_job(job)
                if baseline is not None and not round_index % 2:
                    theirs[-1][name] = _baseline_run(baseline, name)
    finally:
        if baseline is not None:
            baseline.stdin.close()
            baseline.wait(timeout=60)
    if baseline is None:
        return rates(jobs, ours), None
    return rates(jobs, ours), {**rates(jobs, theirs), "speed_up": speed_ups(ours, theirs)}


def baseline_policies(directory: str) -> str:
    """The directory holding the baseline's gensdk_privacy: DIR itself or DIR/policies (a `git archive` of
    `policies` unpacked into DIR). Without a package there, the subprocess would import the installed one, this
    checkout's, and every speed-up would silently read 1.00x."""
    for candidate in (Path(directory), Path(directory) / "policies"):
        if (candidate / "gensdk_privacy" / "pii.py").is_file():
            return str(candidate)
    raise SystemExit(f"--baseline {directory}: no gensdk_privacy package in it or in {directory}/policies")


def _baseline_run(baseline: subprocess.Popen, name: str) -> list[float]:
    baseline.stdin.write(name + "\n")
    baseline.stdin.flush()
    return json.loads(baseline.stdout.readline())


def serve_rounds(texts: list[str]) -> None:
    """The baseline side of --baseline: one run of the job named on each line of stdin, [wall, cpu] as JSON."""
    jobs = timing_jobs(texts)
    print("ready", flush=True)
    for line in sys.stdin:
        print(json.dumps(time_job(jobs[line.strip()])), flush=True)


def _prose_with_pii(prose: str, texts: list[str]) -> str:
    """Prose with one labelled-corpus document (1-5 sentences, ~2 entities) every ~2,000 characters."""
    rng = random.Random(1)
    parts, size = [], 0
    for line in prose.split("\n"):
        parts.append(line)
        size += len(line) + 1
        if size > 2000:
            parts.append(rng.choice(texts))
            size = 0
    return "\n".join(parts)


PRESIDIO_SCRIPT = r"""
import json, sys, time
from presidio_analyzer.predefined_recognizers import (CreditCardRecognizer, EmailRecognizer, IbanRecognizer,
    IpRecognizer, PhoneRecognizer, UsSsnRecognizer)
corpus = json.load(open(sys.argv[1]))
recognizers = {"EMAIL_ADDRESS": EmailRecognizer(), "CREDIT_CARD": CreditCardRecognizer(), "IBAN_CODE": IbanRecognizer(),
               "IP_ADDRESS": IpRecognizer(), "US_SSN": UsSsnRecognizer(),
               "PHONE_NUMBER": PhoneRecognizer(supported_regions=("US", "GB", "DE", "FR", "ES", "IT", "NL", "BR", "IN"))}
out = []
started = time.perf_counter()
for text in corpus:
    found = []
    for name, rec in recognizers.items():
        for r in rec.analyze(text, [name], None):
            if r.score >= 0.3 or name in ("US_SSN",):
                found.append([r.entity_type, r.start, r.end])
    out.append(found)
elapsed = time.perf_counter() - started
print(json.dumps({"predictions": out, "elapsed": elapsed}))
"""
PRESIDIO_TYPES = {"EMAIL_ADDRESS": "EMAIL", "CREDIT_CARD": "CREDIT_CARD", "IBAN_CODE": "IBAN", "US_SSN": "US_SSN", "PHONE_NUMBER": "PHONE"}


def run_presidio(python: str, corpus) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "corpus.json"
        data.write_text(json.dumps([t for t, _ in corpus]))
        script = Path(tmp) / "presidio_run.py"
        script.write_text(PRESIDIO_SCRIPT)
        done = subprocess.run([python, str(script), str(data)], capture_output=True, text=True, timeout=3000, check=False)
    if done.returncode:
        return {"error": done.stderr[-2000:]}
    result = json.loads(done.stdout.splitlines()[-1])
    predictions = []
    for (text, _), found in zip(corpus, result["predictions"]):
        mapped = []
        for kind, s, e in found:
            if kind == "IP_ADDRESS":
                kind = "IPV6" if ":" in text[s:e] else "IPV4"
            mapped.append((PRESIDIO_TYPES.get(kind, kind), s, e))
        predictions.append(mapped)
    megabytes = sum(len(t.encode()) for t, _ in corpus) / 1e6
    return {"scores": score(corpus, predictions), "mb_per_s_per_document": megabytes / result["elapsed"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=5, help="timings are the best of this many runs")
    parser.add_argument("--baseline", help="a directory holding another gensdk_privacy package to time side by side")
    parser.add_argument("--presidio", help="python of a venv with presidio-analyzer installed")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--compiled", action="store_true",
                        help="build the wheel (detectors compiled with mypyc) and time it, the checkout's pure Python beside it")
    parser.add_argument("--policies", help=argparse.SUPPRESS)
    parser.add_argument("--serve-rounds", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.compiled:
        raise SystemExit(run_compiled(sys.argv[1:]))
    corpus, stats = make_corpus(args.docs, args.seed)
    texts = [t for t, _ in corpus]
    if args.serve_rounds:
        serve_rounds(texts)
        return
    results = {"documents": len(corpus), "entities": sum(len(l) for _, l in corpus), **stats, "detectors": detectors_build(),
               "gensdk": run_ours(corpus, args.seed)}
    load_before = os.getloadavg()[0]
    results["gensdk"]["throughput"], baseline = run_timings(texts, args)
    results["load_average"] = [load_before, os.getloadavg()[0]]
    if baseline is not None:
        results["baseline"] = {"directory": args.baseline, "throughput": baseline}
    if args.presidio:
        results["presidio"] = run_presidio(args.presidio, corpus)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    _print(results)


REPO = Path(__file__).resolve().parents[1]
NOT_SOURCE = (".git", ".venv", "build", "dist", "out", "__pycache__", ".pytest_cache", ".hypothesis")


def run_compiled(argv: list[str]) -> int:
    """Build the wheel as `pip wheel` does for a user (setup.py compiles the detectors), install it in a scratch
    directory, and run this benchmark on it, the checkout's pure-Python detectors as the baseline."""
    with tempfile.TemporaryDirectory() as tmp:
        source, site = Path(tmp) / "src", Path(tmp) / "site"
        shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(*NOT_SOURCE, "*.egg-info"))
        quiet = ["--no-deps", "--no-input", "--disable-pip-version-check", "--quiet"]
        env = {**os.environ, "GENSDK_MYPYC": "1"}
        subprocess.run([sys.executable, "-m", "pip", "wheel", *quiet, "--no-build-isolation", "-w", tmp, str(source)],
                       env=env, check=True)
        (wheel,) = Path(tmp).glob("gensdk-*.whl")
        subprocess.run([sys.executable, "-m", "pip", "install", *quiet, "--target", str(site), str(wheel)], check=True)
        rest = [a for a in argv if a != "--compiled"]
        return subprocess.run([sys.executable, __file__, "--policies", str(site), "--baseline", str(REPO / "policies"),
                               *rest], check=False).returncode


def detectors_build() -> str:
    """Which detectors run: the wheel's compiled modules or the interpreted source."""
    from gensdk_privacy import numbers

    kind = "compiled with mypyc" if numbers.__file__.endswith(".so") else "pure Python"
    return f"{kind} ({Path(numbers.__file__).parent})"


def _print(results: dict) -> None:
    ours = results["gensdk"]
    print(f"detectors: {results['detectors']}")
    print(f"{results['documents']} documents, {results['entities']} entities, {ours['throughput']['one_text']['megabytes']:.2f} MB "
          f"(Faker phone numbers invalid for their region, left out: {results['phones_invalid_skipped']} of {results['phones_generated']})")
    theirs = results.get("presidio", {}).get("scores", {})
    print(f"{'type':<12} {'P':>7} {'R':>7} {'P strm':>7} {'R strm':>7} {'n':>6}" + ("  presidio P / R" if theirs else ""))
    for kind, s in ours["scores"].items():
        st = ours["streamed_scores"][kind]
        line = f"{kind:<12} {s['precision']:7.4f} {s['recall']:7.4f} {st['precision']:7.4f} {st['recall']:7.4f} {s['support']:6d}"
        if kind in theirs:
            line += f"  {theirs[kind]['precision']:.4f} / {theirs[kind]['recall']:.4f}"
        print(line)
    print(f"streamed in 1-40 character chunks: {ours['streamed_differs']} of {results['documents']} documents give "
          "other entities than the whole text")
    print(f"scanned in batches of {BATCH} (scan_many): {ours['batched_differs']} of {results['documents']} documents give "
          "other entities than scanned one by one")
    base_tp = results.get("baseline", {}).get("throughput", {})
    print(f"\nthroughput, MB/s, best of the runs  {'wall':>7} {'cpu':>7}"
          + ("   baseline wall / cpu   speed-up (cpu): of the bests, median of pairs" if base_tp else ""))
    for name, t in ours["throughput"].items():
        line = f"  {name:<33} {t['wall']:7.2f} {t['cpu']:7.2f}"
        if name in base_tp:
            b = base_tp[name]
            line += f"   {b['wall']:7.2f} / {b['cpu']:7.2f}   {t['cpu'] / b['cpu']:5.2f}x  {base_tp['speed_up'][name]:5.2f}x"
        print(line)
    print("load average (1 min) before and after the timings: {:.2f}, {:.2f}".format(*results["load_average"]))
    if "presidio" in results:
        p = results["presidio"]
        print("presidio:", p.get("error") or f"{p['mb_per_s_per_document']:.2f} MB/s per document (wall)")


if __name__ == "__main__":
    main()
