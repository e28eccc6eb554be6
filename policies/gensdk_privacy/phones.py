"""Phone numbers by libphonenumber's rules, on its metadata compiled once.

    rules = PhoneRules(("US", "DE"))
    rules.accepts(False, "4155552671")      # True: valid in the US
    is_phone = phone_checker(rules)
    is_phone("(415) 555-2671")              # True: the test of a candidate as written, memoised

`PhoneRules` is `phonenumbers.parse(candidate, region)` followed by `is_valid_number` (or
`is_possible_number`), step for step (international prefix, country code, trunk prefix and carrier code, the
regions sharing a calling code): the library itself normalises each digit through `unicodedata` and looks each
pattern up in a cache on every call, about 40 µs a parse. The tests check both give the same answer on
thousands of candidates.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any

__all__ = ["EXTENSION", "NOT_PHONE_REST", "SEPARATORS", "PhoneRules", "phone_checker"]

TOO_SHORT, TOO_LONG, INVALID_LENGTH, LOCAL_ONLY, POSSIBLE = range(5)
_NUMBER_TYPES = ("premium_rate", "toll_free", "shared_cost", "voip", "personal_number", "pager", "uan", "voicemail",
                 "fixed_line", "mobile")
_LONGEST = 40  # digits; lengths of numbers up to this are looked up in a table (E.164 allows 15)


class _Plan:
    """One region's libphonenumber metadata (or a non-geographic calling code's), its patterns compiled."""

    def __init__(self, meta: Any):
        general = meta.general_desc
        self.country_code: int = meta.country_code
        self.calling_code = str(meta.country_code)
        self.general = re.compile(general.national_number_pattern or "(?!)")
        self.lengths: tuple[int, ...] = tuple(general.possible_length)
        self.local_lengths = frozenset(general.possible_length_local_only)
        self._length_of = [self._length(n) for n in range(_LONGEST)]
        by_length: dict[int, list[str]] = {}  # number length -> the patterns of the number types of that length
        for name in _NUMBER_TYPES:
            desc = getattr(meta, name)
            if desc is not None and desc.national_number_pattern:
                for n in desc.possible_length or range(1, 18):
                    by_length.setdefault(n, []).append(f"(?:{desc.national_number_pattern})")
        # is-valid as one pattern per length: the general pattern (a look-ahead), then any number type's pattern
        general_pattern = general.national_number_pattern or "(?!)"
        self._valid_of_length = {n: re.compile(f"(?=(?:{general_pattern})\\Z)(?:{'|'.join(patterns)})")
                                 for n, patterns in by_length.items() if not self.lengths or n in self.lengths}
        self.national_prefix = re.compile(meta.national_prefix_for_parsing) if meta.national_prefix_for_parsing else None
        self.transform = meta.national_prefix_transform_rule or None
        self.idd = re.compile(meta.international_prefix) if meta.international_prefix else None
        self.leading_digits = re.compile(meta.leading_digits) if meta.leading_digits else None

    def valid(self, nsn: str) -> bool:
        """libphonenumber's is-valid test: the general pattern, then any number type's pattern and lengths."""
        pattern = self._valid_of_length.get(len(nsn))
        return pattern is not None and pattern.fullmatch(nsn) is not None

    def length(self, nsn: str) -> int:
        n = len(nsn)
        return self._length_of[n] if n < _LONGEST else self._length(n)

    def _length(self, n: int) -> int:
        lengths = self.lengths
        if n in self.local_lengths:
            return LOCAL_ONLY
        if not lengths:
            return INVALID_LENGTH
        if n in lengths:
            return POSSIBLE
        return TOO_SHORT if n < lengths[0] else TOO_LONG if n > lengths[-1] else INVALID_LENGTH

    def strip_national_prefix(self, number: str) -> str:
        """The number without its trunk prefix or carrier code, unless that leaves no viable number."""
        prefix = self.national_prefix
        m = prefix.match(number) if prefix is not None and number else None
        if m is None or prefix is None:
            return number
        groups = m.groups()
        stripped = number[m.end():] if not self.transform or not groups or groups[-1] is None else \
            prefix.sub(self.transform, number, count=1)
        if self.general.fullmatch(number) and not self.general.fullmatch(stripped):
            return number
        return stripped

    def national(self, number: str) -> str:
        """The national significant number: the trunk prefix stripped where what is left has a viable length."""
        stripped = self.strip_national_prefix(number)
        return stripped if self.length(stripped) in (POSSIBLE, TOO_LONG) else number


@functools.cache
def _plan(region: str, country_code: int = 0) -> _Plan | None:
    """The compiled metadata of a region (or, for region "001", of a non-geographic calling code); shared by
    every PhoneRules in the process: compiling one region takes about a millisecond."""
    import phonenumbers

    meta = (phonenumbers.PhoneMetadata.metadata_for_nongeo_region(country_code, None) if region == "001"
            else phonenumbers.PhoneMetadata.metadata_for_region(region, None))
    return None if meta is None else _Plan(meta)


class _CallingCode:
    """The regions sharing a calling code, in libphonenumber's order, and which of them a number belongs to."""

    def __init__(self, country_code: int):
        import phonenumbers

        regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(country_code, ())
        self.main = _plan(regions[0], country_code) if regions else None
        self.plans = [p for p in (_plan(r, country_code) for r in regions) if p]
        leading = [f"(?P<r{i}>{p.leading_digits.pattern})" for i, p in enumerate(self.plans) if p.leading_digits is not None]
        # one pattern of their leading digits: group "r<i>" finds the first region whose leading digits fit
        self.leading = re.compile("|".join(leading)) if leading else None
        self.single = len(regions) == 1  # then no leading digits are consulted
        self._unled = [i for i, p in enumerate(self.plans) if p.leading_digits is None]  # regions without them

    def valid(self, nsn: str) -> bool:
        """Valid for the region the number belongs to: of the regions sharing the calling code, the first whose
        leading digits fit the number, or before it one without leading digits for which the number is valid."""
        plans = self.plans
        if self.single:
            return bool(plans) and plans[0].valid(nsn)
        first = self.leading.match(nsn) if self.leading is not None else None
        chosen = int(first.lastgroup[1:]) if first is not None else len(plans)  # type: ignore[index]
        for i in self._unled:
            if i >= chosen:
                break
            if plans[i].valid(nsn):
                return True
        return chosen < len(plans) and plans[chosen].valid(nsn)

    def possible(self, nsn: str) -> bool:
        return self.main is not None and self.main.length(nsn) in (POSSIBLE, LOCAL_ONLY)


@functools.cache
def _calling_code(country_code: int) -> _CallingCode:
    return _CallingCode(country_code)


class PhoneRules:
    """Whether a candidate's digits are a phone number for one of `regions` (or, written with '+', for its own
    country); `leniency` "valid" is libphonenumber's is_valid_number, "possible" its is_possible_number."""

    def __init__(self, regions: Sequence[str], leniency: str = "valid"):
        import phonenumbers

        self._calling_codes = {str(code): code for code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE}
        self.regions = tuple(regions)
        self._plans = [_plan(region) for region in self.regions]
        if None in self._plans:
            from gensdk.errors import ConfigError

            unknown = [r for r, plan in zip(self.regions, self._plans) if plan is None]
            raise ConfigError(f"libphonenumber has no metadata for phone regions {unknown}; use ISO 3166 codes such as 'US'")
        self.lenient = leniency == "possible"
        # A number is one if any region accepts it, so regions are tried cheapest first: those alone on their
        # calling code before those sharing one (the US shares +1 with 24 others, whose leading-digit patterns
        # and area-code lists are consulted on every check); ties keep the configured order.
        order = sorted(range(len(self.regions)), key=lambda i: self._sharing(self.regions[i]))
        self._plans = [self._plans[i] for i in order]
        gates = [f"(?P<g{i}>{self._gate(self.regions[j])})" for i, j in enumerate(order)]
        # gates[i:] as one pattern: one call finds the next region a national number may belong to
        self._gates_from = [re.compile("|".join(gates[i:])) for i in range(len(gates))]

    @staticmethod
    def _sharing(region: str) -> int:
        """How many regions share `region`'s calling code."""
        import phonenumbers

        plan = _plan(region)
        return len(phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(plan.country_code, ())) if plan is not None else 0

    def _gate(self, region: str) -> str:
        """A quick test a number written without '+' must pass to be valid in `region`: an optional trunk
        prefix then the general pattern of a region sharing the calling code; or the calling code and up to
        two trunk prefixes before it; or the region's international prefix. Anything passes where no such test
        is safe: trunk prefixes rewritten by a rule, and leniency "possible", which ignores the patterns."""
        plan = _plan(region)
        if plan is None or plan.transform or self.lenient:
            return "[0-9]*"
        general = "|".join(f"(?:{p.general.pattern})" for p in _calling_code(plan.country_code).plans)
        prefix = f"(?:{plan.national_prefix.pattern})?" if plan.national_prefix else ""
        gate = f"{prefix}(?:{general})|{plan.country_code}{prefix}{prefix}(?:{general})"
        return gate + (f"|(?:{plan.idd.pattern})[0-9]*" if plan.idd else "")

    def accepts(self, plus: bool, digits: str) -> bool:
        """Whether the number (digits only, extension removed) is one for some configured region; a number
        written with '+' carries its own country."""
        if plus:
            return self._accepts_international(digits)
        i, gates_from = 0, self._gates_from
        while i < len(gates_from) and (gate := gates_from[i].fullmatch(digits)) is not None:
            i = int(gate.lastgroup[1:])  # type: ignore[index]
            if self._accepts_national(digits, self._plans[i]):  # type: ignore[arg-type]
                return True
            i += 1
        return False

    def _decide(self, code: _CallingCode, national: str) -> bool:
        """The national number in the calling code's main region (trunk prefix stripped): valid, or possible."""
        nsn = code.main.national(national) if code.main is not None else national
        if len(nsn) > 17:
            return False
        return code.possible(nsn) if self.lenient else code.valid(nsn)

    def _accepts_international(self, full: str) -> bool:
        """After '+' or an international prefix: the country code (1-3 digits, none starting with 0), then the
        national number."""
        if len(full) <= 2:
            return False
        codes = self._calling_codes
        for i in (1, 2, 3):
            country_code = codes.get(full[:i])
            if country_code is not None:
                return len(full) - i >= 2 and self._decide(_calling_code(country_code), full[i:])
        return False

    def _accepts_national(self, digits: str, plan: _Plan) -> bool:
        """A number written without '+' in `plan`'s region: maybe after the region's international prefix, maybe
        starting with the region's own calling code."""
        if plan.idd is not None:
            idd = plan.idd.match(digits)
            if idd and digits[idd.end() : idd.end() + 1] != "0":  # "00 0..." is not an international prefix
                return self._accepts_international(digits[idd.end():])
        if digits.startswith(plan.calling_code):
            # the region's own calling code without '+': taken as one when the rest fits better
            rest = plan.strip_national_prefix(digits[len(plan.calling_code):])
            if (not plan.general.fullmatch(digits) and plan.general.fullmatch(rest)) or plan.length(digits) == TOO_LONG:
                return len(rest) >= 2 and self._decide(_calling_code(plan.country_code), rest)
        if len(digits) < 2:
            return False
        national = plan.national(digits)
        if len(national) > 17:
            return False
        code = _calling_code(plan.country_code)
        return code.possible(national) if self.lenient else code.valid(national)


# -- a candidate as written -----------------------------------------------------------------------------------
# Digit strings shaped like a phone number that are something else: dates, decimals, thousands groups, SSN
# shapes, dotted quads, postal codes like 12345-678, bare numbers of up to 8 digits (less the first digit). The
# numbers pattern skips these shapes where no digit follows them; `phone_checker` rejects whole candidates.
# Atomic groups and possessive repeats where giving characters back cannot help (a shorter date, decimal or
# number would leave a digit right after it): the engine does not retry them at every shorter length.
NOT_PHONE_REST = (
    r"(?:(?>[0-9]{3}[\-/.][0-9]{1,2}[\-/.][0-9]{1,2})|(?>[0-9]?[\-/.][0-9]{1,2}[\-/.][0-9]{2,4})|[0-9]*+\.[0-9]++"
    r"|[0-9]{0,2}(?:\ [0-9]{3})+(?:[.,][0-9]+)?|[0-9]{2}-[0-9]{2}-[0-9]{4}|(?>[0-9]{0,2}(?:\.[0-9]{1,3}){3})"
    r"|[0-9]{4}-[0-9]{3}|[0-9]{0,7}+)"
)
_NOT_PHONE = re.compile(f"[0-9]{NOT_PHONE_REST}", re.ASCII | re.VERBOSE)
EXTENSION = re.compile(r" ?(?:x|ext\.?|extension) ?\d{1,6}$", re.ASCII)
SEPARATORS = b" -.()/+"  # deleted from a candidate's bytes (candidates are ASCII): 3x faster than str.translate


def phone_checker(rules: PhoneRules) -> Any:
    """The test of a phone candidate as written, memoised: real text repeats numbers (signatures, footers)."""

    @functools.lru_cache(maxsize=65536)
    def is_phone(candidate: str) -> bool:
        body = EXTENSION.sub("", candidate) if "x" in candidate else candidate
        digits = body.encode().translate(None, SEPARATORS).decode()
        if not 7 <= len(digits) <= 15:  # E.164: at most 15 digits
            return False
        if ("(" in candidate or ")" in candidate) and candidate.count("(") != candidate.count(")"):
            return False
        return _NOT_PHONE.fullmatch(candidate) is None and rules.accepts(body[0] == "+", digits)

    return is_phone
