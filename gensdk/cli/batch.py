"""`gensdk batch INPUT.jsonl OUT/`: a file of requests through the engine's policies, locally or on Ray."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import click

from gensdk.cli.output import console, print_json

__all__ = ["batch"]


@click.command("batch")
@click.argument("input_path", metavar="INPUT.jsonl", type=click.Path(path_type=Path, dir_okay=False))
@click.argument("out_dir", metavar="OUT/", type=click.Path(path_type=Path, file_okay=False))
@click.option("--ray", "use_ray", is_flag=True,
              help="Run on Ray Data, one engine per GPU (else CPU) actor; RAY_ADDRESS joins a running cluster.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Ray actors (default: one per GPU, else one per CPU of the cluster).")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True,
              help="Requests per map_batches call; a worker that dies reruns at most this many.")
@click.option("--config", "config", type=click.Path(path_type=Path), default=None, envvar="GENSDK_CONFIG",
              help="gensdk.toml with the policies every worker enforces.")
@click.option("--audit", "audit", default=None, envvar="GENSDK_AUDIT",
              help="Audit trail: a postgresql:// URL shared by every worker, or an SQLite path (with --ray each "
                   "worker writes its own file in OUT/audit-workers/, merged into it at the end).")
@click.option("--plugin", "plugins", multiple=True, metavar="MODULE",
              help="Also register this importable module as a plugin in every worker (one not installed with an "
                   "entry point); repeat for several.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON (and no progress bar).")
def batch(input_path: Path, out_dir: Path, use_ray: bool, workers: int | None, batch_size: int,
          config: Path | None, audit: str | None, plugins: tuple[str, ...], as_json: bool) -> None:
    """Generate every request of INPUT.jsonl into OUT/, one directory per request.

    Each line is a JSON object with a unique "request_id", a "model" directory and the request's fields (n,
    seed, prompts, messages, conditions, params). Running a job again skips the requests already committed to
    the audit trail. OUT/results.jsonl lists every request's status, verdict and audit record id.
    """
    from gensdk.cli.progress import progress_bar
    from gensdk.distributed import BatchFailed, run_batch

    options = dict(config=config, audit=audit, use_ray=use_ray, workers=workers, batch_size=batch_size,
                   plugins=plugins)
    if as_json:
        # Ray's driver prints worker events ("(raylet) A worker died ...") on stdout from its own thread;
        # while the job runs they go to stderr, so stdout is the JSON summary alone.
        with contextlib.redirect_stdout(sys.stderr):
            report = run_batch(input_path, out_dir, **options)
        print_json(report.summary())
    else:
        with progress_bar("batch") as update:
            report = run_batch(input_path, out_dir, progress=update, **options)
        _print_summary(report)
    if report.failed:
        first = report.failed[0]
        raise BatchFailed(
            f"{len(report.failed)} of {len(report.rows)} requests failed (first: line {first['line']}, "
            f"{first['error']}); see {report.results_path}"
        )


def _print_summary(report) -> None:
    s = report.summary()
    out = console()
    out.print(f"{s['requests']} requests: {s['done']} generated, {s['skipped']} already committed (skipped), "
              f"{s['errors']} failed; {s['released']} of {s['generated']} outputs released", highlight=False)
    if report.merge is not None:
        out.print(f"merged {len(report.merge.sources)} worker audit trails ({report.merge.appended} new records) "
                  f"into {s['audit']}; it verifies: {report.merge.target.records} records", highlight=False)
    else:
        out.print(f"audit trail: {s['audit']}", highlight=False)
    out.print(f"results: {s['results']}", highlight=False)
