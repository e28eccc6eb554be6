"""Verbatim replay check on TinyShakespeare: index build time, checking speed, planted quotations found, no
false hit on text that shares only shorter spans.

    .venv/bin/python benchmarks/bench_replay.py [--corpus ../shared/data/tinyshakespeare.txt] [--min-chars 50]

The checked text (~2 MB) is made of corpus fragments shorter than min_chars joined by separators that never
extend them (every shared span is 20-49 characters: the hard negative), with quotations of min_chars to 400
characters planted at random positions. Every quotation must be found at its exact place, nothing else.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "policies"))


def build_text(corpus: str, min_chars: int, size: int, quotes: int, seed: int) -> tuple[str, list[tuple[int, int]]]:
    rng = random.Random(seed)
    pieces: list[str] = []
    planted: list[tuple[int, int]] = []
    length = 0
    quote_at = set(rng.sample(range(size // 40), quotes))
    for i in range(size // 40):
        if i in quote_at:
            n = rng.randint(min_chars, 400)
        else:
            n = rng.randint(20, min_chars - 1)
        start = rng.randrange(0, len(corpus) - n)
        piece = corpus[start : start + n]
        if i in quote_at:
            planted.append((length + 1, length + 1 + n))
        pieces.append("\x1f" + piece)  # a separator no corpus span contains: fragments never join up
        length += n + 1
    return "".join(pieces), planted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "data" / "tinyshakespeare.txt")
    parser.add_argument("--min-chars", type=int, default=50)
    parser.add_argument("--size", type=int, default=2_000_000)
    parser.add_argument("--quotes", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from gensdk_privacy.replay import ReplayIndex

    data = args.corpus.read_bytes()
    started = time.perf_counter()
    index = ReplayIndex(data, args.min_chars)
    build = time.perf_counter() - started
    print(f"index of {args.corpus.name} ({len(data) / 1e6:.2f} MB) built in {build:.2f} s")

    text, planted = build_text(data.decode(), args.min_chars, args.size, args.quotes, args.seed)
    started = time.perf_counter()
    matches = index.find(text)
    elapsed = time.perf_counter() - started
    found = {(m.start, m.end) for m in matches}
    # a planted quotation may legitimately extend by a character or two where the corpus continues the same way
    hit = sum(any(s <= a and b <= e for s, e in found) for a, b in planted)
    false = [m for m in matches if not any(m.start <= a and b <= m.end for a, b in planted)]
    print(f"checked {len(text.encode()) / 1e6:.2f} MB in {elapsed:.2f} s: {len(text.encode()) / 1e6 / elapsed:.2f} MB/s")
    print(f"planted quotations ({args.min_chars}-400 chars) found: {hit} of {len(planted)}; false hits: {len(false)}")

    negatives = "".join(p for p in text.split("\x1f") if len(p) < args.min_chars)
    started = time.perf_counter()
    short_only = index.find("\x1f".join(negatives[i : i + 45] for i in range(0, len(negatives), 45)))
    print(f"text sharing only spans < {args.min_chars} chars with the corpus: {len(short_only)} hits")


if __name__ == "__main__":
    main()
