"""Registries of model families, policies and audit sinks.

A plugin adds components through a `Registrar` bound to that plugin, so the registry knows which
distribution each id came from. Two plugins registering the same id is an error naming both distributions: a
policy that silently replaces another is a safety bug.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Generic, Iterator, TypeVar

from gensdk.errors import DuplicateRegistrationError, PluginError, UnknownComponentError

__all__ = ["Registrar", "Registration", "Registry"]

T = TypeVar("T")


@dataclass(frozen=True)
class Registration(Generic[T]):
    id: str
    component: type[T]
    plugin: str
    distribution: str


class Registry(Generic[T]):
    def __init__(self, kind: str, base: type[T], id_attr: str = "id"):
        self.kind = kind
        self.base = base
        self.id_attr = id_attr
        self._entries: dict[str, Registration[T]] = {}

    def add(self, component: type[T], plugin: str, distribution: str) -> None:
        if not (isinstance(component, type) and issubclass(component, self.base)):
            raise PluginError(
                f"plugin {plugin!r} ({distribution}) registered {component!r} as a {self.kind}; "
                f"it must be a subclass of {self.base.__name__}"
            )
        ident = getattr(component, self.id_attr, None)
        if not isinstance(ident, str) or not ident:
            raise PluginError(f"{self.kind} {component.__name__} from plugin {plugin!r} has no {self.id_attr!r}")
        if ident in self._entries:
            first = self._entries[ident]
            raise DuplicateRegistrationError(
                f"duplicate {self.kind} id {ident!r}: registered by plugin {first.plugin!r} "
                f"({first.distribution}) and by plugin {plugin!r} ({distribution})"
            )
        self._entries[ident] = Registration(ident, component, plugin, distribution)

    def get(self, ident: str) -> type[T]:
        return self.registration(ident).component

    def registration(self, ident: str) -> Registration[T]:
        try:
            return self._entries[ident]
        except KeyError:
            raise UnknownComponentError(self._unknown_message(ident)) from None

    def _unknown_message(self, ident: str) -> str:
        known = sorted(self._entries)
        close = difflib.get_close_matches(ident, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown {self.kind} {ident!r}{hint} (installed: {', '.join(known) or 'none'})"

    def __contains__(self, ident: object) -> bool:
        return ident in self._entries

    def __iter__(self) -> Iterator[Registration[T]]:
        return iter(sorted(self._entries.values(), key=lambda r: r.id))

    def __len__(self) -> int:
        return len(self._entries)


class Registrar:
    """The `register` argument of the `register_*` hooks: one per plugin, so ids are traced to it."""

    def __init__(self, registry: Registry[Any], plugin: str, distribution: str):
        self._registry = registry
        self._plugin = plugin
        self._distribution = distribution

    def __call__(self, component: type) -> type:
        self._registry.add(component, self._plugin, self._distribution)
        return component
