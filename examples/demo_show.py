"""How the demos print one generation: its verdict, what was released, its audit record and each policy."""

from __future__ import annotations

from rich.console import Console

import gensdk

console = Console()


def show_generation(label: str, result: gensdk.Result) -> None:
    colour = "green" if result.verdict.releases else "red"
    console.print(f"{label}: verdict [{colour}]{result.verdict.value}[/{colour}], "
                  f"{len(result.outputs)}/{len(result.output_verdicts)} outputs released, "
                  f"audit record {result.audit_record_id[:12]}")
    for outcome in result.outcomes:
        console.print(f"  {outcome.policy_id}: {outcome.status} ({len(outcome.findings)} findings)")
