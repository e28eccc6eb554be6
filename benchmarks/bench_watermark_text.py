"""Text watermark: detection quality on a model gensdk trained, and generation overhead on GPT-2-small.

Runs in the project's own virtual environment (no peer tool needed: transformers' own KGW `WatermarkingConfig`
and SynthID-Text are the side-by-side references):

    .venv/bin/python benchmarks/bench_watermark_text.py                 # both parts
    .venv/bin/python benchmarks/bench_watermark_text.py --part quality --samples 200
    .venv/bin/python benchmarks/bench_watermark_text.py --part overhead --reps 3 --new-tokens 32

Quality: gensdk trains a small GPT-2 (byte-level BPE, 2 layers of width 96) on TinyShakespeare (or on
a generated English-like text when ../shared is absent) and keeps it under --model-dir. It samples `--samples`
continuations of 200 new tokens with the policy's KGW processor and as many without, decodes them to text and
detects from the *text* (re-tokenized, as a compliance team would). Reported: TPR at the policy's threshold
(p < 1e-3) and the false-positive rate measured at that threshold on (a) the unwatermarked generations and
(b) every 200-token window of the held-out human text; then TPR after replacing 20% of the tokens at random;
the same for the SynthID scheme (mean g-value detector).

Overhead: a GPT-2-small-shaped model (12 layers, width 768, vocabulary 50257, random weights), batch 8, the
same prompts and seed for every variant: no watermark; gensdk KGW; transformers' KGW (WatermarkingConfig,
lefthash, context 1, gamma 0.25, delta 2); SynthID (transformers' processor, depth 30, as gensdk's synthid
scheme uses it). Repetitions alternate the variants; the ratio of medians to the unwatermarked run is
reported. Target: gensdk KGW <= 1.05x.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
for folder in ("plugins", "policies"):  # an editable install made before these packages existed
    if str(REPO / folder) not in sys.path:
        sys.path.insert(0, str(REPO / folder))

SHAKESPEARE = REPO.parent / "shared" / "data" / "tinyshakespeare.txt"
KEY = bytes.fromhex("5eed" * 16)
ALPHA = 1e-3
PROMPTS = ["ROMEO:\n", "JULIET:\nO ", "First Citizen:\n", "KING RICHARD II:\n", "MENENIUS:\nWhat ", "NURSE:\n",
           "HAMLET:\nTo ", "LADY CAPULET:\n"]


def training_text(tmp: Path) -> tuple[Path, str]:
    """(training file, held-out text). The held-out tail is never trained on."""
    if SHAKESPEARE.is_file():
        text = SHAKESPEARE.read_text(encoding="utf-8")
    else:
        rng = random.Random(0)
        words = "the and to of my thou thee love night day sweet fair good lord what is this that not be".split()
        text = "\n".join(" ".join(rng.choice(words) for _ in range(rng.randint(5, 12))) + "." for _ in range(20000))
    cut = int(len(text) * 0.8)
    path = tmp / "train.txt"
    path.write_text(text[:cut], encoding="utf-8")
    return path, text[cut:]


def trained_model(model_dir: Path, steps: int) -> Any:
    from gensdk_llm import LLMFamily

    if not (model_dir / "config.json").is_file():
        data, _ = training_text(model_dir.parent)
        options = dict(vocab_size=2048, n_layer=2, n_embd=96, n_head=4, context=256, batch_size=16, steps=steps,
                       minutes=5, learning_rate=3e-3, license="public domain", data_source=str(SHAKESPEARE))
        started = time.perf_counter()
        LLMFamily(train_options=options).fit(data).save(model_dir)
        print(f"trained {model_dir} in {time.perf_counter() - started:.0f} s")
    return LLMFamily.load(model_dir)


def sample(lm: Any, processors: list[Any], n: int, new_tokens: int, seed: int, batch: int = 50) -> list[str]:
    import torch
    from transformers import LogitsProcessorList

    texts: list[str] = []
    for start in range(0, n, batch):
        size = min(batch, n - start)
        torch.manual_seed(seed + start)
        prompts = [PROMPTS[(start + i) % len(PROMPTS)] for i in range(size)]
        enc = lm.tokenizer(prompts, return_tensors="pt", padding=True)
        procs = [p() for p in processors]  # fresh (SynthID is stateful)
        out = lm.model.generate(**enc, do_sample=True, top_k=0, temperature=1.0, max_new_tokens=new_tokens,
                                min_new_tokens=new_tokens, logits_processor=LogitsProcessorList(procs),
                                pad_token_id=lm.tokenizer.pad_token_id)
        texts += lm.tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    return texts


def replace_tokens(ids: list[int], share: float, vocab: int, rng: random.Random) -> list[int]:
    return [rng.randrange(vocab) if rng.random() < share else t for t in ids]


def quality(args: argparse.Namespace) -> None:
    import torch

    from gensdk_watermark.keys import WatermarkKey
    from gensdk_watermark.text import KGW, SynthID

    torch.set_num_threads(args.threads)
    lm = trained_model(Path(args.model_dir), args.train_steps)
    tok = lm.tokenizer
    vocab = len(tok)
    key = WatermarkKey(KEY)
    _, heldout = training_text(Path(args.model_dir).parent)
    human_ids = tok(heldout, add_special_tokens=False)["input_ids"]
    windows = [human_ids[i:i + 200] for i in range(0, len(human_ids) - 200, 200)]
    rows = []
    for name, scheme, processor in (("gensdk KGW (gamma 0.25, delta 2, h 1)", KGW(key), lambda: KGW(key).processor()),
                                    ("SynthID-Text (depth 30, n-gram 5)", SynthID(key), lambda: SynthID(key).processor())):
        started = time.perf_counter()
        marked = sample(lm, [processor], args.samples, 200, seed=1)
        plain = sample(lm, [], args.samples, 200, seed=100_000)

        def detected(texts_or_ids: list[Any], ids: bool = False, scheme: Any = scheme) -> list[bool]:
            out = []
            for item in texts_or_ids:
                token_ids = item if ids else tok(item, add_special_tokens=False)["input_ids"]
                out.append(scheme.detect(token_ids, ALPHA).detected)
            return out

        rng = random.Random(0)
        attacked = [replace_tokens(tok(t, add_special_tokens=False)["input_ids"], 0.2, vocab, rng) for t in marked]
        rows.append({
            "scheme": name,
            "tpr": statistics.mean(detected(marked)),
            "fpr_generated": statistics.mean(detected(plain)),
            "fpr_human": statistics.mean(detected(windows, ids=True)),
            "tpr_20pct_replaced": statistics.mean(detected(attacked, ids=True)),
            "human_windows": len(windows),
            "seconds": time.perf_counter() - started,
        })
    print(f"\nQuality: {args.samples} watermarked and {args.samples} unwatermarked 200-token samples from a gensdk-trained "
          f"GPT-2 ({vocab} tokens); threshold p < {ALPHA:g}; detection from the decoded text")
    print("| scheme | TPR | FPR, unwatermarked generations | FPR, human text windows | TPR, 20% tokens replaced |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['scheme']} | {r['tpr']:.3f} | {r['fpr_generated']:.3f} | {r['fpr_human']:.3f} ({r['human_windows']} windows) "
              f"| {r['tpr_20pct_replaced']:.3f} |")


def overhead(args: argparse.Namespace) -> None:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, LogitsProcessorList, WatermarkingConfig

    from gensdk_watermark.keys import WatermarkKey
    from gensdk_watermark.text import KGW, SynthID

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config()).eval()  # GPT-2 small: 12 layers, width 768, vocabulary 50257
    model.generation_config.eos_token_id = None
    lengths = [4, 9, 3, 12, 1, 8, 5, 14]
    ids = torch.zeros(8, max(lengths), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, length in enumerate(lengths):  # left padded, as the LLM family does
        ids[row, -length:] = torch.randint(0, 50257, (length,))
        mask[row, -length:] = 1
    key = WatermarkKey(KEY)
    kgw, synthid = KGW(key), SynthID(key)
    variants: dict[str, Any] = {
        "none": {},
        "gensdk KGW": {"logits_processor": lambda: LogitsProcessorList([kgw.processor()])},
        "transformers KGW (WatermarkingConfig)": {"watermarking_config": lambda: WatermarkingConfig(
            greenlist_ratio=0.25, bias=2.0, hashing_key=15485863, seeding_scheme="lefthash", context_width=1)},
        "SynthID-Text (transformers processor)": {"logits_processor": lambda: LogitsProcessorList([synthid.processor()])},
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    for rep in range(args.reps + 1):  # the first round warms up and is not counted
        for name, extra in variants.items():
            kwargs = {k: v() for k, v in extra.items()}
            torch.manual_seed(1234)
            started = time.perf_counter()
            with torch.inference_mode():
                model.generate(input_ids=ids, attention_mask=mask, do_sample=True, top_k=0, max_new_tokens=args.new_tokens,
                               min_new_tokens=args.new_tokens, pad_token_id=0, **kwargs)
            if rep:
                times[name].append(time.perf_counter() - started)
    base = statistics.median(times["none"])
    print(f"\nOverhead: GPT-2-small architecture, CPU ({args.threads} thread), batch 8, {args.new_tokens} new tokens, "
          f"median of {args.reps} alternating repetitions")
    print("| variant | median s | x unwatermarked |")
    print("|---|---|---|")
    for name, values in times.items():
        print(f"| {name} | {statistics.median(values):.2f} | {statistics.median(values) / base:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["quality", "overhead", "both"], default="both")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--model-dir", default="/tmp/gensdk-bench/watermark-lm/model")
    parser.add_argument("--train-steps", type=int, default=600)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier on a shared machine)")
    args = parser.parse_args()
    Path(args.model_dir).parent.mkdir(parents=True, exist_ok=True)
    if args.part in ("quality", "both"):
        quality(args)
    if args.part in ("overhead", "both"):
        overhead(args)


if __name__ == "__main__":
    main()
