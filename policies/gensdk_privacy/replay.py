"""Verbatim replay of training text by language models.

`ReplayIndex` hashes every `min_chars`-byte window of the training corpus (UTF-8) and keeps the hashes sorted
beside their positions. A generated text is hashed the same way; each window whose hash is in the index is a
candidate, confirmed by comparing the bytes themselves (a hash collision never becomes a finding), then
extended to the whole shared span. A text that shares only shorter spans with the corpus has no window in
common with it, so it is never flagged.

Window hashes are polynomial (sum_j byte[i+j] * B^j mod 2^64), computed for all positions at once from prefix
sums with numpy, in blocks so that memory stays bounded. Memory: about 16 bytes
per corpus byte (hash and position), so `max_corpus_bytes` (256 MiB by default) bounds the index at ~4 GiB.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from gensdk import Finding, Policy, PolicyOptions, hookimpl
from gensdk.errors import ConfigError, DataError, ModelError
from gensdk.outputs import Output, TextOutput
from gensdk.request import GenerationContext
from gensdk_privacy.pii import check_text

__all__ = ["ReplayIndex", "ReplayMatch", "ReplayPolicy"]

# Positions hashed per numpy block: bounds the temporaries at ~100 MB whatever the corpus or output size.
HASH_BLOCK = 4 << 20
# Corpus positions sharing one window hash that are compared byte for byte (repeated boilerplate).
MAX_CANDIDATES = 64
MAX_FINDINGS_PER_OUTPUT = 50
_CONTINUATION = 0xC0


@dataclass(frozen=True)
class ReplayMatch:
    start: int  # characters, in the checked text
    end: int
    corpus_offset: int  # characters, in the corpus
    corpus_byte_offset: int


class ReplayIndex:
    def __init__(self, corpus: bytes, min_chars: int = 50):
        if min_chars < 8:
            raise ConfigError(f"min_chars must be at least 8, not {min_chars}")
        try:
            corpus.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"the replay corpus is not UTF-8 text (byte {exc.start}); convert it first") from None
        self.corpus = corpus
        self.window = min_chars
        self.min_chars = min_chars
        hashes = _window_hashes(np.frombuffer(corpus, np.uint8), self.window)
        self._order = np.argsort(hashes, kind="stable").astype(np.int64 if len(corpus) >= 2**31 else np.int32)
        self._sorted = hashes[self._order]
        # A bitmap over the top hash bits screens out most windows before the binary search, which is the
        # cost of a check (random accesses into the sorted hashes): ~8 entries per index entry keeps
        # false positives near 1 in 8.
        self._shift = np.uint64(64 - min(26, max(16, int(np.ceil(np.log2(max(2, len(hashes))))) + 3)))
        self._bitmap = np.zeros(1 << (64 - int(self._shift)), bool)
        self._bitmap[self._sorted >> self._shift] = True
        self._char_of_byte: np.ndarray | None = None if corpus.isascii() else _char_offsets(np.frombuffer(corpus, np.uint8))
        self.digest = hashlib.sha256(corpus).hexdigest()

    @classmethod
    def from_path(cls, path: str | Path, min_chars: int = 50, max_bytes: int = 256 << 20) -> ReplayIndex:
        path = Path(path).expanduser()
        if not path.is_file():
            raise ConfigError(f"replay corpus {path} does not exist or is not a file")
        size = path.stat().st_size
        if size > max_bytes:
            raise ConfigError(f"replay corpus {path} has {size:,} bytes, over max_corpus_bytes {max_bytes:,}")
        return cls(path.read_bytes(), min_chars)

    def find(self, text: str) -> list[ReplayMatch]:
        """Every maximal span of `text` of at least min_chars characters that also occurs in the corpus."""
        data = text.encode("utf-8")
        if len(data) < self.window or len(self.corpus) < self.window:
            return []
        arr = np.frombuffer(data, np.uint8)
        hashes = _window_hashes(arr, self.window)
        maybe = np.flatnonzero(self._bitmap[hashes >> self._shift])
        where = np.searchsorted(self._sorted, hashes[maybe]).clip(max=len(self._sorted) - 1)
        equal = self._sorted[where] == hashes[maybe]
        hits, where = maybe[equal], where[equal]
        char_of_byte = None if text.isascii() else _char_offsets(arr)
        matches: list[ReplayMatch] = []
        covered = 0
        for i, first in zip(hits.tolist(), where.tolist()):
            if i + self.window <= covered:
                continue  # inside a span already reported
            found = self._confirm(data, i, first)
            if found is None:
                continue
            start, end, corpus_start = _whole_chars(data, *found)
            covered = found[1]
            chars = _to_chars(char_of_byte, [start, end], len(text))
            if chars[1] - chars[0] >= self.min_chars:
                corpus_chars = int(self._char_of_byte[corpus_start]) if self._char_of_byte is not None else corpus_start
                matches.append(ReplayMatch(chars[0], chars[1], corpus_chars, corpus_start))
        return matches

    def _confirm(self, data: bytes, i: int, first: int) -> tuple[int, int, int] | None:
        """(start, end, corpus start) in bytes of the longest true match through window i, or None."""
        best = None
        k = first
        target = self._sorted[first]
        while k < len(self._sorted) and self._sorted[k] == target and k - first < MAX_CANDIDATES:
            c = int(self._order[k])
            k += 1
            if self.corpus[c : c + self.window] != data[i : i + self.window]:
                continue  # a hash collision
            length = self.window + _common_prefix(data, i + self.window, self.corpus, c + self.window)
            back = _common_suffix(data, i, self.corpus, c)
            if best is None or length + back > best[1] - best[0]:
                best = (i - back, i + length, c - back)
        return best


class ReplayPolicy(Policy):
    """Flags texts that replay a verbatim span (50+ characters by default) of the training text."""

    id = "replay"
    version = "1"
    modalities = frozenset({"text"})

    class Options(PolicyOptions):
        # The training text; without it, the model's `training_text_path()` is asked.
        corpus_path: str | None = None
        min_chars: int = Field(50, ge=8, le=100_000)
        action: Literal["block", "flag"] = "block"
        missing_corpus: Literal["fail", "allow"] = "fail"
        max_corpus_bytes: int = Field(256 << 20, ge=1)
        max_text_chars: int = Field(200_000_000, ge=1)

    def __init__(self, options: Any = None, settings: Any = None):
        super().__init__(options, settings)
        # A span crossing a stream chunk boundary is seen whole when this much of the earlier text is kept.
        self.lookback_chars = self.options.min_chars
        self._indexes: dict[tuple[str, int, int], ReplayIndex] = {}
        self._lock = threading.Lock()

    def index_for(self, context: GenerationContext | None = None) -> ReplayIndex | None:
        path = self._corpus_path(context)
        if path is None:
            return None
        stat = Path(path).stat() if Path(path).is_file() else None
        key = (str(Path(path).resolve()), stat.st_size if stat else -1, stat.st_mtime_ns if stat else -1)
        with self._lock:  # one build per corpus, even when several batches ask at once
            if key not in self._indexes:
                self._indexes = {key: ReplayIndex.from_path(path, self.options.min_chars, self.options.max_corpus_bytes)}
            return self._indexes[key]

    def _corpus_path(self, context: GenerationContext | None) -> str | None:
        if self.options.corpus_path:
            return self.options.corpus_path
        getter = getattr(getattr(context, "model", None), "training_text_path", None)
        path = getter() if callable(getter) else None
        if path is None and self.options.missing_corpus == "fail":
            raise ModelError(
                "the replay policy has no training text to compare with: set its option corpus_path, use a model "
                "whose family exposes training_text_path(), or configure missing_corpus='allow'"
            )
        return None if path is None else str(path)

    @hookimpl
    def inspect_output(self, outputs: list[Output], context: GenerationContext) -> list[Finding]:
        index = self.index_for(context)
        if index is None:
            return [Finding("replay-unchecked", "no training text to compare with (missing_corpus='allow')",
                            output_index=i, details={"checked": False}) for i in range(len(outputs))]
        findings: list[Finding] = []
        for i, output in enumerate(outputs):
            if isinstance(output, TextOutput):
                text = check_text(output.text, f"output {i}", self.options.max_text_chars)
                findings += self._findings(i, index.find(text), index)
        return findings

    def _findings(self, i: int, matches: list[ReplayMatch], index: ReplayIndex) -> list[Finding]:
        block = self.options.action == "block"
        findings = [
            Finding("verbatim-replay", f"output {i} repeats {m.end - m.start} characters of the training text verbatim",
                    violation=block, output_index=i, span=(m.start, m.end),
                    details={"length": m.end - m.start, "corpus_offset": m.corpus_offset,
                             "corpus_byte_offset": m.corpus_byte_offset, "corpus_sha256": index.digest[:16]})
            for m in matches[:MAX_FINDINGS_PER_OUTPUT]
        ]
        if len(matches) > MAX_FINDINGS_PER_OUTPUT:
            rest = matches[MAX_FINDINGS_PER_OUTPUT:]
            findings.append(Finding("verbatim-replay-more", f"{len(rest)} more verbatim spans in output {i}",
                                    violation=block, output_index=i,
                                    details={"spans": len(rest), "characters": sum(m.end - m.start for m in rest)}))
        return findings


# -- helpers --------------------------------------------------------------------------------------------------


# Odd base of the polynomial window hash (odd: invertible modulo 2^64, which the prefix-sum form needs).
HASH_BASE = 0x9E3779B97F4A7C15
HASH_BASE_INVERSE = pow(HASH_BASE, -1, 2**64)


def _window_hashes(arr: np.ndarray, window: int) -> np.ndarray:
    """Polynomial hash sum_j byte[i+j] * B^j mod 2^64 of every `window`-byte window, for all i at once.

    With prefix sums S of byte[t] * B^t, a window's sum is S[i+window] - S[i] = B^i * hash(i), so
    hash(i) = (S[i+window] - S[i]) * B^-i: a handful of vectorised passes whatever the window length
    (numpy's uint64 arithmetic wraps modulo 2^64). Computed in blocks of HASH_BLOCK positions."""
    n = len(arr) - window + 1
    out = np.empty(max(n, 0), np.uint64)
    for start in range(0, max(n, 0), HASH_BLOCK):
        stop = min(n, start + HASH_BLOCK)
        part = arr[start : stop + window - 1].astype(np.uint64)
        powers = _powers(HASH_BASE, len(part))
        sums = np.concatenate([np.zeros(1, np.uint64), np.cumsum(part * powers, dtype=np.uint64)])
        count = stop - start
        out[start:stop] = (sums[window : window + count] - sums[:count]) * _powers(HASH_BASE_INVERSE, count)
    return out


def _powers(base: int, n: int) -> np.ndarray:
    """base^0 .. base^(n-1) modulo 2^64."""
    steps = np.full(n, base, np.uint64)
    steps[0] = 1
    return np.cumprod(steps, dtype=np.uint64)


def _common_prefix(a: bytes, i: int, b: bytes, j: int) -> int:
    """Length of the common prefix of a[i:] and b[j:], compared 256 bytes at a time."""
    n = 0
    while True:
        x, y = a[i + n : i + n + 256], b[j + n : j + n + 256]
        if x == y and len(x) == 256:
            n += 256
            continue
        for p, q in zip(x, y):
            if p != q:
                return n
            n += 1
        return n


def _common_suffix(a: bytes, i: int, b: bytes, j: int) -> int:
    n = 0
    while i - n > 0 and j - n > 0 and a[i - n - 1] == b[j - n - 1]:
        n += 1
    return n


def _whole_chars(data: bytes, start: int, end: int, corpus_start: int) -> tuple[int, int, int]:
    """Shrink a byte span so it neither starts nor ends inside a multi-byte UTF-8 character."""
    while start < end and data[start] & _CONTINUATION == 0x80:
        start += 1
        corpus_start += 1
    while end < len(data) and end > start and data[end] & _CONTINUATION == 0x80:
        end -= 1
    return start, end, corpus_start


def _char_offsets(arr: np.ndarray) -> np.ndarray:
    """Character index of every byte of UTF-8 data (plus one past the end)."""
    starts = (arr & _CONTINUATION) != 0x80
    return np.concatenate([np.cumsum(starts) - 1, [int(starts.sum())]]).astype(np.int64)


def _to_chars(char_of_byte: np.ndarray | None, offsets: list[int], n_chars: int) -> list[int]:
    if char_of_byte is None:
        return offsets
    return [int(char_of_byte[o]) if o < len(char_of_byte) - 1 else n_chars for o in offsets]
