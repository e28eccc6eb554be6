"""Policy base class.

A policy is a configured object: its options are a pydantic model with `extra="forbid"` (a typo is an error
naming the key), its settings say what a violation or an error means, and both go into the config digest
recorded in every audit record. A policy takes part in the pipeline by implementing any of the pipeline hooks
(`check_request`, `prepare_generation`, `transform_output`, `inspect_output`) as methods marked with
`@gensdk.hookimpl`; the engine registers each configured policy instance with its plugin manager, so pluggy
validates the signatures, and calls each policy separately so one policy's failure is isolated and recorded.

    class Shout(Policy):
        id = "shout"
        version = "1"
        modalities = frozenset({"text"})

        class Options(PolicyOptions):
            limit: int = 3

        @hookimpl
        def inspect_output(self, outputs, context):
            return [Finding("shouting", "too many capitals", violation=True, output_index=i)
                    for i, o in enumerate(outputs) if sum(c.isupper() for c in o.text) > self.options.limit]
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field

from gensdk._canonical import digest_of
from gensdk.errors import ConfigError
from gensdk.outputs import MODALITIES
from gensdk.request import validate_options

__all__ = ["PIPELINE_HOOKS", "Policy", "PolicyOptions", "PolicySettings"]

log = logging.getLogger("gensdk.policy")

PIPELINE_HOOKS = ("check_request", "prepare_generation", "transform_output", "inspect_output")


class PolicyOptions(BaseModel):
    """Base for a policy's own options. Unknown keys are rejected."""

    # No inf/NaN: options go into the config digest, and canonical JSON has no form for them.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class PolicySettings(BaseModel):
    """How the engine treats a policy, the same for every policy."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    on_fail: Literal["block", "warn"] = "block"
    # "allow" lets outputs through when the policy itself fails. Loud: logged and recorded as `bypassed`.
    on_error: Literal["block", "allow"] = "block"
    # Seconds one hook call may take before the output is blocked; None runs the hook inline, unbounded.
    timeout_s: float | None = Field(60.0, gt=0)
    # A mandatory policy cannot be switched off by a request.
    mandatory: bool = True


class Policy:
    id: ClassVar[str]
    version: ClassVar[str] = "0"
    modalities: ClassVar[frozenset[str]] = frozenset(MODALITIES)
    Options: ClassVar[type[PolicyOptions]] = PolicyOptions
    # The longest span of text this policy must see whole to recognise it (a PII value with its left
    # context, a quoted passage). A stream holds back at least this many characters, so nothing the policy
    # would change is released before it can see all of it.
    lookback_chars: int = 0

    def __init__(
        self,
        options: PolicyOptions | Mapping[str, Any] | None = None,
        settings: PolicySettings | Mapping[str, Any] | None = None,
    ):
        self.options = validate_options(self.Options, options, f"options of policy {self.id!r}")
        self.settings = validate_options(PolicySettings, settings, f"settings of policy {self.id!r}")
        try:
            # Both go into every audit record's config digest: refuse what canonical JSON cannot hold.
            digest_of([self.options.model_dump(mode="json"), self.settings.model_dump(mode="json")])
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"policy {self.id!r} has a configuration the audit trail cannot record: {exc}") from None
        if self.settings.on_error == "allow":
            log.warning(
                "policy %r is configured on_error='allow': outputs it fails on are released and recorded as "
                "'bypassed'. This weakens the fail-closed guarantee.",
                self.id,
            )

    def applies_to(self, modality: str) -> bool:
        return modality in self.modalities

    @property
    def config_digest(self) -> str:
        """Digest of `describe()`, kept while `options` and `settings` are the same objects (both are frozen
        pydantic models, so they change only by being replaced): every request's record holds it."""
        options, settings = self.options, self.settings
        kept = self.__dict__.get("_config_digest")
        if kept is None or kept[0] is not options or kept[1] is not settings:
            kept = self.__dict__["_config_digest"] = (options, settings, digest_of(self.describe()))
        return kept[2]

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "version": self.version,
            "options": self.options.model_dump(mode="json"),
            "settings": self.settings.model_dump(mode="json"),
        }

    def __repr__(self) -> str:
        return f"<Policy {self.id} v{self.version}>"

