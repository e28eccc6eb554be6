"""PII detectors: fast regular expressions for candidates, then a validator that decides.

Each detector yields (start, end) spans of one entity type in a text. Validators keep precision high: a card
number must pass the Luhn check, an IBAN its mod-97 check and its country's length, an IP address must parse,
a phone number must be valid (or possible) for one of the configured regions according to libphonenumber.
Person names come from a gazetteer: a first name followed by a last name, both in Faker's per-locale lists.

Every pattern is bounded in length (`MAX_ENTITY_CHARS`), which is what lets a stream be scanned with a fixed
look-back (see `scanner.StreamingPIIScanner`).
"""

from __future__ import annotations

import functools
import ipaddress
import re
from typing import Any, Callable, Iterator, Sequence

__all__ = ["ENTITY_TYPES", "MAX_ENTITY_CHARS", "Detector", "NameGazetteer", "build_detectors"]

Span = tuple[int, int]
Detector = Callable[[str], Iterator[Span]]

# Scanned in this order; on overlap the earlier type wins (a card number is not also a phone number).
ENTITY_TYPES = ("EMAIL", "IBAN", "CREDIT_CARD", "US_SSN", "IPV6", "IPV4", "PHONE", "PERSON")
# The longest entity any detector can report: e-mail 64 + 1 + 190, IBAN 34 + 8 spaces, IPv6 45, phone 40.
MAX_ENTITY_CHARS = 256

# -- e-mail ---------------------------------------------------------------------------------------------------
# Anchored on '@' (str.find runs at memory speed): the domain is matched forward, the local part backward on the
# reversed text, so the expensive patterns run only where there is an '@' at all.
_LOCAL_REVERSED = re.compile(r"[A-Za-z0-9._%+\-]{1,64}")
_DOMAIN = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.){1,8}[A-Za-z]{2,24}(?![A-Za-z0-9\-])")


def emails(text: str) -> Iterator[Span]:
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


# -- payment cards ----------------------------------------------------------------------------------------------
# Bare 12-19 digits, groups of four (the last group 1-4 digits), or American Express's 4-6-5.
_CARD = re.compile(
    r"\d(?<![\w\-]\d)(?<!\d[ \-]\d)(?:\d{11,18}|\d{3}([ \-])\d{4}\1\d{4}\1\d{1,4}(?:\1\d{1,3})?|\d{3}([ \-])\d{6}\2\d{5})"
    r"(?!\w)(?![ \-]\d)",
    re.ASCII,
)


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def cards(text: str) -> Iterator[Span]:
    for m in _CARD.finditer(text):
        digits = re.sub(r"\D", "", m.group())
        if luhn_valid(digits) and digits.strip("0"):
            yield m.span()


# -- IBAN -------------------------------------------------------------------------------------------------------
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
_IBAN = re.compile(r"([A-Z](?<![A-Za-z0-9][A-Z])[A-Z])\d{2}(?: ?[A-Z0-9]){11,30}", re.ASCII)


def iban_valid(compact: str) -> bool:
    if IBAN_LENGTHS.get(compact[:2]) != len(compact):
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def ibans(text: str) -> Iterator[Span]:
    for m in _IBAN.finditer(text):
        length = IBAN_LENGTHS.get(m.group(1))
        if length is None:
            continue
        end, seen = m.start(), 0  # walk to the country's length: the regex may have run into the next word
        while end < m.end() and seen < length:
            seen += text[end] != " "
            end += 1
        if seen == length and not (end < len(text) and text[end].isalnum()):
            if iban_valid(text[m.start() : end].replace(" ", "")):
                yield m.start(), end


# -- US social security numbers ---------------------------------------------------------------------------------
# Area 000, 666 and 900-999, group 00 and serial 0000 are never issued.
_SSN = re.compile(r"\d(?<![\w\-]\d)\d{2}(?<!000)(?<!666)(?<!9\d\d)-(?!00)\d{2}-(?!0000)\d{4}(?!\w)(?!-\d)", re.ASCII)


def ssns(text: str) -> Iterator[Span]:
    for m in _SSN.finditer(text):
        yield m.span()


# -- IP addresses -----------------------------------------------------------------------------------------------
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(rf"\d(?<![\w.]\d)\d{{0,2}}(?<!\d\d\d\d)\.\d{{1,3}}\.\d{{1,3}}\.\d{{1,3}}(?!\w)(?!\.\d)", re.ASCII)
_IPV4_EXACT = re.compile(rf"(?:{_OCTET}\.){{3}}{_OCTET}", re.ASCII)
_IPV6_GATE = re.compile(r":[0-9A-Fa-f]{0,4}:")
_HEX_COLON = frozenset("0123456789abcdefABCDEF:.")
_IPV6 = re.compile(r"(?<![\w:.])(?=[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}:)[0-9A-Fa-f:.]{2,45}(?![\w:])", re.ASCII)


def ipv4s(text: str) -> Iterator[Span]:
    for m in _IPV4.finditer(text):
        if _IPV4_EXACT.fullmatch(m.group()):
            yield m.span()


def ipv6s(text: str) -> Iterator[Span]:
    """Anchored on ':hex:' (a literal-prefixed search), then the candidate is read from its run's start."""
    gate = _IPV6_GATE.search(text)
    while gate:
        start = gate.start()
        while start > 0 and gate.start() - start < 45 and text[start - 1] in _HEX_COLON:
            start -= 1
        m = _IPV6.match(text, start)
        gate = _IPV6_GATE.search(text, m.end() if m else gate.end())
        if m is None:
            continue
        candidate = m.group().rstrip(".")
        try:
            ipaddress.IPv6Address(candidate)
        except ValueError:
            continue
        if sum(ch not in ":." for ch in candidate) >= 2:  # "::" alone, "::1" are not anyone's address
            yield m.start(), m.start() + len(candidate)


# -- phone numbers ----------------------------------------------------------------------------------------------
_PHONE = re.compile(
    r"[+(\d](?<![\w+.\-/][+(\d])(?:(?<=\+) ?|(?<=\())?\d?[\d\- .()/]{5,24}\d(?: ?(?:x|ext\.?|extension) ?\d{1,6})?"
    r"(?!\w)(?!\.\d)(?![\-/]\d)",
    re.ASCII,
)
# Digit strings that look like a phone number's length but are something else: dates, decimals, thousands
# groups, SSN-shaped numbers, dotted quads.
_NOT_PHONE = re.compile(
    r"\d{4}[\-/.]\d{1,2}[\-/.]\d{1,2}|\d{1,2}[\-/.]\d{1,2}[\-/.]\d{2,4}|\d+\.\d+|\d{1,3}(?: \d{3})+(?:[.,]\d+)?"
    r"|\d{3}-\d{2}-\d{4}|\d{1,3}(?:\.\d{1,3}){3}|\d{5}-\d{3}|\d{1,8}",
    re.ASCII,
)
_EXTENSION = re.compile(r" ?(?:x|ext\.?|extension) ?\d{1,6}$", re.ASCII)


def phone_detector(regions: Sequence[str], leniency: str) -> Detector:
    """libphonenumber decides: valid (or, with leniency "possible", of a possible length) for one region."""
    import phonenumbers

    check = phonenumbers.is_valid_number if leniency == "valid" else phonenumbers.is_possible_number

    lengths = {r: _national_lengths(r) for r in regions}

    @functools.lru_cache(maxsize=65536)
    def accepted(candidate: str) -> bool:
        digits = re.sub(r"\D", "", _EXTENSION.sub("", candidate))
        if not 7 <= len(digits) <= 15:  # E.164 allows at most 15 digits
            return False
        if candidate.startswith("+"):
            tries: Sequence[str | None] = [None]
        else:  # parse only for regions where the digit count can be a national number: parsing is the cost
            tries = [r for r in regions if len(digits) in lengths[r] or len(digits) - 1 in lengths[r]]
        for region in tries:
            try:
                number = phonenumbers.parse(candidate, region)
            except phonenumbers.NumberParseException:
                continue
            if check(number):
                return True
        return False

    def phones(text: str, taken: Callable[[int, int], bool] | None = None) -> Iterator[Span]:
        for m in _PHONE.finditer(text):
            candidate = m.group()
            if taken is not None and taken(*m.span()):
                continue  # part of a card, SSN, IBAN or address already found: no need to parse it
            if not _NOT_PHONE.fullmatch(candidate) and _balanced(candidate) and accepted(candidate):
                yield m.span()

    return phones


def _national_lengths(region: str) -> frozenset[int]:
    """Possible digit counts of a national number of `region` (before any trunk prefix)."""
    import phonenumbers

    meta = phonenumbers.PhoneMetadata.metadata_for_region(region)
    lengths = set(meta.general_desc.possible_length) if meta and meta.general_desc else set(range(4, 16))
    prefix = len(meta.national_prefix or "") if meta else 0
    return frozenset(lengths | {n + prefix for n in lengths} | {n + len(str(meta.country_code)) for n in lengths} if meta else lengths)


def _balanced(candidate: str) -> bool:
    return candidate.count("(") == candidate.count(")")


# -- person names -----------------------------------------------------------------------------------------------
_LETTER = r"A-Za-zÀ-ÖØ-öø-ɏ"
_UPPER = r"A-ZÀ-ÖØ-ÞĀ-ſ"  # Latin Extended-A mixes cases: the first letter is checked with str.isupper too
# Streets named after people are addresses, not people: "Calle Roxana Acedo", "rue Aurore Royer".
_STREET = re.compile(
    r"(?:\b(?:[Cc]alle|[Rr]ue|[Aa]venue|[Aa]venida|[Rr]ua|[Pp]raça|[Pp]aseo|[Pp]laza|[Vv]ia|[Vv]iale|[Pp]iazza|[Cc]orso|"
    r"[Cc]uesta|[Rr]odovia|[Tt]ravessa|[Cc]amino|[Rr]onda|[Aa]lameda|[Ll]argo|[Ss]trada|[Bb]oulevard|[Aa]llée|[Qq]uai|"
    r"[Ii]mpasse|[Cc]hemin|[Pp]lace|[Gg]lorieta|[Cc]amiño|[Vv]ía|[Pp]asaje|[Cc]arrer|[Vv]ereda|[Vv]iela|[Ee]strada|St\.|Saint)"
    r"(?: (?:de|del|de la|da|do|dos|das|di|della))? )$"
)
NAME_LOCALES = ("en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL", "pt_BR")


class NameGazetteer:
    """First and last names from Faker's person providers of the given locales (Latin script)."""

    def __init__(self, first: set[str], last: set[str]):
        self.first = first
        self.last = last
        self.longest = max((n.count(" ") + 1 for n in first | last), default=1)

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
    def detector(self) -> Detector:
        """The detector function; built once per gazetteer (compiling the trie takes ~0.5 s)."""
        first_names = _trie_regex(sorted(self.first))
        following = re.compile(rf"[{_LETTER}'’\-]{{1,40}}(?: [{_LETTER}'’\-]{{1,40}}){{0,{self.longest}}}")

        def people(text: str) -> Iterator[Span]:
            taken = -1
            for m in first_names.finditer(text):
                start = m.start()
                if start < taken or (start and (text[start - 1].isalpha() or text[start - 1] in "'’-")):
                    continue  # inside a word, or inside the name just reported
                if _STREET.search(text, max(0, start - 24), start):
                    continue
                end = self._last_name_end(text, m.end() + 1, following)
                if end is not None:
                    taken = end
                    yield start, end

        return people

    def _last_name_end(self, text: str, at: int, following: re.Pattern[str]) -> int | None:
        """End of the longest 'Last [Last]' starting at `at` (a last name ends in a capitalised word)."""
        m = following.match(text, at)
        if m is None:
            return None
        words = m.group().split(" ")
        for i, word in enumerate(words):
            if word[-2:] in ("'s", "’s"):
                words = words[:i] + [word[:-2]]  # "Smith's car": the name ends at "Smith"
                break
        best = next((n for n in range(len(words), 0, -1)
                     if words[n - 1][:1].isupper() and " ".join(words[:n]) in self.last), None)
        if best is None:
            return None
        while best < len(words) and words[best][:1].isupper() and words[best] in self.last:
            best += 1  # a second surname: "García López"
        return at + len(" ".join(words[:best]))


def _trie_regex(words: Sequence[str]) -> re.Pattern[str]:
    """One pattern matching any of `words` (followed by a space), as a trie: the regex engine then scans for
    the possible first letters at C speed instead of trying every word at every position."""
    trie: dict[str, Any] = {}
    for word in words:
        node = trie
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}

    def emit(node: dict[str, Any]) -> str:
        branches = [re.escape(ch) + emit(child) for ch, child in sorted(node.items()) if ch]
        if not branches:
            return ""
        body = "(?:" + "|".join(branches) + ")"
        return body + "?" if "" in node else body

    return re.compile(emit(trie) + "(?= )")


def build_detectors(entities: Sequence[str], phone_regions: Sequence[str], phone_leniency: str,
                    name_locales: Sequence[str]) -> dict[str, Detector]:
    table: dict[str, Callable[[], Detector]] = {
        "EMAIL": lambda: emails,
        "IBAN": lambda: ibans,
        "CREDIT_CARD": lambda: cards,
        "US_SSN": lambda: ssns,
        "IPV6": lambda: ipv6s,
        "IPV4": lambda: ipv4s,
        "PHONE": lambda: phone_detector(tuple(phone_regions), phone_leniency),
        "PERSON": lambda: NameGazetteer.from_faker(tuple(name_locales)).detector,
    }
    return {kind: table[kind]() for kind in ENTITY_TYPES if kind in entities}
