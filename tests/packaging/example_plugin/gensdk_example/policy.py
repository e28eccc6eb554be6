"""The `no-shouting` policy: a text written entirely in capitals is a violation."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from gensdk import Finding, Policy, PolicyOptions, hookimpl


class NoShouting(Policy):
    """Flags texts written entirely in capital letters."""

    id = "no-shouting"
    version = "1"
    modalities = frozenset({"text"})

    class Options(PolicyOptions):
        # "OK" or "EU" alone is not shouting: a text needs this many letters before it can be.
        min_letters: int = Field(3, ge=1)

    def shouts(self, text: str) -> bool:
        return sum(c.isalpha() for c in text) >= self.options.min_letters and text.isupper()

    @hookimpl
    def inspect_output(self, outputs: list[Any], context: Any) -> list[Finding]:
        return [
            Finding("shouting", "the text is written entirely in capitals", violation=True, output_index=i)
            for i, output in enumerate(outputs)
            if self.shouts(output.text)
        ]
