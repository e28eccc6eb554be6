"""Person names: a first name and a last name from Faker's person lists, found by one pattern holding both
lists as tries.

    names = NameGazetteer.from_faker(("en_US",))
    names.find("Yesterday John Smith signed.")      # [("PERSON", 10, 20)]
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any

__all__ = ["NAME_LOCALES", "NameGazetteer"]

Found = tuple[str, int, int]  # (entity type, start, end)

NAME_LOCALES = ("en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL", "pt_BR")

_LETTER = r"A-Za-zÀ-ÖØ-öø-ɏ"
_WORD = re.compile(rf"[{_LETTER}'’\-]{{1,40}}")
_NEXT_SURNAME = re.compile(rf" ([{_LETTER}'’\-]{{1,40}})")
_IN_A_WORD = frozenset("'’-")  # besides letters: characters that make a capital the middle of a word
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


class NameGazetteer:
    """First and last names from Faker's person providers of the given locales (Latin script).

    A person is a first name, one space, and a last name (lowercase particles allowed: "van der Laar") whose
    last word is capitalised, possibly followed by more capitalised last names ("García López")."""

    def __init__(self, first: set[str], last: set[str]):
        self.first = first
        self.last = last
        self._pattern: re.Pattern[str] | None = None

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

    @property
    def pattern(self) -> re.Pattern[str]:
        """First name + space + last name, both as tries (built once per gazetteer: ~1 s). Cached by hand:
        `functools.cached_property` does not cache in a class compiled with mypyc (see setup.py)."""
        if self._pattern is None:
            self._pattern = self._compile()
        return self._pattern

    def _compile(self) -> re.Pattern[str]:
        surnames = [n for n in self.last if n.split(" ")[-1][:1].isupper() and all(_WORD.fullmatch(w) for w in n.split(" "))]
        return re.compile(
            rf"{_trie(sorted(self.first))} {_trie(sorted(surnames))}"
            rf"(?:(?![{_LETTER}'’\-])|(?=['’]s(?![{_LETTER}'’\-])))"  # a word ends, or a possessive 's follows
        )

    def find(self, text: str) -> list[Found]:
        # searched on from each match's end, as finditer would (a name is never empty); most short texts hold
        # none and cost one search, without an iterator or a list
        search = self.pattern.search
        m = search(text)
        if m is None:
            return []
        found: list[Found] = []
        while m is not None:
            start, end = m.span()
            m = search(text, end)
            if start:
                before = text[start - 1]
                if before.isalpha() or before in _IN_A_WORD:
                    continue  # inside a word
                if before == " " and start > 1 and text[start - 2] != " " and _after_street_word(text, start):
                    continue
            if text[end : end + 1] == " " and text[end + 1 : end + 2].isupper():
                end = self._more_surnames(text, end)
            found.append(("PERSON", start, end))
        return found

    def _more_surnames(self, text: str, end: int) -> int:
        """The end of the name after more last names from the list: "García López"."""
        while text[end : end + 1] == " " and text[end + 1 : end + 2].isupper():
            word = _NEXT_SURNAME.match(text, end)
            if word is None:
                break
            surname = word.group(1)
            if surname[-2:] in ("'s", "’s"):
                surname = surname[:-2]
            if surname not in self.last:
                break
            end = word.start(1) + len(surname)
        return end


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
