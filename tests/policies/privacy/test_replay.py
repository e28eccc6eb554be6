"""Verbatim replay: the index finds every shared span of min_chars or more, nothing shorter, never a hash
collision; the policy blocks or flags through the engine, and refuses to run without training text."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from gensdk import Verdict
from gensdk.errors import ConfigError, DataError
from gensdk.testing import MockFamily, make_engine
from gensdk_privacy import replay as replay_module
from gensdk_privacy.replay import ReplayIndex, ReplayPolicy


def make_corpus(seed: int = 0, words: int = 6000) -> str:
    rng = random.Random(seed)
    vocab = [f"{w}{rng.randint(0, 99)}" for w in "thou art thy lord king speak night love death crown sword".split()]
    lines = []
    for _ in range(words // 8):
        lines.append(" ".join(rng.choice(vocab) for _ in range(8)).capitalize() + ".")
    return "\n".join(lines)


CORPUS = make_corpus()


@pytest.fixture(scope="module")
def index() -> ReplayIndex:
    return ReplayIndex(CORPUS.encode(), min_chars=50)


def unique_span(length: int, start: int = 1000) -> tuple[int, str]:
    """A corpus span whose neighbours differ from the filler used around it."""
    return start, CORPUS[start : start + length]


def test_planted_quotation_is_found_with_its_location(index) -> None:
    at, quote = unique_span(80)
    text = "Something new entirely: " + quote + " <- end"
    [match] = index.find(text)
    assert (match.start, match.end) == (24, 24 + 80)
    assert CORPUS[match.corpus_offset : match.corpus_offset + 80] == quote
    assert match.corpus_byte_offset == match.corpus_offset  # ASCII corpus


def test_spans_shorter_than_min_chars_are_not_flagged(index) -> None:
    # many 40-character pieces of the corpus in a row: every shared span is shorter than 50
    rng = random.Random(1)
    pieces = [CORPUS[p : p + 40] for p in (rng.randrange(0, len(CORPUS) - 40) for _ in range(200))]
    assert index.find("|".join(pieces)) == []
    _, quote = unique_span(49, 3000)
    assert index.find("<<" + quote + ">>") == []


def test_quotation_exactly_min_chars_long_is_found(index) -> None:
    _, quote = unique_span(50, 5000)
    assert [(m.start, m.end) for m in index.find("<<" + quote + ">>")] == [(2, 52)]


def test_several_quotations_in_one_text_are_reported_separately(index) -> None:
    quotes = [CORPUS[p : p + 60 + p % 30] for p in (100, 2000, 9000, 20000)]
    text = " ~ ".join(["#"] + quotes + ["#"])
    matches = index.find(text)
    assert [text[m.start : m.end] for m in matches] == quotes


def test_hash_collisions_never_become_findings(monkeypatch) -> None:
    # a hash that is zero for every window: only the byte comparison can tell windows apart
    monkeypatch.setattr(replay_module, "_window_hashes", lambda arr, w: np.zeros(max(len(arr) - w + 1, 0), np.uint64))
    monkeypatch.setattr(replay_module, "MAX_CANDIDATES", 10**9)
    colliding = ReplayIndex(CORPUS[:3000].encode(), min_chars=50)
    assert colliding.find("z" * 200) == []
    _, quote = unique_span(70)
    assert len(colliding.find("zz " + quote + " zz")) == 1


def test_offsets_count_characters_in_non_ascii_text() -> None:
    corpus = "Prélude: " + "Ça, c'est la fête à Noël où l'été se déroule sans fin, dit-il. " * 3
    index = ReplayIndex(corpus.encode(), min_chars=20)
    text = "¿Qué?" + corpus[9:80] + "¡fin!"
    [match] = index.find(text)
    assert text[match.start : match.end] == corpus[9:80]
    assert corpus[match.corpus_offset : match.corpus_offset + 71] == corpus[9:80]
    assert match.corpus_byte_offset > match.corpus_offset


def test_non_utf8_corpus_and_missing_files_are_typed_errors(tmp_path) -> None:
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 ".encode("latin-1") * 40)
    with pytest.raises(DataError, match="not UTF-8"):
        ReplayIndex.from_path(tmp_path / "latin1.txt")
    with pytest.raises(ConfigError, match="does not exist"):
        ReplayIndex.from_path(tmp_path / "missing.txt")
    with pytest.raises(ConfigError, match="max_corpus_bytes"):
        ReplayIndex.from_path(tmp_path / "latin1.txt", max_bytes=10)


# -- the policy -----------------------------------------------------------------------------------------------


@pytest.fixture
def corpus_file(tmp_path: Path) -> Path:
    path = tmp_path / "train.txt"
    path.write_text(CORPUS, encoding="utf-8")
    return path


def engine_with(tmp_path, plugins, **options):
    return make_engine(tmp_path, plugins=plugins, config={"policies": [{"id": "replay", "options": options}]})


def test_replaying_output_is_blocked_and_located(tmp_path, privacy_plugins, corpus_file) -> None:
    _, quote = unique_span(90)
    with engine_with(tmp_path, privacy_plugins, corpus_path=str(corpus_file)) as engine:
        result = engine.generate(MockFamily().enqueue("fresh words only", "Once more: " + quote), n=2, seed=1)
    assert result.output_verdicts == [Verdict.PASS, Verdict.BLOCK]
    [finding] = result.findings
    assert finding.code == "verbatim-replay" and finding.span == (11, 101) and finding.output_index == 1
    assert finding.details["corpus_offset"] == 1000 and finding.details["length"] == 90
    assert quote not in repr(finding.details)


def test_flag_action_records_without_blocking(tmp_path, privacy_plugins, corpus_file) -> None:
    _, quote = unique_span(60)
    with engine_with(tmp_path, privacy_plugins, corpus_path=str(corpus_file), action="flag") as engine:
        result = engine.generate(MockFamily().enqueue(quote), n=1, seed=1)
    assert result.verdict is Verdict.PASS and result.findings[0].code == "verbatim-replay"


def test_corpus_comes_from_the_model_when_not_configured(tmp_path, privacy_plugins, corpus_file) -> None:
    class TextModel(MockFamily):
        id = "mock-with-corpus"

        def training_text_path(self):
            return corpus_file

    _, quote = unique_span(60)
    with engine_with(tmp_path, privacy_plugins) as engine:
        result = engine.generate(TextModel().enqueue(quote), n=1, seed=1)
    assert result.verdict is Verdict.BLOCK


def test_without_training_text_the_policy_fails_closed(tmp_path, privacy_plugins) -> None:
    with engine_with(tmp_path, privacy_plugins) as engine:
        result = engine.generate(MockFamily().enqueue("anything"), n=1, seed=1)
    assert result.verdict is Verdict.BLOCK and "corpus_path" in result.outcomes[0].error
    with engine_with(tmp_path, privacy_plugins, missing_corpus="allow") as engine:
        allowed = engine.generate(MockFamily().enqueue("anything"), n=1, seed=1)
    assert allowed.verdict is Verdict.PASS and allowed.findings[0].code == "replay-unchecked"


def test_index_is_built_once_and_rebuilt_when_the_corpus_changes(corpus_file) -> None:
    policy = ReplayPolicy({"corpus_path": str(corpus_file)})
    first = policy.index_for()
    assert policy.index_for() is first
    corpus_file.write_text(CORPUS + "\nA new line that was not there before, long enough to matter.")
    assert policy.index_for() is not first


def test_policy_exposes_the_look_back_a_stream_needs() -> None:
    assert ReplayPolicy({"min_chars": 64}).lookback_chars == 64
