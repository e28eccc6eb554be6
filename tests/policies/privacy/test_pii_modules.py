"""The pieces of the PII detectors that exist for speed, held to the plain versions they replace: atomic groups
in the phone look-alike pattern, the mod-97 fast path, card numbers as written, phone candidates checked after
the scan, overlaps resolved by precedence."""

from __future__ import annotations

import random
import re

import pytest
from faker import Faker
from gensdk.errors import ConfigError
from gensdk_privacy import numbers, phones
from gensdk_privacy.checksums import IBAN_LENGTHS, card_valid, iban_valid, luhn_valid, mod97_valid
from gensdk_privacy.detectors import ENTITY_TYPES, build_finder, resolve
from gensdk_privacy.phones import PhoneRules

REGIONS = ("US", "GB", "DE", "FR", "ES", "IT", "NL", "BR", "IN")


def without_atomic_groups(pattern: str) -> str:
    """The same pattern with every atomic group and possessive repeat made an ordinary (backtracking) one."""
    plain = pattern.replace("(?>", "(?:").replace("*+", "*").replace("++", "+")
    return re.sub(r"(\{\d*,?\d*\})\+", r"\1", plain)


def number_like(rng: random.Random) -> str:
    """Digit groups with the separators and extensions phone numbers, dates, decimals and prices are made of."""
    def token() -> str:
        r = rng.random()
        if r < 0.6:
            return "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 4)))
        if r < 0.9:
            return rng.choice([" ", "-", ".", "/", ",", "(", ")", "+", ". "])
        return rng.choice(["x1", " ext 2", "a", "Z"])

    return rng.choice("0123456789") + "".join(token() for _ in range(rng.randint(1, 9)))


def test_atomic_groups_do_not_change_what_the_phone_patterns_match() -> None:
    assert without_atomic_groups(phones.NOT_PHONE_REST) != phones.NOT_PHONE_REST  # there is something to compare
    plain_not_phone = re.compile("[0-9]" + without_atomic_groups(phones.NOT_PHONE_REST), re.ASCII | re.VERBOSE)
    plain_phone_at = re.compile("[+(0-9]" + without_atomic_groups(numbers.PHONE_REST), re.ASCII | re.VERBOSE)
    rng = random.Random(0)
    # the first: a thousands group whose decimals must be given back (that group is not atomic for this reason)
    samples = ["306 593,759491 ext 2"] + [number_like(rng) for _ in range(30000)]
    assert [s for s in samples if bool(phones._NOT_PHONE.fullmatch(s)) != bool(plain_not_phone.fullmatch(s))] == []
    spans = [(s, m and m.span(), p and p.span()) for s in samples
             for m, p in [(numbers._PHONE_AT.match(s), plain_phone_at.match(s))]]
    assert [x for x in spans if x[1] != x[2]] == []
    assert sum(1 for _, m, _ in spans if m) > 3000  # phone candidates are among the samples


def test_mod97_fast_path_agrees_with_the_letter_translation() -> None:
    rng = random.Random(0)
    fake = Faker(["de_DE", "en_GB", "nl_NL", "es_ES", "fr_FR", "it_IT", "pt_BR"])
    fake.seed_instance(0)
    ibans = [fake.iban() for _ in range(400)]
    assert all(map(iban_valid, ibans))
    assert any(iban[4:].isdigit() for iban in ibans) and not all(iban[4:].isdigit() for iban in ibans)  # both paths run
    # digit-only account numbers (the fast path), with right and with random check digits, against the textbook
    def textbook(compact: str) -> bool:
        return int("".join(str(int(ch, 36)) for ch in compact[4:] + compact[:4])) % 97 == 1

    for _ in range(3000):
        country = rng.choice(sorted(IBAN_LENGTHS))
        bban = "".join(rng.choice("0123456789") for _ in range(IBAN_LENGTHS[country] - 4))
        right = 98 - int("".join(str(int(ch, 36)) for ch in bban + country + "00")) % 97
        for check in (f"{right:02d}", f"{rng.randint(0, 99):02d}"):
            compact = country + check + bban
            assert mod97_valid(compact) == textbook(compact), compact
        assert mod97_valid(f"{country}{right:02d}{bban}")


@pytest.mark.parametrize("separator", ["", " ", "-"])
def test_card_numbers_are_checked_as_written(separator) -> None:
    rng = random.Random(1)
    for _ in range(500):
        digits = "".join(rng.choice("0123456789") for _ in range(16))
        written = separator.join(digits[i : i + 4] for i in range(0, 16, 4))
        assert card_valid(written) == (luhn_valid(digits) and digits.strip("0") != "")
    assert not card_valid(separator.join(["0000"] * 4))  # Luhn-valid, but no one's card


def test_unknown_phone_regions_are_a_config_error_naming_them() -> None:
    with pytest.raises(ConfigError, match=r"\['XX'\]"):
        PhoneRules(["US", "XX"])


def test_a_card_shaped_number_failing_luhn_is_not_a_phone_number_either() -> None:
    finder = build_finder(["CREDIT_CARD", "PHONE"], REGIONS, "valid", ())
    text = "ref 4111111111111112 and 4111 1111 1111 1112, call +44 20 7946 0958"
    assert [(kind, text[s:e]) for kind, s, e in finder.find(text)] == [("PHONE", "+44 20 7946 0958")]


def test_entities_come_sorted_and_never_overlapping() -> None:
    finder = build_finder(ENTITY_TYPES, REGIONS, "valid", ("en_US", "de_DE"))
    fake = Faker(["en_US", "de_DE"])
    fake.seed_instance(2)
    parts = []
    for _ in range(300):  # phone numbers (checked after the scan) among the other types, some run together
        parts += [fake.phone_number(), fake.iban(), fake.email(), fake.name(), fake.ipv4(), fake.credit_card_number()]
    found = finder.find("; ".join(parts) + " " + "".join(parts[:40]))
    assert len(found) > 1000
    assert all(a[2] <= b[1] for a, b in zip(found, found[1:]))
    assert {kind for kind, _, _ in found} >= {"PHONE", "IBAN", "EMAIL", "PERSON", "IPV4", "CREDIT_CARD"}


def test_overlaps_go_to_the_type_earlier_in_the_order() -> None:
    found = [("PERSON", 30, 40), ("PHONE", 0, 12), ("IPV4", 5, 14), ("EMAIL", 10, 20), ("PHONE", 35, 45)]
    assert resolve(found) == [("EMAIL", 10, 20), ("PHONE", 35, 45)]
    assert resolve([("PHONE", 0, 12), ("EMAIL", 10, 20)]) == [("EMAIL", 10, 20)]
    assert resolve([("PERSON", 8, 9), ("IBAN", 0, 5)]) == [("IBAN", 0, 5), ("PERSON", 8, 9)]


def test_overlaps_are_resolved_as_one_pass_by_rank_would_resolve_them() -> None:
    """The definition: take the entities by type order (then start), keep each unless it overlaps one kept."""
    def by_definition(found):
        kept = []
        for entity in sorted(found, key=lambda f: (ENTITY_TYPES.index(f[0]), f[1])):
            if all(other[2] <= entity[1] or entity[2] <= other[1] for other in kept):
                kept.append(entity)
        return sorted(kept, key=lambda f: f[1])

    rng = random.Random(3)
    for _ in range(3000):
        found = []
        for _ in range(rng.randint(0, 40)):
            start = rng.randrange(rng.choice([30, 300]))
            found.append((rng.choice(ENTITY_TYPES), start, start + rng.randint(1, 12)))
        assert resolve(list(found)) == by_definition(found), found


def test_entities_that_touch_do_not_overlap() -> None:
    """The quick no-overlap test compares each end with the next start: touching spans are both kept, and an
    overlap further along still goes to the rank rule."""
    assert resolve([("PHONE", 5, 9), ("EMAIL", 0, 5)]) == [("EMAIL", 0, 5), ("PHONE", 5, 9)]
    assert resolve([("EMAIL", 0, 5), ("PERSON", 5, 9), ("PHONE", 8, 20)]) == [("EMAIL", 0, 5), ("PHONE", 8, 20)]


def test_names_after_a_rejected_first_candidate_are_found() -> None:
    """The names pass searches once and stops when nothing is there; otherwise it goes on from that first
    candidate, which may itself be rejected (inside a word, after a street word)."""
    finder = build_finder(["PERSON"], (), "valid", ("en_US",))
    text = "xJohn Smith met Mary Jones, then Calle Mary Jones and Anna Lee."
    assert [text[a:b] for _, a, b in finder.find(text)] == ["Mary Jones", "Anna Lee"]
    assert finder.find("no capitalised names here") == []
