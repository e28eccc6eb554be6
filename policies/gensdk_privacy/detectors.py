"""PII detectors: a few regular-expression passes find candidates, then a check decides each one.

    finder = build_finder(["EMAIL", "PHONE"], phone_regions=("US", "DE"), phone_leniency="valid", name_locales=("en_US",))
    finder.find("write to ada@example.org")      # [("EMAIL", 9, 24)]

Speed comes from scanning the text as few times as possible, each time with a pattern that starts with a
character class or a literal (the regex engine then skips to candidate positions in C):

* e-mail: from each '@' (`addresses`);
* IBAN, payment card, SSN, IPv4 and phone number: one pass of one pattern (`numbers`, with `checksums` and the
  phone rules of `phones`);
* IPv6: from each ':hex:' (`addresses`);
* person names: one pattern holding the first-name and last-name gazetteers as tries (`names`).

Every pattern is bounded in length (`MAX_ENTITY_CHARS`), which is what lets a stream be scanned with a fixed
look-back (see `pii.StreamingPIIScanner`).
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Iterable, Sequence

from gensdk_privacy.addresses import find_emails, find_ipv6
from gensdk_privacy.names import NAME_LOCALES, NameGazetteer
from gensdk_privacy.numbers import NUMBER_TYPES, NumbersPass
from gensdk_privacy.phones import PhoneRules, phone_checker

__all__ = ["ENTITY_TYPES", "MAX_ENTITY_CHARS", "NAME_LOCALES", "EntityFinder", "build_finder"]

Found = tuple[str, int, int]  # (entity type, start, end)

# Order of precedence: on overlap the earlier type wins (a card number is not also a phone number).
ENTITY_TYPES = ("EMAIL", "IBAN", "CREDIT_CARD", "US_SSN", "IPV6", "IPV4", "PHONE", "PERSON")
# The longest entity any detector can report: e-mail 64 + 1 + 190, IBAN 34 + 8 spaces, IPv6 45, phone 40.
MAX_ENTITY_CHARS = 256


class EntityFinder:
    """Runs the passes for the chosen entity types and resolves overlaps by `ENTITY_TYPES` order."""

    def __init__(self, entities: Iterable[str], phone_rules: PhoneRules | None, names: NameGazetteer | None):
        self.kinds = frozenset(entities)
        is_phone = phone_checker(phone_rules) if phone_rules and "PHONE" in self.kinds else None
        self.numbers = NumbersPass(self.kinds, is_phone) if self.kinds & NUMBER_TYPES else None
        self.names = names if "PERSON" in self.kinds else None
        self._emails = "EMAIL" in self.kinds
        self._ipv6 = "IPV6" in self.kinds
        if self.names is not None:
            _ = self.names.pattern  # compile now, not on the first text

    def find(self, text: str) -> list[Found]:
        """Entities in `text`: (type, start, end), sorted by start, not overlapping."""
        # `in` on a str runs in C: short texts skip whole passes
        found = find_emails(text) if self._emails and "@" in text else []
        if self._ipv6 and ":" in text:
            found += find_ipv6(text)
        if self.numbers is not None:
            found += self.numbers.find(text)
        if self.names is not None:
            found += self.names.find(text)
        return resolve(found) if len(found) > 1 else found


_START, _END = operator.itemgetter(1), operator.itemgetter(2)
_RANK = {kind: i for i, kind in enumerate(ENTITY_TYPES)}


def resolve(found: list[Found]) -> list[Found]:
    """Sorted by start; where spans overlap, the type earlier in ENTITY_TYPES wins (of one type, the earlier)."""
    found.sort(key=_START)
    # the usual case, tested in C: each entity ends before the next one starts, so none overlaps another
    if all(map(operator.le, map(_END, found), map(_START, itertools.islice(found, 1, None)))):
        return found
    runs = []  # (first, stop) of each run of entities overlapping one another (through each other)
    first = reach = 0
    for i, (_, start, end) in enumerate(found):
        if start >= reach:  # nothing before reaches it: a new run
            if i - first > 1:
                runs.append((first, i))
            first = i
        if end > reach:
            reach = end
    if len(found) - first > 1:
        runs.append((first, len(found)))
    if not runs:
        return found  # the usual case: nothing overlaps
    kept: list[Found] = []
    done = 0
    for first, stop in runs:  # each run is settled on its own: what is kept in one cannot overlap another
        kept += found[done:first]
        kept += _by_rank(found[first:stop])
        done = stop
    return kept + found[done:]


def _by_rank(run: list[Found]) -> list[Found]:
    """The entities of a run kept by rank: each one unless it overlaps one of an earlier type (or of its own,
    starting earlier) kept before it. Runs are short; sorted by start again."""
    kept: list[Found] = []
    for entity in sorted(run, key=lambda f: (_RANK[f[0]], f[1])):
        if all(other[2] <= entity[1] or entity[2] <= other[1] for other in kept):
            kept.append(entity)
    return sorted(kept, key=_START)


def build_finder(entities: Sequence[str], phone_regions: Sequence[str], phone_leniency: str,
                 name_locales: Sequence[str]) -> EntityFinder:
    rules = PhoneRules(phone_regions, phone_leniency) if "PHONE" in entities else None
    names = NameGazetteer.from_faker(tuple(name_locales)) if "PERSON" in entities else None
    return EntityFinder(entities, rules, names)
