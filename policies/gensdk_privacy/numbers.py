"""IBANs, payment cards, US SSNs, IPv4 addresses and phone numbers, in **one** pass over the text.

    numbers = NumbersPass({"IBAN", "PHONE"}, phone_checker(PhoneRules(["GB"])))
    numbers.find("IBAN GB82WEST12345698765432, call +44 20 7946 0958")
    # [("IBAN", 5, 27), ("PHONE", 34, 50)]

One pattern holds all five types, as alternatives in order of precedence behind one character class [+(0-9]:
that class is what lets the regex engine jump from one possible start to the next in C. The pattern itself
rejects what it can (digits inside a number, runs too short to be anything, the usual look-alikes of phone
numbers), so Python sees real candidates only, and decides each with its check: Luhn, mod-97, the phone rules.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection

from gensdk_privacy.checksums import IBAN_LENGTHS, card_valid, mod97_valid
from gensdk_privacy.phones import NOT_PHONE_REST, SEPARATORS

__all__ = ["NUMBER_TYPES", "NumbersPass"]

Found = tuple[str, int, int]  # (entity type, start, end)
NUMBER_TYPES = frozenset({"IBAN", "CREDIT_CARD", "US_SSN", "IPV4", "PHONE"})

# Each type's part below is what follows the first character [+(0-9] (its look-behinds re-read it). Verbose
# mode: a space is written '\ '.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"  # 0-255 without leading zeros
# IBANs are found from their first check digit: two capitals before it (a country of that IBAN length), nothing
# alphanumeric before those, and as many letters and digits as the country's IBANs hold, in groups.
IBAN_REST = "(?<=[A-Z]{2}[0-9])(?<![A-Za-z0-9][A-Z]{2}[0-9])[0-9](?:" + "|".join(
    f"(?<=(?:{'|'.join(c for c, n in IBAN_LENGTHS.items() if n == length)})[0-9]{{2}})(?:\\ ?[A-Z0-9]){{{length - 4}}}"
    for length in sorted(set(IBAN_LENGTHS.values()))) + ")(?![A-Za-z0-9])"
# What the one pass matches of an IBAN: its check digits, and a letter or digit (maybe after a space) next. The
# account part is counted by `_iban_end` instead, to the length IBAN_REST gives it: `re` runs a repeated group
# such as `(?:\ ?[A-Z0-9]){18}` one iteration at a time (about a microsecond an IBAN), and the country's length
# alternatives were tried at every digit after two capitals. The tests hold the pass to IBAN_REST.
_IBAN_HEAD = r"(?<=[A-Z]{2}[0-9])(?<![A-Za-z0-9][A-Z]{2}[0-9])[0-9](?=\ ?[A-Z0-9])"
# Cards and SSNs start at a digit with no word character or dash before it.
_CARD_SSN_START = r"(?<=[0-9])(?<![\w\-][0-9])"
# Cards: 12-19 digits bare, in groups of four (the last of 1-4 digits), or American Express's 4-6-5.
_CARD_BODY = (
    r"(?<![0-9][\ \-][0-9])"
    r"(?:[0-9]{11,18}|[0-9]{3}(?P<sep>[\ \-])[0-9]{4}(?P=sep)[0-9]{4}(?P=sep)[0-9]{1,4}(?:(?P=sep)[0-9]{1,3})?"
    r"|[0-9]{3}(?P<amex>[\ \-])[0-9]{6}(?P=amex)[0-9]{5})(?!\w)(?![\ \-][0-9])"
)
# SSNs: area 000, 666 and 900-999, group 00 and serial 0000 are never issued.
_SSN_BODY = r"[0-9]{2}(?<!000)(?<!666)(?<!9[0-9][0-9])-(?!00)[0-9]{2}-(?!0000)[0-9]{4}(?!\w)(?!-[0-9])"
CARD_REST, SSN_REST = _CARD_SSN_START + _CARD_BODY, _CARD_SSN_START + _SSN_BODY
# IPv4: four numbers 0-255 without leading zeros (the first one's first digit is taken already).
IPV4_REST = (
    rf"(?<=[0-9])(?<![\w.][0-9])(?:(?<=2)(?:5[0-5]|[0-4][0-9])|(?<=1)[0-9]{{2}}|(?<=[1-9])[0-9]|)"
    rf"\.{_OCTET}\.{_OCTET}\.{_OCTET}(?!\w)(?!\.[0-9])"
)
# Phone numbers: digit groups with + ( ) - . / and spaces, an extension x123 / ext. 123. The negative
# look-ahead skips the shapes that are something else (dates, decimals, ...: see phones.NOT_PHONE_REST) where no
# digit is within reach after them: it spares most dates and decimals a trip through Python.
PHONE_REST = (
    rf"(?<![\w+.\-/][+(0-9])(?!(?<=[0-9]){NOT_PHONE_REST}(?![0-9\-\ .()/]*[0-9]|\ ?(?:x|ext)))"
    r"(?:(?<=\+)\ ?|(?<=\())?[0-9]?[0-9\-\ .()/]{5,24}[0-9]"
    r"(?:\ ?(?:x|ext\.?|extension)\ ?[0-9]{1,6})?(?!\w)(?!\.[0-9])(?![\-/][0-9])"
)


def _alternatives(*kinds: tuple[str, str]) -> str:
    return "|".join(f"(?P<{kind}>{rest})" for kind, rest in kinds)


# The look-behind skips digits inside a number or a lowercase word; the look-ahead skips runs too short to be
# anything but an IBAN (years, prices, order numbers). Cards and SSNs share their look-behinds (their shapes
# exclude each other, as they exclude IPv4 addresses: only the phone number's place in the order matters).
_NUMBERS = re.compile(
    rf"[+(0-9](?<![0-9a-z_][+(0-9])(?:(?P<IBAN>{_IBAN_HEAD})|(?=[0-9\-\ .()/]{{6}})(?:"
    + f"{_CARD_SSN_START}(?:{_alternatives(('CREDIT_CARD', _CARD_BODY), ('US_SSN', _SSN_BODY))})|"
    + _alternatives(("IPV4", IPV4_REST), ("PHONE", PHONE_REST))
    + "))",
    re.ASCII | re.VERBOSE,
)
_GROUP_OF = _NUMBERS.groupindex
_IBAN, _CARD, _PHONE = _GROUP_OF["IBAN"], _GROUP_OF["CREDIT_CARD"], _GROUP_OF["PHONE"]
_PHONE_AT = re.compile(f"[+(0-9]{PHONE_REST}", re.ASCII | re.VERBOSE)  # a phone at the start of a failed card
# The types that take precedence over a phone number, looked for inside a phone candidate.
_CARD_SSN_IPV4 = re.compile(
    f"[0-9](?<![0-9a-z_][0-9])(?:{_alternatives(('CREDIT_CARD', CARD_REST), ('US_SSN', SSN_REST), ('IPV4', IPV4_REST))})",
    re.ASCII | re.VERBOSE,
)
MAX_CARD_SSN_IPV4_CHARS = 24  # the longest card (19 digits in 5 groups)


class NumbersPass:
    """The numbers pass for the chosen types; `is_phone` decides a phone candidate as written (None: phone
    numbers are not reported, but their candidates still hide what a scan for phones would hide).

    Candidates are resolved as separate scans per type would resolve them:

    * a card, SSN or IPv4 address that fails its check may still be a phone number at the same start;
    * a phone candidate, valid or not, hides further phone candidates up to its end (a scan for phones alone
      would have consumed it);
    * but a card, SSN or IPv4 address starting inside it takes precedence and cuts it short:
      "12:47:27. 79.50.8.46" holds an IPv4 address, not the phone number "27. 79.50.8.46", and in
      "+44 20 7946 0958 10.0.0.1" the phone number ends before the address.
    """

    def __init__(self, kinds: Collection[str], is_phone: Callable[[str], bool] | None):
        self.kinds = frozenset(kinds)
        self.is_phone = is_phone
        # group number of each type's alternative -> the type, for the types reported
        self._reported = {_GROUP_OF[kind]: kind for kind in NUMBER_TYPES & self.kinds}

    def find(self, text: str) -> list[Found]:
        """The entities in `text`, in no particular order."""
        found: list[Found] = []
        phones: list[str] = []  # candidates, checked after the loop: phone rules interleaved with the scan ran
        phone_starts: list[int] = []  # about 1.5 times as slow, their patterns pushed out of the CPU caches
        append, reported = found.append, self._reported  # locals: this loop is hot
        # a scanner keeps its state between matches; search() rebuilds it (`scanner` is not in typeshed)
        search = _NUMBERS.scanner(text).search  # type: ignore[attr-defined]
        phones_from = 0
        while (m := search()) is not None:
            kind = m.lastindex
            start, end = m.span()
            if kind == _IBAN:  # the match is the check digits, after the country
                end = _iban_end(text, end, IBAN_LENGTHS.get(text[start - 2 : start], 0) - 4)
                if end < 0:
                    continue  # not IBAN-shaped; no other type starts right after a letter
                if kind in reported and mod97_valid(text[start - 2 : end].replace(" ", "")):
                    append(("IBAN", start - 2, end))
                # an IBAN-shaped string with a wrong checksum holds nothing else: the scan goes on after it
                search = _NUMBERS.scanner(text, end).search  # type: ignore[attr-defined]
                continue
            if kind != _PHONE:
                if kind in reported and (kind != _CARD or card_valid(m.group())):
                    append((reported[kind], start, end))
                    continue
                m = _PHONE_AT.match(text, start)  # type: ignore[assignment]  # it may still be a phone number
            candidate, until = self._phone_candidate(text, m, start) if m is not None else ("", start + 1)
            if until != end:  # the scanner would go on from the end of its match
                search = _NUMBERS.scanner(text, until).search  # type: ignore[attr-defined]
            if candidate and start >= phones_from and (len(candidate) <= 15 or not candidate.isdigit()):  # E.164
                phones.append(candidate)
                phone_starts.append(start)
            phones_from = max(phones_from, until)
        if phones and self.is_phone is not None:
            self._check_phones(phones, phone_starts, found)
        return found

    def _phone_candidate(self, text: str, m: re.Match[str], start: int) -> tuple[str, int]:
        """The phone candidate `m` at `start`, and where the scan goes on: before a card, SSN or IPv4 address that
        starts inside it (the phone candidate then ends before it, if there is one at all)."""
        candidate, end = m.group(), m.end()
        if _may_hold_inner(candidate) and (inner := self._inner_start(text, start + 1, end)) is not None:
            shorter = _PHONE_AT.match(text, start, inner)
            return (shorter.group() if shorter is not None else ""), inner
        return candidate, end

    def _check_phones(self, phones: list[str], starts: list[int], found: list[Found]) -> None:
        is_phone = self.is_phone
        for candidate, start in zip(phones, starts):
            if is_phone(candidate):  # type: ignore[misc]
                found.append(("PHONE", start, start + len(candidate)))

    def _inner_start(self, text: str, start: int, end: int) -> int | None:
        """Start of the first card, SSN or IPv4 address of the chosen types that starts in [start, end)."""
        while (m := _CARD_SSN_IPV4.search(text, start, end + MAX_CARD_SSN_IPV4_CHARS)) is not None and m.start() < end:
            whole = _CARD_SSN_IPV4.match(text, m.start())  # without the window's end, which may cut a run short
            if whole is not None and whole.lastgroup in self.kinds and (whole.lastgroup != "CREDIT_CARD" or card_valid(whole.group())):
                return m.start()
            start = m.start() + 1
        return None


def _iban_end(text: str, pos: int, count: int) -> int:
    """Where an IBAN's account part starting at `pos` ends: `count` capitals or digits, each maybe after one
    space, and no letter or digit right after them (IBAN_REST's `(?:\\ ?[A-Z0-9]){n}(?![A-Za-z0-9])`); -1 where
    the text does not hold that. A count of 0 or less: not an IBAN country."""
    if count <= 0:
        return -1
    size = len(text)
    for _ in range(count):
        if pos < size and text[pos] == " ":
            pos += 1
        if pos >= size or not ("A" <= text[pos] <= "Z" or "0" <= text[pos] <= "9"):
            return -1
        pos += 1
    if pos < size and (text[pos].isascii() and text[pos].isalnum()):
        return -1
    return pos


def _may_hold_inner(candidate: str) -> bool:
    """Whether a card, SSN or IPv4 address can start inside a phone candidate at all: it needs a separator before
    it, and an SSN needs a dash, an address three dots, a card 12 digits. Most phone numbers have none of
    them, and skip the search."""
    return not candidate[:-1].isdigit() and (
        "-" in candidate or candidate.count(".") >= 3 or len(candidate.encode().translate(None, SEPARATORS)) >= 12)
