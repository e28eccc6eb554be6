"""PII detectors: a few regular-expression passes find candidates, then a validator decides each one.

    finder = build_finder(["EMAIL", "PHONE"], phone_regions=("US", "DE"), phone_leniency="valid", name_locales=("en_US",))
    finder.find("write to ada@example.org")      # [("EMAIL", 9, 24)]

Speed comes from scanning the text as few times as possible, each time with a pattern that starts with a
character class or a literal (the regex engine then skips to candidate positions in C):

* e-mail: from each '@' (`str.find`);
* IBAN, payment card, SSN, IPv4 and phone number: **one** pass of one pattern, one alternative per type, in the
  order of precedence. A failed candidate is handled as a per-type scan would have handled it;
* IPv6: from each ':hex:' (a literal-prefixed search);
* person names: one pattern holding the first-name and last-name gazetteers as tries.

Validators keep precision high: a card number must pass the Luhn check, an IBAN its country's length and the
mod-97 check, an IP address must parse, a phone number must be valid (or possible) for one of the configured
regions by libphonenumber's rules (`PhoneRules`: libphonenumber's metadata, compiled once).

Every pattern is bounded in length (`MAX_ENTITY_CHARS`), which is what lets a stream be scanned with a fixed
look-back (see `pii.StreamingPIIScanner`).
"""

from __future__ import annotations

import bisect
import functools
import operator
import re
from collections.abc import Iterable, Iterator, Sequence
from itertools import pairwise
from typing import Any

__all__ = ["ENTITY_TYPES", "MAX_ENTITY_CHARS", "EntityFinder", "NameGazetteer", "PhoneRules", "build_finder",
           "iban_valid", "luhn_valid"]

Found = tuple[str, int, int]  # (entity type, start, end)

# Order of precedence: on overlap the earlier type wins (a card number is not also a phone number).
ENTITY_TYPES = ("EMAIL", "IBAN", "CREDIT_CARD", "US_SSN", "IPV6", "IPV4", "PHONE", "PERSON")
# The longest entity any detector can report: e-mail 64 + 1 + 190, IBAN 34 + 8 spaces, IPv6 45, phone 40.
MAX_ENTITY_CHARS = 256

# -- e-mail ---------------------------------------------------------------------------------------------------
# Anchored on '@' (str.find runs at memory speed): the domain is matched forward, the local part backward on the
# reversed text, so the expensive patterns run only where there is an '@' at all.
_LOCAL_REVERSED = re.compile(r"[A-Za-z0-9._%+\-]{1,64}")
_DOMAIN = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.){1,8}[A-Za-z]{2,24}(?![A-Za-z0-9\-])")


def emails(text: str) -> Iterator[tuple[int, int]]:
    at = text.find("@")
    while at != -1:
        domain = _DOMAIN.match(text, at + 1)
        local = _LOCAL_REVERSED.match(text[max(0, at - 64) : at][::-1])
        if domain and local:
            start = at - local.end()
            while start < at and text[start] == ".":  # a sentence's full stop is not part of the address
                start += 1
            if start < at and text[at - 1] != ".":
                yield start, domain.end()
        at = text.find("@", at + 1)


# -- validators -----------------------------------------------------------------------------------------------
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"  # 0-255 without leading zeros
_DOUBLED = bytes.maketrans(b"0123456789", b"0246813579")  # a digit -> the digit sum of twice the digit


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum of a digit string, summed as bytes: no Python loop over the digits."""
    b = digits.encode()
    return (sum(b[-1::-2]) + sum(b[-2::-2].translate(_DOUBLED)) - 48 * len(b)) % 10 == 0


# ISO 13616 lengths of the countries in the IBAN registry (a length check rejects most random strings).
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29, "BY": 28,
    "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18,
    "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20,
    "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15,
    "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19,
    "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}
# A=10 ... Z=35, as a table indexed by code point: str.translate looks a list up faster than a dict.
_LETTER_VALUES: list[Any] = list(range(65)) + [str(v) for v in range(10, 36)]


def iban_valid(compact: str) -> bool:
    return IBAN_LENGTHS.get(compact[:2]) == len(compact) and _mod97_valid(compact)


def _mod97_valid(compact: str) -> bool:
    return int((compact[4:] + compact[:4]).translate(_LETTER_VALUES)) % 97 == 1


def _card_valid(candidate: str) -> bool:
    digits = candidate.replace(" ", "").replace("-", "")
    return luhn_valid(digits) and digits.strip("0") != ""


# -- the numbers pass: IBAN, card, SSN, IPv4, phone -------------------------------------------------------------
# One pattern holds all five, as alternatives in order of precedence behind one character class [+(0-9]: that
# class is what lets the engine jump from one possible start to the next in C. Each type's part below is what
# follows that first character (its look-behinds re-read it). Verbose mode: a space is written '\ '.

# IBANs are found from their first check digit: two capitals before it (a country of that IBAN length), nothing
# alphanumeric before those, and as many letters and digits as the country's IBANs hold, in groups.
_IBAN_REST = "(?<=[A-Z]{2}[0-9])(?<![A-Za-z0-9][A-Z]{2}[0-9])[0-9](?:" + "|".join(
    f"(?<=(?:{'|'.join(c for c, n in IBAN_LENGTHS.items() if n == length)})[0-9]{{2}})(?:\\ ?[A-Z0-9]){{{length - 4}}}"
    for length in sorted(set(IBAN_LENGTHS.values()))) + ")(?![A-Za-z0-9])"
# Cards: 12-19 digits bare, in groups of four (the last of 1-4 digits), or American Express's 4-6-5.
_CARD_REST = (
    r"(?<=[0-9])(?<![\w\-][0-9])(?<![0-9][\ \-][0-9])"
    r"(?:[0-9]{11,18}|[0-9]{3}(?P<sep>[\ \-])[0-9]{4}(?P=sep)[0-9]{4}(?P=sep)[0-9]{1,4}(?:(?P=sep)[0-9]{1,3})?"
    r"|[0-9]{3}(?P<amex>[\ \-])[0-9]{6}(?P=amex)[0-9]{5})(?!\w)(?![\ \-][0-9])"
)
# SSNs: area 000, 666 and 900-999, group 00 and serial 0000 are never issued.
_SSN_REST = r"(?<=[0-9])(?<![\w\-][0-9])[0-9]{2}(?<!000)(?<!666)(?<!9[0-9][0-9])-(?!00)[0-9]{2}-(?!0000)[0-9]{4}(?!\w)(?!-[0-9])"
# IPv4: four numbers 0-255 without leading zeros (the first one's first digit is taken already).
_IPV4_REST = (
    rf"(?<=[0-9])(?<![\w.][0-9])(?:(?<=2)(?:5[0-5]|[0-4][0-9])|(?<=1)[0-9]{{2}}|(?<=[1-9])[0-9]|)"
    rf"\.{_OCTET}\.{_OCTET}\.{_OCTET}(?!\w)(?!\.[0-9])"
)
# Digit strings shaped like a phone number that are something else: dates, decimals, thousands groups, SSN
# shapes, dotted quads, postal codes like 12345-678, bare numbers of up to 8 digits (less the first digit).
_NOT_PHONE_REST = (
    r"(?:[0-9]{3}[\-/.][0-9]{1,2}[\-/.][0-9]{1,2}|[0-9]?[\-/.][0-9]{1,2}[\-/.][0-9]{2,4}|[0-9]*\.[0-9]+"
    r"|[0-9]{0,2}(?:\ [0-9]{3})+(?:[.,][0-9]+)?|[0-9]{2}-[0-9]{2}-[0-9]{4}|[0-9]{0,2}(?:\.[0-9]{1,3}){3}"
    r"|[0-9]{4}-[0-9]{3}|[0-9]{0,7})"
)
_NOT_PHONE = re.compile(f"[0-9]{_NOT_PHONE_REST}", re.ASCII | re.VERBOSE)  # checked on each whole candidate
# Phone numbers: digit groups with + ( ) - . / and spaces, an extension x123 / ext. 123. The negative
# look-ahead skips the shapes above where no digit is within reach after them: it spares most dates and
# decimals a trip through Python.
_PHONE_REST = (
    rf"(?<![\w+.\-/][+(0-9])(?!(?<=[0-9]){_NOT_PHONE_REST}(?![0-9\-\ .()/]*[0-9]|\ ?(?:x|ext)))"
    r"(?:(?<=\+)\ ?|(?<=\())?[0-9]?[0-9\-\ .()/]{5,24}[0-9]"
    r"(?:\ ?(?:x|ext\.?|extension)\ ?[0-9]{1,6})?(?!\w)(?!\.[0-9])(?![\-/][0-9])"
)


def _alternatives(*kinds: tuple[str, str]) -> str:
    return "|".join(f"(?P<{kind}>{rest})" for kind, rest in kinds)


# The look-behind skips digits inside a number or a lowercase word; the look-ahead skips runs too short to be
# anything but an IBAN (years, prices, order numbers).
_NUMBERS = re.compile(
    rf"[+(0-9](?<![0-9a-z_][+(0-9])(?:(?P<IBAN>{_IBAN_REST})|(?=[0-9\-\ .()/]{{6}})(?:"
    + _alternatives(("CREDIT_CARD", _CARD_REST), ("US_SSN", _SSN_REST), ("IPV4", _IPV4_REST), ("PHONE", _PHONE_REST))
    + "))",
    re.ASCII | re.VERBOSE,
)
_PHONE_AT = re.compile(f"[+(0-9]{_PHONE_REST}", re.ASCII | re.VERBOSE)  # a phone at the start of a failed card
# The types that take precedence over a phone number, looked for inside a phone candidate.
_CARD_SSN_IPV4 = re.compile(
    f"[0-9](?<![0-9a-z_][0-9])(?:{_alternatives(('CREDIT_CARD', _CARD_REST), ('US_SSN', _SSN_REST), ('IPV4', _IPV4_REST))})",
    re.ASCII | re.VERBOSE,
)
MAX_CARD_SSN_IPV4_CHARS = 24  # the longest card (19 digits in 5 groups)
_EXTENSION = re.compile(r" ?(?:x|ext\.?|extension) ?\d{1,6}$", re.ASCII)
_NON_DIGITS = str.maketrans("", "", " -.()/+")


# -- IPv6 -----------------------------------------------------------------------------------------------------
# Every address holds "::" or (7 colons) ':h:h:' from its first colon on: times (12:30:45) and ratios do not.
_IPV6_GATE = re.compile(r":(?::|[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{0,4}:)")
_HEX_BEFORE = re.compile(r"[0-9A-Fa-f]{1,4}\Z")
_IPV6_CANDIDATE = re.compile(r"(?<![\w:.])(?=[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}:)[0-9A-Fa-f:.]{2,45}(?![\w:])", re.ASCII)
# The textual forms of RFC 3986 (section 3.2.2), which Python's ipaddress accepts too (the tests compare them
# on thousands of strings); a pattern is three times faster than constructing an IPv6Address.
_H16 = "[0-9A-Fa-f]{1,4}"
_LS32 = rf"(?:{_H16}:{_H16}|{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET})"
_IPV6_ADDRESS = re.compile("|".join(f"(?:{form})" for form in [
    rf"(?:{_H16}:){{6}}{_LS32}",
    rf"::(?:{_H16}:){{5}}{_LS32}",
    rf"(?:{_H16})?::(?:{_H16}:){{4}}{_LS32}",
    rf"(?:(?:{_H16}:)?{_H16})?::(?:{_H16}:){{3}}{_LS32}",
    rf"(?:(?:{_H16}:){{0,2}}{_H16})?::(?:{_H16}:){{2}}{_LS32}",
    rf"(?:(?:{_H16}:){{0,3}}{_H16})?::{_H16}:{_LS32}",
    rf"(?:(?:{_H16}:){{0,4}}{_H16})?::{_LS32}",
    rf"(?:(?:{_H16}:){{0,5}}{_H16})?::{_H16}",
    rf"(?:(?:{_H16}:){{0,6}}{_H16})?::",
]), re.ASCII)


def ipv6s(text: str) -> Iterator[tuple[int, int]]:
    """From each gate, back over the address's first group, then the whole candidate. "::" alone and "::1"
    are not anyone's address."""
    gate = _IPV6_GATE.search(text)
    while gate:
        colon = gate.start()
        before = _HEX_BEFORE.search(text, max(0, colon - 4), colon)
        m = _IPV6_CANDIDATE.match(text, before.start() if before else colon)
        gate = _IPV6_GATE.search(text, m.end() if m else gate.end())
        if m is None:
            continue
        candidate = m.group().rstrip(".")
        if _IPV6_ADDRESS.fullmatch(candidate) and len(candidate) - candidate.count(":") - candidate.count(".") >= 2:
            yield m.start(), m.start() + len(candidate)


# -- phone numbers --------------------------------------------------------------------------------------------
TOO_SHORT, TOO_LONG, INVALID_LENGTH, LOCAL_ONLY, POSSIBLE = range(5)
_NUMBER_TYPES = ("premium_rate", "toll_free", "shared_cost", "voip", "personal_number", "pager", "uan", "voicemail",
                 "fixed_line", "mobile")


class _Plan:
    """One region's libphonenumber metadata (or a non-geographic calling code's), its patterns compiled."""

    def __init__(self, meta: Any):
        general = meta.general_desc
        self.country_code: int = meta.country_code
        self.general = re.compile(general.national_number_pattern or "(?!)")
        self.lengths: tuple[int, ...] = tuple(general.possible_length)
        self.local_lengths = frozenset(general.possible_length_local_only)
        by_length: dict[int, list[str]] = {}  # number length -> the patterns of the number types of that length
        for name in _NUMBER_TYPES:
            desc = getattr(meta, name)
            if desc is not None and desc.national_number_pattern:
                for n in desc.possible_length or range(1, 18):
                    by_length.setdefault(n, []).append(f"(?:{desc.national_number_pattern})")
        self.typed = {n: re.compile("|".join(patterns)) for n, patterns in by_length.items()}
        self.national_prefix = re.compile(meta.national_prefix_for_parsing) if meta.national_prefix_for_parsing else None
        self.transform = meta.national_prefix_transform_rule or None
        self.idd = re.compile(meta.international_prefix) if meta.international_prefix else None
        self.leading_digits = re.compile(meta.leading_digits) if meta.leading_digits else None

    def valid(self, nsn: str) -> bool:
        """libphonenumber's is-valid test: the general pattern, then any number type's pattern and lengths."""
        typed = self.typed.get(len(nsn))
        return (typed is not None and (not self.lengths or len(nsn) in self.lengths)
                and self.general.fullmatch(nsn) is not None and typed.fullmatch(nsn) is not None)

    def length(self, nsn: str) -> int:
        n, lengths = len(nsn), self.lengths
        if n in self.local_lengths:
            return LOCAL_ONLY
        if not lengths:
            return INVALID_LENGTH
        if n in lengths:
            return POSSIBLE
        return TOO_SHORT if n < lengths[0] else TOO_LONG if n > lengths[-1] else INVALID_LENGTH

    def strip_national_prefix(self, number: str) -> str:
        """The number without its trunk prefix or carrier code, unless that leaves no viable number."""
        m = self.national_prefix.match(number) if self.national_prefix and number else None
        if m is None:
            return number
        groups = m.groups()
        stripped = number[m.end():] if not self.transform or not groups or groups[-1] is None else \
            self.national_prefix.sub(self.transform, number, count=1)
        if self.general.fullmatch(number) and not self.general.fullmatch(stripped):
            return number
        return stripped


@functools.cache
def _plan(region: str, country_code: int = 0) -> _Plan | None:
    """The compiled metadata of a region (or, for region "001", of a non-geographic calling code); shared by
    every PhoneRules in the process: compiling one region takes about a millisecond."""
    import phonenumbers

    meta = (phonenumbers.PhoneMetadata.metadata_for_nongeo_region(country_code, None) if region == "001"
            else phonenumbers.PhoneMetadata.metadata_for_region(region, None))
    return None if meta is None else _Plan(meta)


@functools.cache
def _calling_code(country_code: int) -> tuple[list[_Plan], re.Pattern[str] | None, bool]:
    """The plans of the regions sharing a calling code, in libphonenumber's order; one pattern of their
    leading digits (group "r<i>" for region i) that finds the first region whose leading digits fit; and
    whether the code has one region only (then no leading digits are consulted)."""
    import phonenumbers

    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(country_code, ())
    plans = [p for p in (_plan(r, country_code) for r in regions) if p]
    leading = [f"(?P<r{i}>{p.leading_digits.pattern})" for i, p in enumerate(plans) if p.leading_digits is not None]
    return plans, re.compile("|".join(leading)) if leading else None, len(regions) == 1


class PhoneRules:
    """`phonenumbers.parse(candidate, region)` followed by `is_valid_number` (or `is_possible_number`), for
    candidates of digits and separators with an optional leading '+'.

    The logic is libphonenumber's, step for step (international prefix, country code, trunk prefix and carrier
    code, the regions sharing a calling code), on its metadata compiled once: the library itself normalises
    each digit through `unicodedata` and looks each pattern up in a cache on every call, about 40 µs a parse.
    The test suite checks that both give the same answer on thousands of candidates.
    """

    def __init__(self, regions: Sequence[str], leniency: str = "valid"):
        import phonenumbers

        self._regions_of = phonenumbers.COUNTRY_CODE_TO_REGION_CODE
        self.regions = tuple(regions)
        self.lenient = leniency == "possible"
        gates = [f"(?P<g{i}>{self._gate(region)})" for i, region in enumerate(self.regions)]
        # gates[i:] as one pattern: one call finds the next region a national number may belong to
        self._gates_from = [re.compile("|".join(gates[i:])) for i in range(len(gates))]

    def _gate(self, region: str) -> str:
        """A quick test a number written without '+' must pass to be valid in `region`: an optional trunk
        prefix then the general pattern of a region sharing the calling code; or the calling code and up to
        two trunk prefixes before it; or the region's international prefix. Anything passes where no such test
        is safe: trunk prefixes rewritten by a rule, and leniency "possible", which ignores the patterns."""
        plan = _plan(region)
        if plan is None or plan.transform or self.lenient:
            return "[0-9]*"
        general = "|".join(f"(?:{p.general.pattern})" for p in _calling_code(plan.country_code)[0])
        prefix = f"(?:{plan.national_prefix.pattern})?" if plan.national_prefix else ""
        gate = f"{prefix}(?:{general})|{plan.country_code}{prefix}{prefix}(?:{general})"
        return gate + (f"|(?:{plan.idd.pattern})[0-9]*" if plan.idd else "")

    def accepts(self, plus: bool, digits: str) -> bool:
        """Whether the number (digits only, extension removed) is one for some configured region; a number
        written with '+' carries its own country."""
        if plus:
            return self._accepts(True, digits, None)
        i = 0
        while i < len(self.regions) and (gate := self._gates_from[i].fullmatch(digits)) is not None:
            i = int(gate.lastgroup[1:])  # type: ignore[index]
            if self._accepts(False, digits, self.regions[i]):
                return True
            i += 1
        return False

    def _accepts(self, plus: bool, digits: str, region: str | None) -> bool:
        parsed = self._parse(plus, digits, region)
        return parsed is not None and (self._possible(*parsed) if self.lenient else self._valid(*parsed))

    def _country_code(self, digits: str) -> tuple[int, str]:
        if digits[:1] != "0":  # no calling code starts with 0
            for i in range(1, min(len(digits), 3) + 1):
                if int(digits[:i]) in self._regions_of:
                    return int(digits[:i]), digits[i:]
        return 0, digits

    def _parse(self, plus: bool, digits: str, region: str | None) -> tuple[int, str] | None:
        """(calling code, national significant number) as `phonenumbers.parse` finds them; None where it raises."""
        plan = _plan(region) if region else None
        full, international = digits, plus
        if not plus and plan is not None and plan.idd is not None:
            idd = plan.idd.match(digits)
            if idd and digits[idd.end() : idd.end() + 1] != "0":  # "00 0..." is not an international prefix
                full, international = digits[idd.end():], True
        country_code, national = 0, ""
        if international:
            if len(full) <= 2:
                return None
            country_code, national = self._country_code(full)
            if country_code == 0:
                return None
        elif plan is not None and full.startswith(str(plan.country_code)):
            # the region's own calling code without '+': taken as one when the rest fits better
            rest = plan.strip_national_prefix(full[len(str(plan.country_code)):])
            if (not plan.general.fullmatch(full) and plan.general.fullmatch(rest)) or plan.length(full) == TOO_LONG:
                country_code, national = plan.country_code, rest
        if country_code:
            main = self._regions_of[country_code][0]
            if main != region:
                plan = _plan(main, country_code)
        else:
            country_code, national = plan.country_code, digits  # type: ignore[union-attr]
        if len(national) < 2:
            return None
        if plan is not None:
            stripped = plan.strip_national_prefix(national)
            if plan.length(stripped) not in (TOO_SHORT, LOCAL_ONLY, INVALID_LENGTH):
                national = stripped
        return (country_code, national) if len(national) <= 17 else None

    def _valid(self, country_code: int, nsn: str) -> bool:
        """Valid for the region the number belongs to: of the regions sharing the calling code, the first whose
        leading digits fit the number, or before it one without leading digits for which the number is valid."""
        plans, leading, single = _calling_code(country_code)
        if single:
            return bool(plans) and plans[0].valid(nsn)
        first = leading.match(nsn) if leading is not None else None
        chosen = int(first.lastgroup[1:]) if first is not None else len(plans)  # type: ignore[index]
        if any(plan.leading_digits is None and plan.valid(nsn) for plan in plans[:chosen]):
            return True
        return chosen < len(plans) and plans[chosen].valid(nsn)

    def _possible(self, country_code: int, nsn: str) -> bool:
        regions = self._regions_of.get(country_code)
        plan = _plan(regions[0], country_code) if regions else None
        return plan is not None and plan.length(nsn) in (POSSIBLE, LOCAL_ONLY)


def _phone_checker(rules: PhoneRules) -> Any:
    """The test of a phone candidate as written, memoised: real text repeats numbers (signatures, footers)."""

    @functools.lru_cache(maxsize=65536)
    def is_phone(candidate: str) -> bool:
        body = _EXTENSION.sub("", candidate) if "x" in candidate else candidate
        digits = body.translate(_NON_DIGITS)
        if not 7 <= len(digits) <= 15:  # E.164: at most 15 digits
            return False
        if candidate.count("(") != candidate.count(")") or _NOT_PHONE.fullmatch(candidate):
            return False
        return rules.accepts(body[0] == "+", digits)

    return is_phone


# -- person names ---------------------------------------------------------------------------------------------
_LETTER = r"A-Za-zÀ-ÖØ-öø-ɏ"
_WORD = re.compile(rf"[{_LETTER}'’\-]{{1,40}}")
_NEXT_SURNAME = re.compile(rf" ([{_LETTER}'’\-]{{1,40}})")
# Streets named after people are addresses, not people: "Calle Roxana Acedo", "rue Aurore Royer". The street word
# (and a particle) right before a name is matched backwards, on the reversed text before the name.
_STREET_WORDS = ("Calle", "Rue", "Avenue", "Avenida", "Rua", "Praça", "Paseo", "Plaza", "Via", "Viale", "Piazza", "Corso",
                 "Cuesta", "Rodovia", "Travessa", "Camino", "Ronda", "Alameda", "Largo", "Strada", "Boulevard", "Allée",
                 "Quai", "Impasse", "Chemin", "Place", "Glorieta", "Camiño", "Vía", "Pasaje", "Carrer", "Vereda", "Viela",
                 "Estrada")
_STREET_REVERSED = re.compile(
    " (?:(?:" + "|".join(p[::-1] for p in ("de", "del", "de la", "da", "do", "dos", "das", "di", "della")) + ") )?"
    "(?:" + "|".join([re.escape(w[::-1]) for w in _STREET_WORDS] + [re.escape(w[1:].lower()[::-1]) + w[0].lower() for w in _STREET_WORDS]
                     + [r"\.tS", "tniaS"]) + r")(?!\w)"
)
STREET_WINDOW = 24  # characters before a name that can hold a street word and a particle


def _after_street_word(text: str, start: int) -> bool:
    return _STREET_REVERSED.match(text[max(0, start - STREET_WINDOW) : start][::-1]) is not None


NAME_LOCALES = ("en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL", "pt_BR")


class NameGazetteer:
    """First and last names from Faker's person providers of the given locales (Latin script).

    A person is a first name, one space, and a last name (lowercase particles allowed: "van der Laar") whose
    last word is capitalised, possibly followed by more capitalised last names ("García López")."""

    def __init__(self, first: set[str], last: set[str]):
        self.first = first
        self.last = last

    @classmethod
    @functools.lru_cache(maxsize=8)
    def from_faker(cls, locales: tuple[str, ...] = NAME_LOCALES) -> NameGazetteer:
        import importlib

        first: set[str] = set()
        last: set[str] = set()
        for locale in locales:
            try:
                provider = importlib.import_module(f"faker.providers.person.{locale}").Provider
            except ModuleNotFoundError:
                from gensdk.errors import ConfigError

                raise ConfigError(f"Faker has no person names for locale {locale!r}") from None
            for attr in dir(provider):
                target = first if attr.startswith("first_names") else last if attr.startswith("last_names") else None
                values = getattr(provider, attr)
                if target is not None and isinstance(values, (tuple, list, dict)):
                    target.update(n for n in values if isinstance(n, str) and n[:1].isalpha() and "." not in n)
        return cls(first, last)

    @functools.cached_property
    def pattern(self) -> re.Pattern[str]:
        """First name + space + last name, both as tries (built once per gazetteer: ~1 s)."""
        surnames = [n for n in self.last if n.split(" ")[-1][:1].isupper() and all(_WORD.fullmatch(w) for w in n.split(" "))]
        return re.compile(
            rf"{_trie(sorted(self.first))} {_trie(sorted(surnames))}"
            rf"(?:(?![{_LETTER}'’\-])|(?=['’]s(?![{_LETTER}'’\-])))"  # a word ends, or a possessive 's follows
        )

    def people(self, text: str) -> Iterator[tuple[int, int]]:
        for m in self.pattern.finditer(text):
            start, end = m.span()
            if start and (text[start - 1].isalpha() or text[start - 1] in "'’-"):
                continue  # inside a word
            if text[start - 1 : start] == " " and text[start - 2 : start - 1] not in ("", " ") and _after_street_word(text, start):
                continue
            while text[end : end + 1] == " " and text[end + 1 : end + 2].isupper():  # a second surname: "García López"
                word = _NEXT_SURNAME.match(text, end)
                if word is None:
                    break
                surname = word.group(1)
                if surname[-2:] in ("'s", "’s"):
                    surname = surname[:-2]
                if surname not in self.last:
                    break
                end = word.start(1) + len(surname)
            yield start, end


def _trie(words: Sequence[str]) -> str:
    """A pattern matching any of `words`, as a trie: the engine then tests the possible next letters instead
    of trying every word at every position. Longer words are preferred (greedy optional endings)."""
    root: dict[str, Any] = {}
    for word in words:
        node = root
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}

    def emit(node: dict[str, Any]) -> str:
        branches = [re.escape(ch) + emit(child) for ch, child in sorted(node.items()) if ch]
        if not branches:
            return ""
        body = "(?:" + "|".join(branches) + ")"
        return body + "?" if "" in node else body

    return emit(root)


# -- all of them ----------------------------------------------------------------------------------------------
class EntityFinder:
    """Runs the passes for the chosen entity types and resolves overlaps by `ENTITY_TYPES` order."""

    def __init__(self, entities: Iterable[str], phone_rules: PhoneRules | None, names: NameGazetteer | None):
        self.kinds = frozenset(entities)
        self._is_phone = _phone_checker(phone_rules) if phone_rules and "PHONE" in self.kinds else None
        self._names = names if "PERSON" in self.kinds else None
        self._numbers = bool(self.kinds & {"IBAN", "CREDIT_CARD", "US_SSN", "IPV4", "PHONE"})
        if names is not None:
            _ = names.pattern  # compile now, not on the first text

    def find(self, text: str) -> list[Found]:
        """Entities in `text`: (type, start, end), sorted by start, not overlapping."""
        found: list[Found] = []
        if "@" in text and "EMAIL" in self.kinds:  # `in` on a str runs in C: short texts skip whole passes
            found += [("EMAIL", s, e) for s, e in emails(text)]
        if ":" in text and "IPV6" in self.kinds:
            found += [("IPV6", s, e) for s, e in ipv6s(text)]
        if self._numbers:
            found += self._numbers_pass(text, _Taken(found) if found else None)
        if self._names is not None:
            found += [("PERSON", s, e) for s, e in self._names.people(text)]
        return _resolve(found) if len(found) > 1 else found

    def _numbers_pass(self, text: str, taken: _Taken | None) -> list[Found]:
        """One search loop over the numbers pattern, resolving candidates as separate scans per type would:

        * a card, SSN or IPv4 address that fails its check may still be a phone number at the same start;
        * a phone candidate, valid or not, hides further phone candidates up to its end (a scan for phones
          alone would have consumed it);
        * but a card, SSN or IPv4 address starting inside it takes precedence and cuts it short:
          "12:47:27. 79.50.8.46" holds an IPv4 address, not the phone number "27. 79.50.8.46", and in
          "+44 20 7946 0958 10.0.0.1" the phone number ends before the address.
        """
        found: list[Found] = []
        kinds, is_phone, search = self.kinds, self._is_phone, _NUMBERS.search  # locals: this loop is hot
        pos = phones_from = 0
        while (m := search(text, pos)) is not None:
            kind, start, end = m.lastgroup, m.start(), m.end()
            if kind == "IBAN":  # the match starts at the check digits
                if "IBAN" in kinds and _mod97_valid(text[start - 2 : start] + m.group().replace(" ", "")):  # length: by the pattern
                    found.append(("IBAN", start - 2, end))
                pos = end  # an IBAN-shaped string with a wrong checksum holds nothing else
                continue
            if kind != "PHONE":
                if kind in kinds and (kind != "CREDIT_CARD" or _card_valid(m.group())):  # see _accepts
                    found.append((kind, start, end))  # type: ignore[arg-type]
                    pos = end
                    continue
                m = _PHONE_AT.match(text, start)
                if m is None:
                    pos = start + 1
                    continue
                end = m.end()
            inner = self._inner_start(text, start + 1, end) if _may_hold_inner(m.group()) else None
            if inner is not None:  # the phone candidate ends before it, if it is one at all
                m = _PHONE_AT.match(text, start, inner)
                pos = phones_until = inner
            else:
                pos = phones_until = end
            if m is not None and is_phone is not None and start >= phones_from and \
                    (taken is None or not taken.overlaps(start, m.end())) and is_phone(m.group()):
                found.append(("PHONE", start, m.end()))
            phones_from = max(phones_from, phones_until)
        return found

    def _inner_start(self, text: str, start: int, end: int) -> int | None:
        """Start of the first card, SSN or IPv4 address of the chosen types that starts in [start, end)."""
        while (m := _CARD_SSN_IPV4.search(text, start, end + MAX_CARD_SSN_IPV4_CHARS)) is not None and m.start() < end:
            whole = _CARD_SSN_IPV4.match(text, m.start())  # without the window's end, which may cut a run short
            if whole is not None and self._accepts(whole.lastgroup, whole.group()):  # type: ignore[arg-type]
                return m.start()
            start = m.start() + 1
        return None

    def _accepts(self, kind: str, value: str) -> bool:
        """A card, SSN or IPv4 candidate is one: a chosen type, and a card's checksum holds (the patterns of SSNs
        and IPv4 addresses are their whole check)."""
        if kind not in self.kinds:
            return False
        return kind != "CREDIT_CARD" or _card_valid(value)


def _may_hold_inner(candidate: str) -> bool:
    """Whether a card, SSN or IPv4 address can start inside a phone candidate at all: an SSN needs a dash, an
    address three dots, a card 12 digits. Most phone numbers have none of them, and skip the search."""
    return "-" in candidate or candidate.count(".") >= 3 or len(candidate.translate(_NON_DIGITS)) >= 12


class _Taken:
    """Spans found by earlier passes, merged: a phone candidate overlapping one is not worth validating."""

    def __init__(self, found: list[Found]):
        merged: list[list[int]] = []
        for start, end in sorted((s, e) for _, s, e in found):
            if merged and start < merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        self.starts = [s for s, _ in merged]
        self.ends = [e for _, e in merged]

    def overlaps(self, start: int, end: int) -> bool:
        i = bisect.bisect_left(self.starts, end)
        return i > 0 and self.ends[i - 1] > start


def _resolve(found: list[Found]) -> list[Found]:
    """Sorted by start; where spans overlap, the type earlier in ENTITY_TYPES wins."""
    found.sort(key=operator.itemgetter(1))
    if all(a[2] <= b[1] for a, b in pairwise(found)):
        return found  # the usual case: nothing overlaps
    rank = {kind: i for i, kind in enumerate(ENTITY_TYPES)}
    starts: list[int] = []
    kept: list[Found] = []
    for entity in sorted(found, key=lambda f: (rank[f[0]], f[1])):
        i = bisect.bisect_left(starts, entity[2])
        if i == 0 or kept[i - 1][2] <= entity[1]:
            starts.insert(i, entity[1])
            kept.insert(i, entity)
    return kept


def build_finder(entities: Sequence[str], phone_regions: Sequence[str], phone_leniency: str,
                 name_locales: Sequence[str]) -> EntityFinder:
    rules = PhoneRules(phone_regions, phone_leniency) if "PHONE" in entities else None
    names = NameGazetteer.from_faker(tuple(name_locales)) if "PERSON" in entities else None
    return EntityFinder(entities, rules, names)
