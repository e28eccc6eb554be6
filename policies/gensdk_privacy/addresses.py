"""E-mail and IPv6 addresses: each found from a literal anchor ('@', ':') that C string search skips to.

    find_emails("write to ada@example.org")      # [("EMAIL", 9, 24)]
"""

from __future__ import annotations

import re

__all__ = ["IPV6_ADDRESS", "find_emails", "find_ipv6"]

Found = tuple[str, int, int]  # (entity type, start, end)

# -- e-mail ---------------------------------------------------------------------------------------------------
# Anchored on '@' (str.find runs at memory speed): the domain is matched forward, the local part backward on the
# reversed text, so the expensive patterns run only where there is an '@' at all.
_LOCAL_REVERSED = re.compile(r"[A-Za-z0-9._%+\-]{1,64}")
_DOMAIN = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.){1,8}[A-Za-z]{2,24}(?![A-Za-z0-9\-])")


def find_emails(text: str) -> list[Found]:
    found: list[Found] = []
    at = text.find("@")
    while at != -1:
        domain = _DOMAIN.match(text, at + 1)
        local = _LOCAL_REVERSED.match(text[max(0, at - 64) : at][::-1]) if domain else None
        if local:
            start = at - local.end()
            while start < at and text[start] == ".":  # a sentence's full stop is not part of the address
                start += 1
            if start < at and text[at - 1] != ".":
                found.append(("EMAIL", start, domain.end()))  # type: ignore[union-attr]
        at = text.find("@", at + 1)
    return found


# -- IPv6 -----------------------------------------------------------------------------------------------------
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"  # 0-255 without leading zeros
# Every address holds "::" or (7 colons) ':h:h:' from its first colon on: times (12:30:45) and ratios do not.
_IPV6_GATE = re.compile(r":(?::|[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{0,4}:)")
_HEX_BEFORE = re.compile(r"[0-9A-Fa-f]{1,4}\Z")
_IPV6_CANDIDATE = re.compile(r"(?<![\w:.])(?=[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}:)[0-9A-Fa-f:.]{2,45}(?![\w:])", re.ASCII)
# The textual forms of RFC 3986 (section 3.2.2), which Python's ipaddress accepts too (the tests compare them
# on thousands of strings); a pattern is three times faster than constructing an IPv6Address.
_H16 = "[0-9A-Fa-f]{1,4}"
_LS32 = rf"(?:{_H16}:{_H16}|{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET})"
IPV6_ADDRESS = re.compile("|".join(f"(?:{form})" for form in [
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


def find_ipv6(text: str) -> list[Found]:
    """From each gate, back over the address's first group, then the whole candidate. "::" alone and "::1"
    are not anyone's address."""
    found: list[Found] = []
    gate = _IPV6_GATE.search(text)
    while gate:
        colon = gate.start()
        before = _HEX_BEFORE.search(text, max(0, colon - 4), colon)
        m = _IPV6_CANDIDATE.match(text, before.start() if before else colon)
        gate = _IPV6_GATE.search(text, m.end() if m else gate.end())
        if m is None:
            continue
        candidate = m.group().rstrip(".")
        if IPV6_ADDRESS.fullmatch(candidate) and len(candidate) - candidate.count(":") - candidate.count(".") >= 2:
            found.append(("IPV6", m.start(), m.start() + len(candidate)))
    return found
