"""The checks that tell a number-shaped candidate from what it looks like: Luhn for payment cards, the
country's length and mod-97 for IBANs. Each runs in C string methods, without a Python loop over digits."""

from __future__ import annotations

from typing import Any

__all__ = ["IBAN_LENGTHS", "card_valid", "iban_valid", "luhn_valid", "mod97_valid"]

_DOUBLED = bytes.maketrans(b"0123456789", b"0246813579")  # a digit -> the digit sum of twice the digit


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum of a digit string, summed as bytes."""
    b = digits.encode()
    return (sum(b[-1::-2]) + sum(b[-2::-2].translate(_DOUBLED)) - 48 * len(b)) % 10 == 0


def card_valid(candidate: str) -> bool:
    """A card number as written (digits, maybe in groups): Luhn-valid and not all zeros."""
    digits = candidate if candidate.isdigit() else candidate.replace(" ", "").replace("-", "")
    b = digits.encode()  # luhn_valid inlined: this runs on every card-shaped candidate
    return (sum(b[-1::-2]) + sum(b[-2::-2].translate(_DOUBLED)) - 48 * len(b)) % 10 == 0 and digits.strip("0") != ""


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
    """An IBAN without spaces: its country's length and the mod-97 check."""
    return IBAN_LENGTHS.get(compact[:2]) == len(compact) and mod97_valid(compact)


def mod97_valid(compact: str) -> bool:
    """The mod-97 check alone, for a candidate whose length the pattern has checked already: the country code
    and check digits moved to the end, letters as two digits each (A=10 ... Z=35), as a number."""
    country, bban = compact[:2], compact[4:]
    if bban.isdigit() and country in _COUNTRY_DIGITS:  # most countries' account numbers: no translate needed
        return int(bban + _COUNTRY_DIGITS[country] + compact[2:4]) % 97 == 1
    return int((bban + compact[:4]).translate(_LETTER_VALUES)) % 97 == 1


_COUNTRY_DIGITS = {country: country.translate(_LETTER_VALUES) for country in IBAN_LENGTHS}
