"""scan_many: many short texts scanned in one pass give exactly what one scan per text gives, and the policy
scans a micro-batch of outputs (or several prompts) that way."""

from __future__ import annotations

import itertools
import random

import pytest
from faker import Faker

from gensdk import Verdict
from gensdk.testing import MockFamily, make_engine
from gensdk_privacy import pii as pii_module
from gensdk_privacy.pii import SEPARATOR, PIIScanner


@pytest.fixture(scope="module")
def scanner() -> PIIScanner:
    return PIIScanner()


def faker_documents(count: int, seed: int) -> list[str]:
    """Short documents like the benchmark's: one to four entities of any type in a sentence frame each."""
    rng = random.Random(seed)
    fakers = [Faker(locale) for locale in ("en_US", "de_DE", "fr_FR", "es_ES", "pt_BR", "en_GB")]
    for i, fake in enumerate(fakers):
        fake.seed_instance(seed + i)
    documents = []
    for _ in range(count):
        fake = rng.choice(fakers)
        values = [fake.email, fake.phone_number, fake.credit_card_number, fake.iban, fake.ipv4, fake.ipv6, fake.name,
                  fake.date, fake.address, lambda: f"{rng.uniform(0, 999):.2f}"]
        sentences = [rng.choice(["Contact {} soon.", "Ref: {}", "{} is on file", "call {}", "({})"]).format(rng.choice(values)())
                     for _ in range(rng.randint(1, 4))]
        documents.append(" ".join(sentences))
    return documents


# Pieces that reach for what lies beyond a text's start or end: a number, an address or a name that would go
# on (or be cut short, or turn into an address) if the text before or after showed through the separator.
EDGES = [
    "", " ", "4111 1111", "1111 1111", "call +44 20", "7946 0958", "+", "(415)", "555-2671", "x123", "ext. 12",
    "ada@", "@example.org", "mail ada", "example.org", "2001:db8:", ":8a2e:370:7334", "::", "ffff:192.0.2.1",
    "192.168.1.", "20", ".5", "1.2", "DE89 3704 0044 0532 0130", "00", "GB", "82WEST12345698765432", "123-45-",
    "6789", "-", "'s", "Smith", "John", "John Smith", "Calle", "Via della", "Maria Rossi", "García", "López",
    "van der", "Laar", "\n", "\x00", SEPARATOR, f"ada@example.org{SEPARATOR}John Smith", f"4111{SEPARATOR}1111",
    "12:47:27.", "79.50.8.46", "$1,553.87.", "664-93-4785",
]


def differences(scanner: PIIScanner, texts: list[str]) -> list[int]:
    """Indexes of the texts for which scan_many gives other entities than scan."""
    return [i for i, (many, one) in enumerate(zip(scanner.scan_many(texts), map(scanner.scan, texts))) if many != one]


def test_scan_many_gives_what_one_scan_per_text_gives_on_faker_documents(scanner) -> None:
    texts = faker_documents(400, seed=3)
    assert differences(scanner, texts) == []
    assert sum(map(len, scanner.scan_many(texts))) > 500  # the documents do hold entities


def test_scan_many_reads_the_separator_as_a_text_boundary_for_every_edge(scanner) -> None:
    # every piece right after every other: whatever a pattern looks at across the boundary shows up as a difference
    pairs = list(itertools.product(EDGES, repeat=2))
    texts = [text for pair in pairs for text in pair]
    assert differences(scanner, texts) == []


def test_the_edge_pieces_would_expose_a_separator_that_is_not_a_boundary(scanner, monkeypatch) -> None:
    # the check above can fail: with a space or a dot between the texts, entities cross or change
    texts = [text for pair in itertools.product(EDGES, repeat=2) for text in pair]
    for leaky in (" ", ".", "-"):
        monkeypatch.setattr(pii_module, "SEPARATOR", leaky)
        assert len(differences(scanner, texts)) > 20, leaky


def test_texts_holding_the_separator_keep_their_own_entities(scanner) -> None:
    texts = [f"mail ada@example.org{SEPARATOR}call +44 20 7946 0958", SEPARATOR * 3, f"{SEPARATOR}John Smith{SEPARATOR}"]
    assert scanner.scan_many(texts) == [scanner.scan(t) for t in texts]
    assert [e.type for e in scanner.scan_many(texts)[0]] == ["EMAIL", "PHONE"]


def test_texts_are_joined_up_to_a_window_and_a_longer_one_is_scanned_alone(scanner, monkeypatch) -> None:
    monkeypatch.setattr(pii_module, "WINDOW_CHARS", 400)
    texts = faker_documents(60, seed=4)
    texts.insert(30, " and ".join(faker_documents(8, seed=5)))  # longer than a window: scanned in windows
    groups = pii_module._groups(texts)
    assert len(groups) > 10 and (30, 31) in groups
    assert all(len(SEPARATOR.join(texts[a:b])) <= 400 for a, b in groups if b - a > 1)
    assert [i for g in groups for i in range(*g)] == list(range(len(texts)))
    assert differences(scanner, texts) == []


def test_scan_many_of_nothing_is_nothing(scanner) -> None:
    assert scanner.scan_many([]) == []
    assert scanner.scan_many(["", ""]) == [[], []]


# -- the policy scans a micro-batch at once -------------------------------------------------------------------


def engine_with(tmp_path, privacy_plugins, **options):
    return make_engine(tmp_path, plugins=privacy_plugins, config={"policies": [{"id": "pii", "options": options}]})


def test_a_micro_batch_of_outputs_is_redacted_output_by_output(tmp_path, privacy_plugins) -> None:
    texts = ["Mail ada@example.org", "nothing here", "4111 1111 1111 1111", "(415) 555-2671 or John Smith"]
    with engine_with(tmp_path, privacy_plugins, actions={"CREDIT_CARD": "block"}) as engine:
        result = engine.generate(MockFamily().enqueue(*texts), n=4, seed=1)
    assert result.output_verdicts == [Verdict.PASS, Verdict.PASS, Verdict.BLOCK, Verdict.PASS]
    assert result.texts == ["Mail [EMAIL]", "nothing here", "[PHONE] or [PERSON]"]
    spans = [(f.output_index, f.details["entity"], f.span) for f in result.findings]
    assert spans == [(0, "EMAIL", (5, 20)), (2, "CREDIT_CARD", (0, 19)), (3, "PHONE", (0, 14)), (3, "PERSON", (18, 28))]


def test_several_prompts_are_checked_each_with_its_own_spans(tmp_path, privacy_plugins) -> None:
    with engine_with(tmp_path, privacy_plugins, prompts="flag") as engine:
        result = engine.generate(MockFamily().enqueue("fine", "fine"), n=1, seed=1,
                                 prompts=["hello", "card 4111 1111 1111 1111", "I am John Smith"])
    found = [(f.details["prompt_index"], f.details["entity"], f.span) for f in result.findings]
    assert found == [(1, "CREDIT_CARD", (5, 24)), (2, "PERSON", (5, 15))]

