"""PII policy: each detector on true and false cases, every action, prompts, streaming, bad input, and the
audit trail never holding a found value."""

from __future__ import annotations

import hashlib
import hmac
import json
import random
from pathlib import Path

import pytest

from gensdk import Verdict
from gensdk.errors import ConfigError, DataError
from gensdk.testing import MockFamily, make_engine
from gensdk_privacy import pii as pii_module
from gensdk_privacy.pii import PIIPolicy, PIIScanner, StreamingPIIScanner

KEY = "00112233445566778899aabbccddeeff"


@pytest.fixture(scope="module")
def scanner() -> PIIScanner:
    return PIIScanner()


def found(scanner: PIIScanner, text: str) -> list[tuple[str, str]]:
    return [(e.type, text[e.start : e.end]) for e in scanner.scan(text)]


# -- detectors: true cases ------------------------------------------------------------------------------------

TRUE_CASES = [
    ("EMAIL", "Write to ada.lovelace+notes@example.co.uk today.", "ada.lovelace+notes@example.co.uk"),
    ("EMAIL", "(contact: j_smith@mail-server.org)", "j_smith@mail-server.org"),
    ("PHONE", "Call (415) 555-2671 after lunch.", "(415) 555-2671"),
    ("PHONE", "Our London office: +44 20 7946 0958.", "+44 20 7946 0958"),
    ("PHONE", "Bitte rufen Sie 030 901820 an.", "030 901820"),
    ("PHONE", "Appelez le 01 42 68 53 00 demain.", "01 42 68 53 00"),
    ("PHONE", "Desk 202-555-0147x123 is staffed.", "202-555-0147x123"),
    ("CREDIT_CARD", "Card 4111 1111 1111 1111 was charged.", "4111 1111 1111 1111"),
    ("CREDIT_CARD", "Amex 3782-822463-10005 on file.", "3782-822463-10005"),
    ("CREDIT_CARD", "number 5555555555554444.", "5555555555554444"),
    ("IBAN", "Pay to DE89 3704 0044 0532 0130 00 please.", "DE89 3704 0044 0532 0130 00"),
    ("IBAN", "IBAN: GB82WEST12345698765432", "GB82WEST12345698765432"),
    ("US_SSN", "SSN 123-45-6789 on the form.", "123-45-6789"),
    ("IPV4", "Requests from 192.168.1.20.", "192.168.1.20"),
    ("IPV6", "Host 2001:db8::8a2e:370:7334 answered.", "2001:db8::8a2e:370:7334"),
    ("IPV6", "Mapped ::ffff:192.0.2.1 too.", "::ffff:192.0.2.1"),
    ("PERSON", "Yesterday John Smith signed.", "John Smith"),
    ("PERSON", "La carta de María García López llegó.", "María García López"),
    ("PERSON", "Gesprek met Maarten van der Laar.", "Maarten van der Laar"),
]


@pytest.mark.parametrize(("kind", "text", "value"), TRUE_CASES)
def test_detector_finds_the_entity_and_its_exact_span(scanner, kind, text, value) -> None:
    assert (kind, value) in found(scanner, text)


# -- detectors: false cases -----------------------------------------------------------------------------------

FALSE_CASES = [
    ("EMAIL", "The handle @example and user@localhost are not addresses."),
    ("PHONE", "The meeting is on 2023-04-05 at 12:30:45."),
    ("PHONE", "Order 48213 cost 1234.56 in 2019; 3 000 000 people."),
    ("PHONE", "The office code 12345678 is internal."),
    ("CREDIT_CARD", "Reference 4111 1111 1111 1112 fails the Luhn check."),
    ("CREDIT_CARD", "Zero 0000 0000 0000 0000 is not a card."),
    ("IBAN", "Account DE88 3704 0044 0532 0130 00 has a wrong check digit."),
    ("IBAN", "The code XX89 3704 0044 0532 0130 00 names no country."),
    ("US_SSN", "Never issued: 000-12-3456, 666-12-3456, 912-34-5678, 123-00-4567."),
    ("IPV4", "Out of range: 256.1.1.1 and 1.2.3 and 10.0.0.1.5."),
    ("IPV6", "Times 12:30:45 and ratios 3:2:1 and C++ std::vector."),
    ("PERSON", "the bank of america opened a branch in New York."),
    ("PERSON", "She lives at Calle Roxana Acedo 12."),
    ("PERSON", "John arrived. Smith left."),
]


@pytest.mark.parametrize(("kind", "text"), FALSE_CASES)
def test_detector_does_not_fire_on_lookalikes(scanner, kind, text) -> None:
    assert [k for k, _ in found(scanner, text) if k == kind] == []


def test_overlapping_candidates_keep_the_more_specific_type(scanner) -> None:
    # a card number is also a digit string a phone parser might accept; the card wins
    assert found(scanner, "pay 4111111111111111 now") == [("CREDIT_CARD", "4111111111111111")]


def test_entity_types_can_be_chosen() -> None:
    only_email = PIIScanner(["EMAIL"])
    assert [e.type for e in only_email.scan("ada@example.org 123-45-6789")] == ["EMAIL"]
    with pytest.raises(ConfigError, match="NOPE"):
        PIIScanner(["NOPE"])


# -- actions through the engine -------------------------------------------------------------------------------


def engine_with(tmp_path: Path, privacy_plugins, **options):
    return make_engine(tmp_path, plugins=privacy_plugins, config={"policies": [{"id": "pii", "options": options}]})


def test_redact_replaces_values_with_typed_placeholders(tmp_path, privacy_plugins) -> None:
    with engine_with(tmp_path, privacy_plugins) as engine:
        result = engine.generate(MockFamily().enqueue("Mail ada@example.org or call (415) 555-2671."), n=1, seed=1)
    assert result.verdict is Verdict.PASS
    assert result.texts == ["Mail [EMAIL] or call [PHONE]."]
    findings = result.findings
    assert [(f.code, f.details["entity"], f.span) for f in findings] == [("pii-redact", "EMAIL", (5, 20)), ("pii-redact", "PHONE", (29, 43))]
    assert findings[0].details["released_span"] == [5, 12]


def test_mask_keeps_separators_and_last_characters(tmp_path, privacy_plugins) -> None:
    with engine_with(tmp_path, privacy_plugins, default_action="mask", mask_keep=4) as engine:
        result = engine.generate(MockFamily().enqueue("card 4111 1111 1111 1111 ok"), n=1, seed=1)
    assert result.texts == ["card **** **** **** 1111 ok"]


def test_hash_is_an_hmac_under_the_configured_key(tmp_path, privacy_plugins) -> None:
    with engine_with(tmp_path, privacy_plugins, default_action="hash", hash_key=KEY) as engine:
        result = engine.generate(MockFamily().enqueue("ada@example.org", "ada@example.org"), n=2, seed=1)
    expected = hmac.new(bytes.fromhex(KEY), b"ada@example.org", hashlib.sha256).hexdigest()[:16]
    assert result.texts == [f"[EMAIL:{expected}]"] * 2  # the same value hashes the same: joins still work
    assert result.findings[0].details["key_id"] == hashlib.sha256(bytes.fromhex(KEY)).hexdigest()[:8]


def test_hash_key_from_a_file_and_other_keys_give_other_hashes(tmp_path, privacy_plugins) -> None:
    key_file = tmp_path / "pii.key"
    key_file.write_text("ff" * 16 + "\n")
    policy = PIIPolicy({"default_action": "hash", "hash_key_file": str(key_file)})
    other = PIIPolicy({"default_action": "hash", "hash_key": KEY})
    entity = pii_module.Entity("EMAIL", 0, 15)
    assert policy.replacement(entity, "ada@example.org") != other.replacement(entity, "ada@example.org")
    assert KEY not in json.dumps(other.describe())  # the key never reaches the config digest's input


def test_block_action_blocks_only_the_output_holding_the_entity(tmp_path, privacy_plugins) -> None:
    with engine_with(tmp_path, privacy_plugins, actions={"US_SSN": "block"}) as engine:
        result = engine.generate(MockFamily().enqueue("SSN 123-45-6789", "mail ada@example.org", "clean"), n=3, seed=1)
    assert result.output_verdicts == [Verdict.BLOCK, Verdict.PASS, Verdict.PASS]
    assert result.texts == ["mail [EMAIL]", "clean"]
    assert [f.code for f in result.findings if f.violation] == ["pii-block"]


def test_audit_trail_holds_types_and_spans_never_values(tmp_path, privacy_plugins) -> None:
    secret = "grace.hopper@navy.example.mil"
    with engine_with(tmp_path, privacy_plugins, actions={"EMAIL": "block"}) as engine:
        result = engine.generate(MockFamily().enqueue(f"reach {secret} or call +44 20 7946 0958"), n=1, seed=1)
        body = next(r["body"] for r in engine.audit.records() if r["record_id"] == result.audit_record_id)
    dumped = json.dumps(body)
    assert secret not in dumped and "7946" not in dumped
    recorded = body["policies"][0]["findings"]
    assert {f["details"]["entity"] for f in recorded} == {"EMAIL", "PHONE"}
    assert all(f["span"] for f in recorded)


# -- prompts --------------------------------------------------------------------------------------------------


def test_pii_in_a_prompt_blocks_the_request(tmp_path, privacy_plugins) -> None:
    model = MockFamily()
    with engine_with(tmp_path, privacy_plugins) as engine:
        result = engine.generate(model, n=1, seed=1, prompts=["my card is 4111 1111 1111 1111"])
    assert result.verdict is Verdict.BLOCK and result.outputs == []
    assert model.history == []  # nothing was generated
    assert [(f.code, f.details["entity"], f.span) for f in result.findings] == [("pii-in-prompt", "CREDIT_CARD", (11, 30))]


def test_prompts_can_be_only_flagged(tmp_path, privacy_plugins) -> None:
    with engine_with(tmp_path, privacy_plugins, prompts="flag") as engine:
        result = engine.generate(MockFamily().enqueue("fine"), n=1, seed=1,
                                 messages=[[{"role": "user", "content": "I am John Smith"}]])
    assert result.verdict is Verdict.PASS
    assert [f.details["entity"] for f in result.findings] == ["PERSON"]


# -- streaming ------------------------------------------------------------------------------------------------

STREAM_TEXT = (
    "Dear John Smith, your card 4111 1111 1111 1111 and IBAN GB82 WEST 1234 5698 7654 32 are on file; "
    "write to ada@example.org or call +44 20 7946 0958. Server 2001:db8::1:7334 logged 10.0.0.7, SSN 123-45-6789."
)


@pytest.mark.parametrize("seed", range(6))
def test_stream_in_random_chunks_finds_what_the_whole_text_holds(scanner, seed) -> None:
    rng = random.Random(seed)
    stream = StreamingPIIScanner(scanner)
    released, pos = [], 0
    while pos < len(STREAM_TEXT):
        step = rng.randint(1, 9)
        released.append(stream.feed(STREAM_TEXT[pos : pos + step]))
        pos += step
    released.append(stream.finish())
    whole = scanner.scan(STREAM_TEXT)
    assert stream.entities == whole
    assert "".join(released) == pii_module.apply_actions(STREAM_TEXT, whole, lambda e, v: f"[{e.type}]")[0]


def test_stream_holds_back_text_an_entity_could_still_cross(scanner) -> None:
    stream = StreamingPIIScanner(scanner)
    head = "x" * (scanner.lookback_chars + 20) + " call +44 20 79"
    first = stream.feed(head)
    assert "+44" not in first  # the number is incomplete: held back, not released half-redacted
    rest = stream.feed("46 0958 now") + stream.finish()
    assert (first + rest).endswith("call [PHONE] now")


def test_policy_exposes_the_look_back_a_stream_needs() -> None:
    assert PIIPolicy().lookback_chars >= 256


def test_partial_texts_are_transformed_independently(tmp_path, privacy_plugins) -> None:
    # the engine's streaming buffer calls transform_output on partial texts; each must be handled alone
    with engine_with(tmp_path, privacy_plugins) as engine:
        result = engine.generate(MockFamily().enqueue("write to ada@exa", "write to ada@example.org"), n=2, seed=1)
    assert result.texts == ["write to ada@exa", "write to [EMAIL]"]


# -- large and bad input --------------------------------------------------------------------------------------


def test_huge_text_is_scanned_in_windows_without_losing_boundary_entities(monkeypatch) -> None:
    monkeypatch.setattr(pii_module, "WINDOW_CHARS", 2_000)
    small = PIIScanner(["EMAIL", "CREDIT_CARD"])
    pieces, expected = [], []
    for i in range(200):
        pieces.append("lorem ipsum " * (i % 7 + 1))
        value = f"user{i}@example.org" if i % 2 else "4111 1111 1111 1111"
        expected.append(value)
        pieces.append(value + " ")
    text = "".join(pieces)
    assert [text[e.start : e.end] for e in small.scan(text)] == expected


def test_undecodable_text_fails_closed() -> None:
    # Text decoded with surrogateescape carries the undecodable bytes as lone surrogates: refuse it (the
    # engine turns the error into a block). Through the engine this also trips the core's output digest,
    # which cannot encode lone surrogates: reported to the lead, not tested here.
    from gensdk.outputs import TextOutput

    broken = b"caf\xe9 ada@example.org".decode("utf-8", "surrogateescape")
    with pytest.raises(DataError, match="not valid Unicode"):
        PIIPolicy().transform_output([TextOutput(broken)], None)


def test_too_long_text_is_an_error_not_a_pass() -> None:
    policy = PIIPolicy({"max_text_chars": 10})
    with pytest.raises(DataError, match="max_text_chars"):
        policy._checked("x" * 11, "output 0")
    with pytest.raises(DataError, match="not text"):
        policy._checked(b"bytes", "output 0")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"default_action": "hash"}, "needs a key"),
        ({"default_action": "hash", "hash_key": "not-hex-at-all-not-hex-at-all-00"}, "not hexadecimal"),
        ({"default_action": "hash", "hash_key": "abcd"}, "at least 16"),
        ({"default_action": "hash", "hash_key_file": "/no/such/key"}, "does not exist"),
        ({"default_action": "hash", "hash_key": KEY, "hash_key_file": "/x"}, "not both"),
        ({"phone_regions": ["XX"]}, "unknown phone regions"),
        ({"actions": {"EMAIL": "shred"}}, "actions.EMAIL"),
        ({"entites": ["EMAIL"]}, "entites"),
        ({"name_locales": ["xx_XX"]}, "xx_XX"),
    ],
)
def test_bad_configuration_is_a_config_error(options, message) -> None:
    with pytest.raises(ConfigError, match=message):
        PIIPolicy(options)


def test_a_hash_key_is_only_required_when_hashing() -> None:
    assert PIIPolicy({"actions": {"EMAIL": "mask"}}).key_id is None


def test_possessive_names_end_before_the_s(scanner) -> None:
    assert found(scanner, "That is John Smith's car.") == [("PERSON", "John Smith")]
