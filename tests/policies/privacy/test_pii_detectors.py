"""PII detectors against the libraries and checks they stand in for, and the one-pass numbers scan against
separate scans per type.

The fast paths replace library calls on the hot path (libphonenumber's parse + is_valid_number, ipaddress,
one regex pass instead of five): these tests hold them to the same answers on thousands of inputs.
"""

from __future__ import annotations

import ipaddress
import random
import re

import phonenumbers
import pytest
from faker import Faker
from gensdk_privacy import numbers
from gensdk_privacy.addresses import IPV6_ADDRESS
from gensdk_privacy.checksums import card_valid, iban_valid, luhn_valid
from gensdk_privacy.detectors import build_finder, resolve
from gensdk_privacy.phones import EXTENSION, PhoneRules
from gensdk_privacy.pii import PIIScanner, StreamingPIIScanner

REGIONS = ("US", "GB", "DE", "FR", "ES", "IT", "NL", "BR", "IN")
# Calling codes shared by many regions (CA), trunk prefixes rewritten by a rule (AR, MX), no trunk prefix (JP
# has one, CH 0): the parts of libphonenumber's logic the default regions do not reach.
OTHER_REGIONS = ("AR", "MX", "CA", "AU", "JP", "CH")
PHONE_LOCALES = ("en_US", "en_GB", "de_DE", "fr_FR", "it_IT", "pt_BR", "en_IN", "es_AR", "es_MX", "en_CA", "ja_JP")


def phone_candidates(n_random: int = 1200) -> list[str]:
    """Faker's numbers in 11 locales, and random digit strings with '+', '00', '011' and separators."""
    rng = random.Random(0)
    found = set()
    for locale in PHONE_LOCALES:
        fake = Faker(locale)
        fake.seed_instance(0)
        found.update(fake.phone_number() for _ in range(80))
    for _ in range(n_random):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(7, 15)))
        digits = rng.choice(["+", "00", "011", "", "", ""]) + digits
        if rng.random() < 0.5:
            digits = re.sub(r"(\d{3})(?=\d)", lambda m: m.group(1) + rng.choice(" -./"), digits, count=rng.randint(1, 3))
        found.add(digits)
    return sorted(found)


def library_says(candidate: str, regions: tuple[str, ...], leniency: str) -> bool:
    check = phonenumbers.is_valid_number if leniency == "valid" else phonenumbers.is_possible_number
    for region in (None,) if candidate.startswith("+") else regions:
        try:
            if check(phonenumbers.parse(candidate, region)):
                return True
        except phonenumbers.NumberParseException:
            continue
    return False


@pytest.fixture(scope="module")
def candidates() -> list[str]:
    return phone_candidates()


def digits_of(candidate: str) -> str:
    """What the detector hands PhoneRules: the digits, without an extension (the library strips it too)."""
    return re.sub(r"\D", "", EXTENSION.sub("", candidate))


@pytest.mark.parametrize("regions", [REGIONS, OTHER_REGIONS])
@pytest.mark.parametrize("leniency", ["valid", "possible"])
def test_phone_rules_agree_with_phonenumbers(candidates, regions, leniency) -> None:
    rules = PhoneRules(regions, leniency)
    ours = {c: rules.accepts(c.startswith("+"), digits_of(c)) for c in candidates}
    assert [c for c in candidates if ours[c] != library_says(c, regions, leniency)] == []
    assert 50 < sum(ours.values()) < len(candidates) - 50  # both answers are exercised


def test_ipv6_pattern_agrees_with_ipaddress() -> None:
    rng = random.Random(0)
    fake = Faker()
    fake.seed_instance(0)
    samples = set()
    for _ in range(500):
        address = ipaddress.IPv6Address(fake.ipv6())
        samples.update({str(address), address.exploded, f"::ffff:{fake.ipv4()}"})
    for _ in range(5000):
        groups = [rng.choice(["", f"{rng.getrandbits(rng.choice([4, 8, 16, 20])):x}", "1.2.3.4", "256.1.2.3", "01.2.3.4"])
                  for _ in range(rng.randint(1, 9))]
        samples.add(rng.choice(["", "::"]) + ":".join(groups) + rng.choice(["", "::"]))

    def parses(text: str) -> bool:
        try:
            ipaddress.IPv6Address(text)
        except ValueError:
            return False
        return True

    assert [s for s in samples if (IPV6_ADDRESS.fullmatch(s) is not None) != parses(s)] == []
    assert sum(map(parses, samples)) > 1000


def test_luhn_matches_the_textbook_loop() -> None:
    def textbook(digits: str) -> bool:
        total = 0
        for i, ch in enumerate(reversed(digits)):
            d = int(ch) * (2 if i % 2 else 1)
            total += d - 9 if d > 9 else d
        return total % 10 == 0

    rng = random.Random(0)
    numbers = ["".join(rng.choice("0123456789") for _ in range(rng.randint(12, 19))) for _ in range(3000)]
    assert [n for n in numbers if luhn_valid(n) != textbook(n)] == []
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")


def test_iban_check_accepts_fakers_ibans_and_rejects_a_changed_check_digit() -> None:
    fake = Faker()
    fake.seed_instance(0)
    ibans = [fake.iban() for _ in range(200)]
    assert all(map(iban_valid, ibans))
    changed = [iban[:2] + f"{(int(iban[2:4]) + 1) % 100:02d}" + iban[4:] for iban in ibans]
    assert not any(map(iban_valid, changed))


# -- the numbers pass: what separate scans per type would find --------------------------------------------------

SEPARATE = {kind: re.compile(f"{first}{rest}", re.ASCII | re.VERBOSE) for kind, first, rest in [
    ("IBAN", "[0-9]", numbers.IBAN_REST), ("CREDIT_CARD", "[0-9]", numbers.CARD_REST),
    ("US_SSN", "[0-9]", numbers.SSN_REST), ("IPV4", "[0-9]", numbers.IPV4_REST), ("PHONE", "[+(0-9]", numbers.PHONE_REST),
]}


def separate_scans(finder, text: str) -> list[tuple[str, int, int]]:
    """The behaviour the one-pass loop must reproduce: each type scanned on its own (finditer) and validated,
    overlaps resolved by precedence; phone numbers scanned last, on the text with the entities of the types
    that take precedence (and IBAN-shaped strings) blanked out, so that a phone candidate cannot run into them."""
    found, blank = [], []
    for kind, pattern in SEPARATE.items():
        if kind == "PHONE":
            continue
        for m in pattern.finditer(text):
            start, value = m.start(), m.group()
            if kind == "IBAN":
                start, value = start - 2, text[start - 2 : start] + value.replace(" ", "")
                blank.append((start, m.end()))
            if {"IBAN": iban_valid, "CREDIT_CARD": card_valid}.get(kind, bool)(value):
                found.append((kind, start, m.end()))
    found = resolve(found)
    masked = list(text)
    for start, end in blank + [(s, e) for _, s, e in found]:
        masked[start:end] = "_" * (end - start)
    phones = [("PHONE", m.start(), m.end()) for m in SEPARATE["PHONE"].finditer("".join(masked)) if finder.numbers.is_phone(m.group())]
    return resolve(found + phones)


def labelled_style_corpus(docs: int, seed: int) -> list[str]:
    """Sentences like the benchmark's: entities among dates, prices, versions, bad cards and bad IBANs."""
    rng = random.Random(seed)
    fakers = [Faker(locale) for locale in ("en_US", "de_DE", "fr_FR", "pt_BR", "en_GB")]
    for i, fake in enumerate(fakers):
        fake.seed_instance(seed + i)
    texts = []
    for _ in range(docs):
        fake = rng.choice(fakers)
        parts = [fake.phone_number(), fake.credit_card_number(), fake.iban(), fake.ipv4(), fake.ssn() if fake is fakers[0] else "",
                 fake.date(), fake.time(), f"{rng.uniform(0, 999):.4f}", f"{rng.randint(1, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 20)}",
                 str(rng.randint(10 ** 15, 10 ** 16)), fake.date(pattern="%d.%m.%Y"), f"${rng.uniform(1, 5000):,.2f}"]
        rng.shuffle(parts)
        texts.append(" ".join(rng.choice(["Call", "Ref", "on", "at", "(", "id:", "-"]) + " " + p for p in parts))
    return texts


@pytest.mark.parametrize("seed", [0, 1])
def test_one_pass_finds_what_separate_scans_per_type_find(seed) -> None:
    finder = build_finder(["IBAN", "CREDIT_CARD", "US_SSN", "IPV4", "PHONE"], REGIONS, "valid", ())
    texts = labelled_style_corpus(300, seed)
    differ = [t for t in texts if finder.find(t) != separate_scans(finder, t)]
    assert differ == []
    assert sum(len(finder.find(t)) for t in texts) > 900  # most documents hold several entities


def iban_variants(count: int, seed: int) -> list[str]:
    """IBANs as written and as mangled: in groups, cut short, with stray spaces, with a made-up account part,
    between neighbours that may run on into them (a letter, a digit, more groups, a phone number)."""
    rng = random.Random(seed)
    fake = Faker()
    fake.seed_instance(seed)
    texts = []
    for _ in range(count):
        iban = fake.iban()
        style = rng.random()
        if style < 0.3:
            iban = " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))
        elif style < 0.4:
            iban = iban[: rng.randint(4, len(iban))]
        elif style < 0.5:
            iban = "".join(ch + (" " if rng.random() < 0.2 else "") for ch in iban)
        elif style < 0.55:
            iban = iban[:2] + "".join(rng.choice("0123456789 AB") for _ in range(rng.randint(2, 40)))
        before = rng.choice(["", " ", "X", "a", "(", "-", "1"])
        after = rng.choice(["", " ", "x", "A", ".", " 12", "5", "  AB", " 1234 5678 9012"])
        texts.append(before + iban + after + rng.choice(["", " call 030 1234567"]))
    return texts


def test_one_pass_counts_an_iban_as_its_pattern_would() -> None:
    """The pass matches an IBAN's check digits only and counts its account part in Python (`_iban_end`):
    held to IBAN_REST, the whole IBAN as one repeated group, on IBANs spaced, cut and run on."""
    finder = build_finder(["IBAN", "CREDIT_CARD", "US_SSN", "IPV4", "PHONE"], ("US", "GB", "DE"), "valid", ())
    texts = iban_variants(4000, 0)
    differ = [t for t in texts if finder.find(t) != separate_scans(finder, t)]
    assert differ == []
    assert 1000 < sum(kind == "IBAN" for t in texts for kind, _, _ in finder.find(t)) < len(texts)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # an address that a phone candidate starting earlier would swallow wins over the phone number
        ("at 12:47:27. 79.50.8.46 appears", [("IPV4", "79.50.8.46")]),
        ("for $1,553.87. 664-93-4785 appears", [("US_SSN", "664-93-4785")]),
        # a Luhn-invalid card is still tried as a phone number at the same start
        ("call 4930901820 now", [("PHONE", "4930901820")]),
        # dates, decimals, versions, never-issued SSNs, out-of-range quads: none of them a phone number
        ("on 2023-04-05, 05.04.2023 and 12.04.23, 345.6789, v1.2.3, 666-12-3456, 256.1.1.1.", []),
        # an IBAN with a wrong checksum hides nothing; the card after a valid one is found
        ("Account DE88 3704 0044 0532 0130 00 failed.", []),
        ("IBAN DE89 3704 0044 0532 0130 00, card 4111 1111 1111 1111.",
         [("IBAN", "DE89 3704 0044 0532 0130 00"), ("CREDIT_CARD", "4111 1111 1111 1111")]),
        # a phone number inside parentheses and with an extension
        ("Desk (415) 555-2671 ext. 12, fax +44 20 7946 0958.", [("PHONE", "(415) 555-2671 ext. 12"), ("PHONE", "+44 20 7946 0958")]),
    ],
)
def test_numbers_pass_resolves_neighbours_and_lookalikes(text, expected) -> None:
    scanner = PIIScanner(["IBAN", "CREDIT_CARD", "US_SSN", "IPV4", "PHONE"])
    assert [(e.type, text[e.start : e.end]) for e in scanner.scan(text)] == expected


def test_types_left_out_are_not_reported_and_do_not_hide_others() -> None:
    phones_only = PIIScanner(["PHONE"])
    text = "SSN 123-45-6789, card 4111 1111 1111 1111, host 10.0.0.1, call +44 20 7946 0958"
    assert [(e.type, text[e.start : e.end]) for e in phones_only.scan(text)] == [("PHONE", "+44 20 7946 0958")]


def test_possible_leniency_accepts_numbers_of_a_possible_length() -> None:
    text = "call 030 1234567 please"  # a German number of a possible length whose area code is not valid
    strict, lenient = PIIScanner(["PHONE"]), PIIScanner(["PHONE"], phone_leniency="possible")
    assert len(lenient.scan(text)) == 1
    assert library_says("030 1234567", REGIONS, "valid") == bool(strict.scan(text))


def test_names_need_a_word_start_and_no_street_before_them() -> None:
    scanner = PIIScanner(["PERSON"])
    assert scanner.scan("XJohn Smith was here") == []
    assert scanner.scan("She lives on rue Aurore Royer.") == []
    assert scanner.scan("Apartment at Via della Maria Rossi 4") == []  # a particle between street and name
    assert [e.type for e in scanner.scan("Xcalle John Smith came")] == ["PERSON"]  # "calle" only as a word
    assert [e.type for e in scanner.scan("Then John Smith-Jones and Mary Smith came")] == ["PERSON"]


def test_a_street_word_in_an_earlier_chunk_still_counts_when_streaming() -> None:
    scanner = PIIScanner(["PERSON"])
    text = "x" * 400 + " She lives at Calle Roxana Acedo 12, not John Smith."
    stream = StreamingPIIScanner(scanner)
    out = "".join(stream.feed(text[i : i + 3]) for i in range(0, len(text), 3)) + stream.finish()
    assert out.endswith("Calle Roxana Acedo 12, not [PERSON].")
    assert stream.entities == scanner.scan(text)
