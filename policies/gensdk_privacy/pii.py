"""PII in prompts and generated text: find it, then redact, mask, hash (HMAC) or block it, per entity type.

    scanner = PIIScanner(["EMAIL", "PHONE"])
    entities = scanner.scan("write to ada@example.org")      # [Entity("EMAIL", 9, 24)]
    scanner.scan_many(["ada@example.org", "no PII"])         # [[Entity("EMAIL", 0, 15)], []]: one pass for both

Findings carry the entity type and its span, never the value: they go to the audit trail. Texts are scanned in
windows of `WINDOW_CHARS` (with `lookback_chars` of overlap), so a huge output costs bounded extra memory; a
stream is scanned with `StreamingPIIScanner`, which holds back the last `lookback_chars` characters of what it
has seen until it knows no entity crosses them.
"""

from __future__ import annotations

import bisect
import hashlib
import hmac
import itertools
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple

from pydantic import Field, SecretStr, field_validator

from gensdk import Finding, Policy, PolicyOptions, hookimpl
from gensdk.errors import ConfigError, DataError
from gensdk.outputs import Output, TextOutput
from gensdk.request import GenerationContext, Request
from gensdk_privacy.detectors import ENTITY_TYPES, MAX_ENTITY_CHARS, NAME_LOCALES, build_finder

__all__ = ["Entity", "PIIPolicy", "PIIScanner", "StreamingPIIScanner", "apply_actions", "check_text", "load_hash_key"]

EntityType = Literal["EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "US_SSN", "IPV4", "IPV6", "PERSON"]
Action = Literal["redact", "mask", "hash", "block"]

# A window this long is scanned at a time; entities crossing windows are found in the overlap.
WINDOW_CHARS = 1 << 20
# Characters of already-released text a stream scanner keeps as left context: the look-behind assertions, and
# the 24 characters before a name where a street word ("Calle ", "rue de ") makes it an address.
LEFT_CONTEXT = 24
# Per output, findings past this many are summarised in one finding with counts per type.
MAX_FINDINGS_PER_OUTPUT = 100
MIN_KEY_BYTES = 16


class Entity(NamedTuple):
    type: str
    start: int
    end: int


_as_entity = tuple.__new__  # Entity from a (type, start, end) tuple without a Python-level call


class PIIScanner:
    """Finds the chosen entity types (see `detectors`); overlaps are resolved, earlier types win."""

    lookback_chars = MAX_ENTITY_CHARS + LEFT_CONTEXT

    def __init__(self, entities: Sequence[str] = ENTITY_TYPES, phone_regions: Sequence[str] = ("US", "GB", "DE", "FR", "ES", "IT", "NL", "BR", "IN"),
                 phone_leniency: str = "valid", name_locales: Sequence[str] = NAME_LOCALES):
        unknown = set(entities) - set(ENTITY_TYPES)
        if unknown:
            raise ConfigError(f"unknown PII entity types {sorted(unknown)}; known: {', '.join(ENTITY_TYPES)}")
        self.finder = build_finder(entities, phone_regions, phone_leniency, name_locales)

    def scan(self, text: str) -> list[Entity]:
        """Entities in `text`, sorted by start, non-overlapping."""
        if len(text) <= WINDOW_CHARS:
            found = self.finder.find(text)
            # map in C, not a comprehension (a function call of its own): this runs once per document
            return list(map(_as_entity, itertools.repeat(Entity), found)) if found else found
        return self._scan_windows(text)

    def scan_many(self, texts: Sequence[str]) -> list[list[Entity]]:
        """`[scan(t) for t in texts]`, found in fewer, longer passes: short texts are joined by `SEPARATOR`
        (up to `WINDOW_CHARS` at a time), scanned as one, and the entities handed back by offset. One call per
        short text costs about 1.5 times as much: the per-call setup, and the phone rules checked after each
        text evict the scan's patterns from the CPU caches."""
        results: list[list[Entity]] = [[] for _ in texts]
        for first, stop in _groups(texts):
            if stop - first == 1:
                results[first] = self.scan(texts[first])
            else:
                self._scan_joined(texts, first, stop, results)
        return results

    def _scan_joined(self, texts: Sequence[str], first: int, stop: int, results: list[list[Entity]]) -> None:
        """Scan texts[first:stop] joined; each entity goes to the text it lies in (none crosses a separator)."""
        group = texts[first:stop]
        # where each text starts in the joined text, and where the joined text ends (plus a separator)
        bounds = list(itertools.accumulate((len(text) + len(SEPARATOR) for text in group), initial=0))
        offset, following, entities = 0, 0, results[first]
        for kind, start, end in self.finder.find(SEPARATOR.join(group)):
            if start >= following:  # sorted by start: only a new text's first entity looks its text up
                index = bisect.bisect_right(bounds, start) - 1
                offset, following, entities = bounds[index], bounds[index + 1], results[first + index]
            entities.append(_as_entity(Entity, (kind, start - offset, end - offset)))

    def _scan_windows(self, text: str) -> list[Entity]:
        """A text longer than a window, window by window: memory beyond the text itself stays bounded."""
        found: list[Entity] = []
        step = WINDOW_CHARS - self.lookback_chars
        for start in range(0, len(text), step):
            context = min(start, self.lookback_chars)  # left context: no entity is found half-way in
            for kind, a, b in self.finder.find(text[start - context : start + WINDOW_CHARS]):
                # keep what starts in this window's own stretch: it ends before the window does
                if context <= a < context + step:
                    found.append(Entity(kind, a + start - context, b + start - context))
        return found


# The text boundary between joined texts. No pattern's character classes hold "\n" or "\x00" (none uses \s,
# a negated class or an unescaped dot), so no entity crosses it, and every look-around reads it as it reads the
# start or end of a text; the tests compare scan_many with scan on texts built to probe each of them.
SEPARATOR = "\n\x00\n"


def _groups(texts: Sequence[str]) -> list[tuple[int, int]]:
    """(first, stop) of runs of texts that, joined, fit in one window; a longer text is a run of its own."""
    if sum(map(len, texts)) + len(SEPARATOR) * len(texts) <= WINDOW_CHARS:  # the usual micro-batch: one run
        return [(0, len(texts))] if texts else []
    groups: list[tuple[int, int]] = []
    first, size = 0, 0
    for i, text in enumerate(texts):
        if i > first and size + len(SEPARATOR) + len(text) > WINDOW_CHARS:
            groups.append((first, i))
            first, size = i, 0
        size += len(text) + (len(SEPARATOR) if i > first else 0)
    if texts:
        groups.append((first, len(texts)))
    return groups


# -- actions --------------------------------------------------------------------------------------------------


def load_hash_key(key: SecretStr | None, key_file: str | None) -> bytes:
    """The HMAC key: hex in the options or in a file. Never a default: a missing or short key is an error."""
    if key is not None and key_file is not None:
        raise ConfigError("give the PII hash key either as hash_key or as hash_key_file, not both")
    if key_file is not None:
        path = Path(key_file).expanduser()
        try:
            raw = path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            raise ConfigError(f"PII hash key file {path} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"PII hash key file {path} is unreadable or not hexadecimal text: {exc}") from None
        where = f"key file {path}"
    elif key is not None:
        raw, where = key.get_secret_value().strip(), "hash_key"
    else:
        raise ConfigError("the PII action 'hash' needs a key: set hash_key (hex) or hash_key_file (a file holding hex)")
    try:
        value = bytes.fromhex(raw)
    except ValueError:
        raise ConfigError(f"PII hash key in {where} is not hexadecimal") from None
    if len(value) < MIN_KEY_BYTES:
        raise ConfigError(f"PII hash key in {where} has {len(value)} bytes; use at least {MIN_KEY_BYTES} (32 hex digits)")
    return value


def mask(value: str, keep: int, char: str) -> str:
    """Letters and digits become `char` except the last `keep` of them; separators stay."""
    alnum = [i for i, ch in enumerate(value) if ch.isalnum()]
    hidden = set(alnum[: max(0, len(alnum) - keep)])
    return "".join(char if i in hidden else ch for i, ch in enumerate(value))


def apply_actions(text: str, entities: Sequence[Entity], replacement: Any) -> tuple[str, list[tuple[int, int]]]:
    """`text` with each entity replaced by replacement(entity, value) (None: left as is); also each
    entity's span in the new text."""
    pieces: list[str] = []
    spans: list[tuple[int, int]] = []
    cursor = length = 0
    for entity in entities:
        pieces.append(text[cursor : entity.start])
        length += entity.start - cursor
        value = text[entity.start : entity.end]
        new = replacement(entity, value)
        new = value if new is None else new
        pieces.append(new)
        spans.append((length, length + len(new)))
        length += len(new)
        cursor = entity.end
    pieces.append(text[cursor:])
    return "".join(pieces), spans


# -- streaming ------------------------------------------------------------------------------------------------


class StreamingPIIScanner:
    """Scan a text that arrives in chunks; release only what no later chunk can change.

        stream = StreamingPIIScanner(scanner, replace=policy.replacement)
        for chunk in chunks:
            send(stream.feed(chunk))
        send(stream.finish())

    Entities are reported with offsets in the whole stream (`stream.entities`). Each call releases all but the
    last `lookback_chars` characters, moved back to the start of any entity that crosses the cut.
    """

    def __init__(self, scanner: PIIScanner, replace: Any = None):
        self.scanner = scanner
        self.replace = replace or (lambda entity, value: f"[{entity.type}]")
        self.lookback_chars = scanner.lookback_chars
        self.entities: list[Entity] = []
        self._pending = ""
        self._context = ""
        self._offset = 0  # stream offset of _pending[0]

    def feed(self, chunk: str) -> str:
        self._pending += chunk
        return self._release(final=False)

    def finish(self) -> str:
        return self._release(final=True)

    def _release(self, final: bool) -> str:
        cut = len(self._pending) if final else len(self._pending) - self.lookback_chars
        if cut <= 0:
            return ""
        window = self._context + self._pending
        shift = len(self._context)
        found = [Entity(e.type, e.start - shift, e.end - shift) for e in self.scanner.scan(window) if e.start >= shift]
        for entity in found:
            if entity.start < cut < entity.end:
                cut = entity.start
        released = [e for e in found if e.end <= cut]
        text, _ = apply_actions(self._pending[:cut], released, self.replace)
        self.entities += [Entity(e.type, e.start + self._offset, e.end + self._offset) for e in released]
        self._context = (self._context + self._pending[:cut])[-LEFT_CONTEXT:]
        self._pending = self._pending[cut:]
        self._offset += cut
        return text


# -- the policy -----------------------------------------------------------------------------------------------


class PIIPolicy(Policy):
    """Finds personal data in prompts and texts (e-mail, phone, card, IBAN, SSN, IP, names); redacts, masks, hashes or blocks."""

    id = "pii"
    version = "1"
    modalities = frozenset({"text"})

    class Options(PolicyOptions):
        entities: list[EntityType] = Field(default_factory=lambda: list(ENTITY_TYPES))
        default_action: Action = "redact"
        actions: dict[EntityType, Action] = Field(default_factory=dict)
        # Prompts cannot be rewritten: PII in a prompt blocks the request, is only recorded, or is not checked.
        prompts: Literal["block", "flag", "ignore"] = "block"
        phone_regions: list[str] = Field(default_factory=lambda: ["US", "GB", "DE", "FR", "ES", "IT", "NL", "BR", "IN"])
        phone_leniency: Literal["valid", "possible"] = "valid"
        name_locales: list[str] = Field(default_factory=lambda: list(NAME_LOCALES))
        hash_key: SecretStr | None = None
        hash_key_file: str | None = None
        hash_chars: int = Field(16, ge=8, le=64)
        mask_char: str = Field("*", min_length=1, max_length=1)
        mask_keep: int = Field(4, ge=0, le=16)
        max_text_chars: int = Field(200_000_000, ge=1)

        @field_validator("phone_regions")
        @classmethod
        def _known_regions(cls, regions: list[str]) -> list[str]:
            import phonenumbers

            unknown = [r for r in regions if r not in phonenumbers.SUPPORTED_REGIONS]
            if unknown:
                raise ValueError(f"unknown phone regions {unknown} (use ISO 3166 codes such as 'US', 'DE')")
            return regions

    def __init__(self, options: Any = None, settings: Any = None):
        super().__init__(options, settings)
        opts = self.options
        self.scanner = PIIScanner(opts.entities, opts.phone_regions, opts.phone_leniency, opts.name_locales)
        self.lookback_chars = self.scanner.lookback_chars
        uses_hash = "hash" in {self.action_for(kind) for kind in opts.entities}
        self._key = load_hash_key(opts.hash_key, opts.hash_key_file) if uses_hash else b""
        self.key_id = hashlib.sha256(self._key).hexdigest()[:8] if uses_hash else None

    def action_for(self, kind: str) -> str:
        return self.options.actions.get(kind, self.options.default_action)  # type: ignore[call-overload, no-any-return]

    def replacement(self, entity: Entity, value: str) -> str | None:
        """What the entity's value becomes in the released text (None: unchanged, for 'block')."""
        action = self.action_for(entity.type)
        if action == "redact":
            return f"[{entity.type}]"
        if action == "mask":
            return mask(value, self.options.mask_keep, self.options.mask_char)
        if action == "hash":
            digest = hmac.new(self._key, value.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
            return f"[{entity.type}:{digest[: self.options.hash_chars]}]"
        return None

    # -- hooks ----------------------------------------------------------------------------------------------

    @hookimpl
    def check_request(self, request: Request, context: GenerationContext) -> list[Finding]:
        if self.options.prompts == "ignore":
            return []
        texts = list(request.prompts or []) + [m.get("content", "") for conv in request.messages or [] for m in conv]
        checked = [self._checked(text, f"prompt {index}") for index, text in enumerate(texts)]
        findings = []
        for index, entities in enumerate(self.scanner.scan_many(checked)):
            for entity in entities:
                findings.append(Finding(
                    "pii-in-prompt", f"prompt {index} contains {_article(entity.type)}",
                    violation=self.options.prompts == "block", span=(entity.start, entity.end),
                    details={"entity": entity.type, "prompt_index": index},
                ))
        return findings

    @hookimpl
    def transform_output(self, outputs: list[Output], context: GenerationContext) -> list[Finding]:
        """Scan each text; redact, mask or hash in place; report 'block' entities as violations."""
        indexed = [(index, output) for index, output in enumerate(outputs) if isinstance(output, TextOutput)]
        texts = [self._checked(output.text, f"output {index}") for index, output in indexed]
        findings: list[Finding] = []
        for (index, output), entities in zip(indexed, self.scanner.scan_many(texts)):  # the micro-batch in one pass
            findings += self._transform_one(index, output, entities)
        return findings

    def _transform_one(self, index: int, output: TextOutput, entities: list[Entity]) -> list[Finding]:
        if not entities:
            return []
        output.text, new_spans = apply_actions(output.text, entities, self.replacement)
        findings = []
        for entity, released in zip(entities[:MAX_FINDINGS_PER_OUTPUT], new_spans):
            action = self.action_for(entity.type)
            details: dict[str, Any] = {"entity": entity.type, "action": action, "released_span": list(released)}
            if action == "hash":
                details["key_id"] = self.key_id
            findings.append(Finding(f"pii-{action}", f"{_article(entity.type)} in output {index} ({action})",
                                    violation=action == "block", output_index=index,
                                    span=(entity.start, entity.end), details=details))
        if len(entities) > MAX_FINDINGS_PER_OUTPUT:
            findings.append(self._summary(index, entities[MAX_FINDINGS_PER_OUTPUT:]))
        return findings

    def _summary(self, index: int, rest: list[Entity]) -> Finding:
        counts: dict[str, int] = {}
        for entity in rest:
            counts[entity.type] = counts.get(entity.type, 0) + 1
        blocked = any(self.action_for(kind) == "block" for kind in counts)
        return Finding("pii-more", f"{len(rest)} more PII entities in output {index}", violation=blocked,
                       output_index=index, details={"counts": counts})

    def _checked(self, text: Any, what: str) -> str:
        return check_text(text, what, self.options.max_text_chars)


def check_text(text: Any, what: str, max_chars: int) -> str:
    """Fail closed on what is not text: bytes, lone surrogates (undecodable input), oversized inputs."""
    if not isinstance(text, str):
        raise DataError(f"{what} is {type(text).__name__}, not text; it can only be checked as text")
    if len(text) > max_chars:
        raise DataError(f"{what} has {len(text):,} characters, over max_text_chars {max_chars:,}")
    bad = _SURROGATE.search(text)
    if bad:
        raise DataError(f"{what} is not valid Unicode text (an undecodable byte at character {bad.start()}); "
                        "decode it as UTF-8 before generation")
    return text


_SURROGATE = re.compile("[\ud800-\udfff]")


def _article(kind: str) -> str:
    return f"{'an' if kind[0] in 'AEIOU' else 'a'} {kind.replace('_', ' ').lower()}"

