"""Engine overhead: the same GMM generation called directly, through the engine, and through a no-op policy.

    python benchmarks/bench_engine_overhead.py [--rows 10000] [--repeats 15] [--components 10]
                                               [--fit-rows N] [--model DIR] [--threads N] [--profile]

On UCI Adult (gensdk.datasets.load_adult(), fitted once) it times generating `--rows` rows
- (a) direct: `model.generate(Request(...), GenerationContext(...))`, the context built the way the engine
  builds it (resolved device and dtype, batch seed, model identity) inside `inference_mode()`;
- (b) `Engine.generate` with no policy (policy runner, digest of the output, audit record committed);
- (c) `Engine.generate` with `gensdk.testing.NoopPolicy` (all four pipeline hooks, default settings, so each
  hook runs under the 60 s time limit in a worker thread).
Each repeat runs a, b and c back to back with the same seed, in an order that rotates from repeat to repeat
(no variant always runs first), so background load hits all three alike; the table shows the median and p90
seconds, the ratios b/a and c/a of the medians (target <= 1.05), the median over the repeats of each repeat's
own ratio (steadier on a shared machine: its three calls are a fraction of a second apart) and the same for
CPU time (this process, all threads), then the engine's own per-stage times (median ms, read back from the
timed calls' audit records) and the engine's own time per call: its wall time less the family's generate
stage, which takes the GMM's ±10% call-to-call spread out of the overhead. The audit trails
are temporary SQLite files.

Fitting on all 30,162 rows takes a minute or two on a laptop CPU: `--model DIR` saves the fitted model there on
the first run and loads it on later runs; `--fit-rows` fits on a sample. `--profile` adds a cProfile of the
engine variant (b), the functions sorted by their own time, to show where the overhead goes. `--threads N`
caps torch's and the BLAS libraries' thread pools (on a busy 2-core machine one thread is several times
faster at EM, whose matrices are small).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from gensdk import Engine, GenerationContext, Request  # noqa: E402
from gensdk.device import batch_seed, inference_mode, resolve_device, resolve_dtype  # noqa: E402
from gensdk.testing import NoopPolicy  # noqa: E402

WARMUP = 2  # first calls pay for lazy imports, allocator growth and SQLite's first WAL write


def fitted_model(components: int, fit_rows: int | None, cache: Path | None) -> Any:
    from gensdk_gmm import GMMFamily

    if cache is not None and (cache / "gensdk_model.json").exists():
        print(f"loading the fitted model from {cache}")
        return GMMFamily.load(cache)
    from gensdk.datasets import load_adult

    data = load_adult()
    if fit_rows:
        data = data.sample(fit_rows, random_state=0).reset_index(drop=True)
    started = time.perf_counter()
    model = GMMFamily({"n_components": components, "seed": 0}).fit(data)
    print(f"fitted {components} components on {len(data)} rows of UCI Adult in {time.perf_counter() - started:.1f} s "
          f"({model.metadata['em_iterations']} EM iterations)")
    if cache is not None:
        model.save(cache)
        model = GMMFamily.load(cache)  # the same object the engine would load: weights digest set
    return model


def direct_call(model: Any) -> Callable[[int, int], Any]:
    """Exactly what the engine hands the family for a one-batch request (see Engine._context)."""
    device = resolve_device("auto")
    dtype = resolve_dtype("auto", device)

    def run(rows: int, seed: int) -> Any:
        request = Request(n=rows, seed=seed)
        context = GenerationContext(request=request, seed=batch_seed(seed, 0), device=device, dtype=dtype,
                                    modality=model.modality, model_info=model.identity(), batch_index=0)
        with inference_mode():
            return model.generate(request, context)

    return run


def engine_call(engine: Engine, model: Any) -> Callable[[int, int], Any]:
    def run(rows: int, seed: int) -> Any:
        result = engine.generate(model, n=rows, seed=seed)
        assert result.outputs, result.verdict
        return result.outputs

    return run


def timed(fn: Callable[[int, int], Any], rows: int, seed: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call."""
    started, cpu = time.perf_counter(), time.process_time()
    outputs = fn(rows, seed)
    elapsed = (time.perf_counter() - started, time.process_time() - cpu)
    assert sum(len(o.frame) for o in outputs) == rows
    return elapsed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000, help="rows generated per call")
    parser.add_argument("--repeats", type=int, default=15, help="timed calls per variant (after a warm-up)")
    parser.add_argument("--components", type=int, default=10, help="mixture components")
    parser.add_argument("--fit-rows", type=int, default=None, help="fit on a sample of this many rows")
    parser.add_argument("--model", type=Path, default=None, help="save the fitted model here / load it if present")
    parser.add_argument("--threads", type=int, default=None, help="torch and BLAS threads (default: theirs)")
    parser.add_argument("--profile", action="store_true", help="cProfile the engine variant (b) afterwards")
    args = parser.parse_args(argv)
    if args.threads:
        import torch
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(args.threads)
        threadpool_limits(limits=args.threads)

    model = fitted_model(args.components, args.fit_rows, args.model)
    with tempfile.TemporaryDirectory() as tmp:
        bare = Engine(load_entrypoints=False, audit=str(Path(tmp) / "bare.db"))
        noop = Engine(load_entrypoints=False, policies=[NoopPolicy()], audit=str(Path(tmp) / "noop.db"))
        variants = {
            "(a) family directly": direct_call(model),
            "(b) Engine, no policy": engine_call(bare, model),
            "(c) Engine + NoopPolicy": engine_call(noop, model),
        }
        for seed in range(WARMUP):
            for fn in variants.values():
                fn(args.rows, seed)
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
        names = list(variants)
        for seed in range(WARMUP, WARMUP + args.repeats):
            turn = seed % len(names)
            for name in names[turn:] + names[:turn]:
                times[name].append(timed(variants[name], args.rows, seed))
        report(times, args)
        report_stages(bare, args.repeats, "(b)")
        report_stages(noop, args.repeats, "(c)")
        direct_median = float(np.median([wall for wall, _ in times["(a) family directly"]]))
        report_own_time(bare, times["(b) Engine, no policy"], direct_median, "(b)")
        report_own_time(noop, times["(c) Engine + NoopPolicy"], direct_median, "(c)")
        if args.profile:
            profile(variants["(b) Engine, no policy"], args.rows)
        for engine in (bare, noop):
            assert engine.audit.verify().ok
            engine.close()


def report(times: dict[str, list[tuple[float, float]]], args: argparse.Namespace) -> None:
    direct = times["(a) family directly"]
    base = float(np.median([wall for wall, _ in direct]))
    print(f"\n{args.rows} rows per call, {args.repeats} timed calls per variant after {WARMUP} warm-up calls, "
          f"device {resolve_device('auto')}")
    print(f"{'variant':<26}{'median s':>10}{'p90 s':>10}{'ratio':>8}{'paired':>8}{'cpu':>8}")
    for name, values in times.items():
        walls = [wall for wall, _ in values]
        median = float(np.median(walls))
        paired = float(np.median([w / d for (w, _), (d, _) in zip(values, direct)]))
        cpu = float(np.median([c / d for (_, c), (_, d) in zip(values, direct)]))
        print(f"{name:<26}{median:>10.4f}{float(np.percentile(walls, 90)):>10.4f}{median / base:>8.3f}"
              f"{paired:>8.3f}{cpu:>8.3f}")
    for name in list(times)[1:]:
        ratio = float(np.median([w / d for (w, _), (d, _) in zip(times[name], direct)]))
        verdict = "meets" if ratio <= 1.05 else "misses"
        print(f"{name[:3]}/(a) = {ratio:.3f} (median of paired ratios): {verdict} the 1.05 target")


def report_stages(engine: Engine, timed_calls: int, label: str) -> None:
    """The engine times its own stages into every audit record; the medians over the timed calls."""
    records = list(engine.audit.records())[-timed_calls:]
    stages: dict[str, list[float]] = {}
    for record in records:
        for stage, ms in record["body"]["timings_ms"].items():
            stages.setdefault(stage, []).append(ms)
    shown = ", ".join(f"{stage} {np.median(ms):.1f}" for stage, ms in stages.items())
    print(f"{label} engine stages, median ms: {shown}")


def report_own_time(engine: Engine, values: list[tuple[float, float]], direct_median: float, label: str) -> None:
    """The engine's own time per call (its wall time less the family's generate stage, as its audit record
    has it), against the direct call: the overhead without the family's own call-to-call spread."""
    records = list(engine.audit.records())[-len(values):]
    own = [wall - record["body"]["timings_ms"]["generate"] / 1000 for (wall, _), record in zip(values, records)]
    median = float(np.median(own))
    print(f"{label} engine's own time (call less the generate stage): median {median * 1000:.2f} ms, "
          f"p90 {float(np.percentile(own, 90)) * 1000:.2f} ms; (direct median + own median) / direct median = "
          f"{1 + median / direct_median:.3f}")


def profile(fn: Callable[[int, int], Any], rows: int, calls: int = 5) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    for seed in range(calls):
        fn(rows, 1000 + seed)
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(20)
    print(f"\ncProfile of (b) over {calls} calls, by own time:")
    print(text.getvalue())


if __name__ == "__main__":
    main()
