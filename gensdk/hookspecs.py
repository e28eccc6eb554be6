"""Every gensdk hook, on one page.

Two kinds of plugin implement them:

* **Distribution plugins** (a module named by a `gensdk` entry point) implement the `register_*` hooks to add
  model families, policies, audit sinks and CLI commands.
* **Policy instances** implement the four pipeline hooks as methods marked `@gensdk.hookimpl`. The engine
  registers each configured policy with its own plugin manager and calls it on its own, in the configured
  order, under the policy's time limit; a pipeline hook implemented by anything that is not a `Policy` is a
  start-up error, because it would run without an id, a version or an audit record.

No pipeline hook is `firstresult`: safety verdicts are always collected from everyone. The one `firstresult`
hook, `write_outputs`, chooses how released outputs become files; the core's plain writer is the `trylast`
fallback.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gensdk._markers import hookspec

if TYPE_CHECKING:
    from pathlib import Path

    import click

    from gensdk.outputs import Output
    from gensdk.registry import Registrar
    from gensdk.request import GenerationContext, Request
    from gensdk.verdicts import Finding


@hookspec
def register_model_families(register: Registrar) -> None:
    """Add model families.

    :param register: call ``register(FamilyClass)`` once per family. Registering an id that another plugin
        already registered is a start-up error naming both distributions.
    """


@hookspec
def register_policies(register: Registrar) -> None:
    """Add policy classes (subclasses of ``gensdk.Policy``); configuration decides which run.

    :param register: call ``register(PolicyClass)`` once per policy; duplicate ids are a start-up error.
    """


@hookspec
def register_audit_sinks(register: Registrar) -> None:
    """Add audit trail backends, chosen by the URL scheme of the audit target.

    :param register: call ``register(SinkClass)``; the class's ``scheme`` (``"sqlite"``, ``"postgresql"``)
        is its id.
    """


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add commands or command groups to the ``gensdk`` CLI.

    :param cli: the root click group. Add to an existing group with ``cli.commands["train"].add_command(...)``.
    """


@hookspec
def check_request(request: Request, context: GenerationContext) -> list[Finding] | None:
    """Inspect the input before anything is generated (prompt PII, misuse).

    A violation here applies to every output of the request, so a blocking one stops generation.

    :param request: the validated request.
    :param context: the generation context (seed, device, model identity).
    :return: findings on the request, or None.
    """


@hookspec
def prepare_generation(request: Request, context: GenerationContext) -> list[Any] | None:
    """Contribute generation-time processors (a logits processor, initial latents, a per-step callback).

    The family must apply every processor it is given (``context.take(kind)``); a processor left unapplied
    blocks the outputs, because the policy that asked for it did not get to act.

    :return: processor objects, or None.
    """


@hookspec
def transform_output(outputs: list[Output], context: GenerationContext) -> list[Finding] | None:
    """Change outputs in place (embed a watermark, redact PII), in the configured policy order.

    :param outputs: this micro-batch's outputs; mutate them, do not replace the list.
    :return: findings describing what was changed, or None.
    """


@hookspec
def inspect_output(outputs: list[Output], context: GenerationContext) -> list[Finding] | None:
    """Read-only checks on the final outputs (PII left, a memorised training record, ...).

    :param outputs: this micro-batch's outputs after every transform; do not modify them.
    :return: findings with ``output_index`` set to the output they concern, or None.
    """


@hookspec
def finalize_output(outputs: list[Output], record: dict[str, Any]) -> None:
    """After the audit record is committed, finish what needs the record itself (a provenance manifest that
    names the record's hash). Called once per generation call with the released outputs, on the policies that
    took part (not disabled by the request, applicable to the modality) and on distribution plugins.

    Runs inline, with no time limit, after the commit: do all that can fail in `transform_output` (where a
    failure blocks the output and is recorded) and only the last, infallible step here. An exception here
    reaches the caller as a `PluginError` and the outputs are not returned, although the committed record
    already lists them as released.

    :param outputs: the released outputs; ``metadata["audit_record_id"]`` and ``metadata["digest"]`` are set.
        Change only their ``metadata``: their content is what the record's digests describe.
    :param record: the committed record, ``{"record_id", "seq", "hash", "body"}``; read-only.
    """


@hookspec(firstresult=True)
def write_outputs(outputs: list[Output], path: Path) -> list[Path] | None:
    """Write released outputs to files at the edge (``gensdk generate --out``, ``Engine.write_outputs``).

    The first plugin that returns a list of written paths wins; return None to leave the outputs to the
    next writer. The core's own writer runs last and writes plain files (one CSV for tables, JSONL for texts,
    a directory of PNGs for images). The provenance plugin, for example, writes files that carry their
    signed manifests whenever the outputs have one, so the command line never drops them.

    :param outputs: released outputs of one modality, after ``finalize_output``.
    :param path: a file for texts and tables (a directory when it has no suffix), a directory for images.
    """
