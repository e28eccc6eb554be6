"""Image watermark side by side with invisible-watermark (dwtDct, dwtDctSvd) on real and generated images.

The peers live in a separate virtual environment, never in the project's (they are not gensdk dependencies):

    python3 -m venv /tmp/wm-bench-venv
    /tmp/wm-bench-venv/bin/pip install torch==2.13.0          # first: the CPU build on this machine
    /tmp/wm-bench-venv/bin/pip install pluggy pydantic click rich platformdirs cryptography numpy pandas \\
        scikit-learn safetensors pillow
    /tmp/wm-bench-venv/bin/pip install --no-deps invisible-watermark   # its torch/onnx deps serve only RivaGAN
    /tmp/wm-bench-venv/bin/pip install opencv-python-headless PyWavelets scikit-image
    /tmp/wm-bench-venv/bin/python benchmarks/bench_watermark_image.py

gensdk itself is imported from this checkout (no install needed).

Images: scikit-learn's two sample photographs (427 x 640), the RGB and greyscale photographs of scikit-image's
`data` module (512 x 512 and others, greyscale ones replicated to RGB), and generated images: 512 x 512
compositional-pattern-producing-network renders (a random MLP over pixel coordinates, the classic "generated
art") and smooth random fields as the test family draws them. Each gets a random 32-bit payload.

Attacks (as the issue states them): JPEG quality 50 (Pillow); resize to half and back (Pillow bicubic);
Gaussian noise sigma 5 (of 255); brightness +20; center crop keeping 80% of each side, not resized back.
Reported per method: PSNR of the marked image, mean bit accuracy of the 32-bit payload per attack, gensdk's
detection rate at its threshold (p < 1e-3), the false-positive rate on unmarked images (crops, flips and the
full images, two keys), and embed + detect time at 512 x 512 (median of alternating repetitions; one torch
thread, as a policy runs next to a model on a shared machine).
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

REPO = Path(__file__).resolve().parents[1]
for folder in (REPO, REPO / "policies"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

ALPHA = 1e-3


# -- images -------------------------------------------------------------------------------------------------------


def real_images() -> list[tuple[str, np.ndarray]]:
    from sklearn.datasets import load_sample_images

    data = load_sample_images()
    images = [(Path(name).stem, img) for name, img in zip(data.filenames, data.images, strict=True)]
    try:
        import skimage.data as sd
    except ImportError:
        print("scikit-image not installed: its photographs are skipped")
        return images
    for name in ("astronaut", "camera", "coffee", "chelsea", "rocket", "immunohistochemistry", "cat", "brick",
                 "grass", "gravel", "moon", "page", "text", "retina", "hubble_deep_field", "colorwheel"):
        try:
            img = getattr(sd, name)()
        except Exception:  # noqa: BLE001 - a data file that skimage would have to download
            continue
        if img.dtype != np.uint8:
            continue
        img = np.stack([img] * 3, -1) if img.ndim == 2 else img[..., :3]
        images.append((name, np.ascontiguousarray(img)))
    return images


def generated_images(count: int, seed: int = 0) -> list[tuple[str, np.ndarray]]:
    import torch
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(seed)
    out = []
    y, x = torch.meshgrid(torch.linspace(-1, 1, 512), torch.linspace(-1, 1, 512), indexing="ij")
    coords = torch.stack([x, y, torch.sqrt(x**2 + y**2)], -1).reshape(-1, 3)
    for i in range(count):
        if i % 2 == 0:  # CPPN: random tanh MLP over (x, y, r)
            h = coords * (torch.rand(1, generator=gen) * 4 + 1)
            for _ in range(4):
                h = torch.tanh(h @ torch.randn(h.shape[1], 24, generator=gen) * 1.5)
            rgb = torch.sigmoid(h @ torch.randn(24, 3, generator=gen) * 2).reshape(512, 512, 3)
            name = f"cppn-{i}"
        else:  # smooth random field with fine grain, as the test image family draws
            coarse = torch.rand(1, 3, 12, 12, generator=gen)
            rgb = (F.interpolate(coarse, size=(512, 512), mode="bicubic", align_corners=False)[0] * 0.8
                   + torch.rand(3, 512, 512, generator=gen) * 0.15).clamp(0, 1).permute(1, 2, 0)
            name = f"field-{i}"
        out.append((name, (rgb * 255).round().byte().numpy()))
    return out


# -- attacks ------------------------------------------------------------------------------------------------------


def jpeg(a: np.ndarray) -> np.ndarray:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", quality=50)
    return np.asarray(Image.open(buf).convert("RGB"))


def half_and_back(a: np.ndarray) -> np.ndarray:
    from PIL import Image

    h, w = a.shape[:2]
    return np.asarray(Image.fromarray(a).resize((w // 2, h // 2), Image.BICUBIC).resize((w, h), Image.BICUBIC))


def noise(a: np.ndarray) -> np.ndarray:
    return np.clip(a + np.random.default_rng(7).normal(0, 5, a.shape), 0, 255).round().astype(np.uint8)


def brighter(a: np.ndarray) -> np.ndarray:
    return np.clip(a.astype(int) + 20, 0, 255).astype(np.uint8)


def center_crop(a: np.ndarray) -> np.ndarray:
    h, w = a.shape[:2]
    ch, cw = round(h * 0.8), round(w * 0.8)
    return np.ascontiguousarray(a[(h - ch) // 2:(h - ch) // 2 + ch, (w - cw) // 2:(w - cw) // 2 + cw])


ATTACKS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "none": lambda a: a, "JPEG 50": jpeg, "resize 1/2 and back": half_and_back, "noise sigma 5": noise,
    "brightness +20": brighter, "center crop 80%": center_crop,
}


# -- methods ------------------------------------------------------------------------------------------------------


class Gensdk:
    name = "gensdk tile-ss"

    def __init__(self) -> None:
        from gensdk_watermark.image import ImageMark
        from gensdk_watermark.keys import WatermarkKey

        self.mark = ImageMark.from_key(WatermarkKey(bytes(range(32))), alpha=ALPHA)

    @staticmethod
    def _t(a: np.ndarray) -> Any:
        import torch

        return torch.from_numpy(a.astype(np.float32) / 255).permute(2, 0, 1).contiguous()

    def embed(self, a: np.ndarray, payload: bytes) -> np.ndarray:
        return (self.mark.embed(self._t(a), payload).clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()

    def decode(self, a: np.ndarray, payload: bytes) -> tuple[float, bool, float]:
        d = self.mark.detect(self._t(a), payload)
        return d.bit_accuracy or 0.0, d.detected, d.p_value


class InvisibleWatermark:
    def __init__(self, method: str) -> None:
        self.method = method
        self.name = f"invisible-watermark {method}"

    def embed(self, a: np.ndarray, payload: bytes) -> np.ndarray | None:
        from imwatermark import WatermarkEncoder

        if a.shape[0] * a.shape[1] < 256 * 256:
            return None  # it refuses images under 256 x 256 in area

        encoder = WatermarkEncoder()
        encoder.set_watermark("bits", [int(b) for b in np.unpackbits(np.frombuffer(payload, np.uint8))])
        return encoder.encode(a[:, :, ::-1].copy(), self.method)[:, :, ::-1].copy()  # it works in BGR

    def decode(self, a: np.ndarray, payload: bytes) -> tuple[float | None, bool, float]:
        from imwatermark import WatermarkDecoder

        try:
            bits = np.array(WatermarkDecoder("bits", 32).decode(a[:, :, ::-1].copy(), self.method), dtype=np.uint8)
        except RuntimeError:  # "image too small, should be larger than 256x256" (in area)
            return None, False, float("nan")
        expected = np.unpackbits(np.frombuffer(payload, np.uint8))
        return float(np.mean(bits == expected)), False, float("nan")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


# -- runs -----------------------------------------------------------------------------------------------------------


def robustness(methods: list[Any], images: list[tuple[str, np.ndarray]], label: str) -> None:
    rng = np.random.default_rng(0)
    payloads = [rng.bytes(4) for _ in images]
    print(f"\n{label}: {len(images)} images; mean bit accuracy of the 32-bit payload (gensdk: share detected at p < {ALPHA:g})")
    print("| method | PSNR min / mean dB | " + " | ".join(ATTACKS) + " |")
    print("|---|---|" + "---|" * len(ATTACKS))
    for method in methods:
        psnrs, acc, det = [], {k: [] for k in ATTACKS}, {k: [] for k in ATTACKS}
        worst: dict[str, tuple[float, str]] = {}
        refused = {k: 0 for k in ATTACKS}
        for (name, img), payload in zip(images, payloads, strict=True):
            marked = method.embed(img, payload)
            if marked is None:
                for attack in ATTACKS:
                    refused[attack] += 1
                continue
            psnrs.append(psnr(img, marked))
            for attack, fn in ATTACKS.items():
                a, d, _ = method.decode(fn(marked), payload)
                if a is None:
                    refused[attack] += 1
                    continue
                acc[attack].append(a)
                det[attack].append(d)
                worst[attack] = min(worst.get(attack, (2.0, "")), (a, name))
        cells = []
        for attack in ATTACKS:
            cell = f"{statistics.mean(acc[attack]):.3f}" + (f" [{refused[attack]} refused]" if refused[attack] else "")
            if isinstance(method, Gensdk):
                cell += f" ({statistics.mean(det[attack]):.2f})"
            cells.append(cell)
        print(f"| {method.name} | {min(psnrs):.1f} / {statistics.mean(psnrs):.1f} | " + " | ".join(cells) + " |")
        low = {k: v for k, v in worst.items() if v[0] < 0.95}
        if low:
            print("|   worst images | | " + " | ".join(f"{low[k][1]} {low[k][0]:.2f}" if k in low else "" for k in ATTACKS) + " |")


def false_positives(images: list[tuple[str, np.ndarray]], samples: int) -> None:
    from gensdk_watermark.image import ImageMark

    rng = np.random.default_rng(3)
    marks = [Gensdk().mark, ImageMark(987654321)]
    p_values = []
    for i in range(samples):
        _, img = images[i % len(images)]
        h, w = img.shape[:2]
        size = int(rng.integers(160, min(h, w) + 1))
        y, x = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
        crop = img[y:y + size, x:x + size]
        crop = crop[:, ::-1] if i % 3 == 1 else crop[::-1] if i % 3 == 2 else crop
        p_values.append(marks[i % 2].detect(Gensdk._t(np.ascontiguousarray(crop))).p_value)
    p = np.array(p_values)
    print(f"\nFalse positives, gensdk, {samples} unmarked crops/flips of the real and generated images, two keys:")
    print("| threshold | measured FPR |")
    print("|---|---|")
    for threshold in (ALPHA, 1e-2, 5e-2):
        print(f"| p < {threshold:g} | {np.mean(p < threshold):.4f} |")
    print(f"smallest p-value seen: {p.min():.3g}")


def timing(methods: list[Any], reps: int) -> None:
    import skimage.data as sd

    img = np.ascontiguousarray(sd.astronaut())  # 512 x 512 RGB
    payload = bytes.fromhex("a5c3e1f0")
    times: dict[str, list[float]] = {m.name: [] for m in methods}
    for rep in range(reps + 1):
        for method in methods:
            started = time.perf_counter()
            marked = method.embed(img, payload)
            method.decode(marked, payload)
            if rep:
                times[method.name].append(time.perf_counter() - started)
    print(f"\nEmbed + detect at 512 x 512 (median of {reps} alternating repetitions, one thread):")
    print("| method | ms | x dwtDctSvd |")
    print("|---|---|---|")
    svd = statistics.median(times["invisible-watermark dwtDctSvd"])
    for name, values in times.items():
        print(f"| {name} | {statistics.median(values) * 1000:.0f} | {statistics.median(values) / svd:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generated", type=int, default=8, help="generated 512 x 512 images")
    parser.add_argument("--fp-samples", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args()

    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    methods = [Gensdk(), InvisibleWatermark("dwtDct"), InvisibleWatermark("dwtDctSvd")]
    real, generated = real_images(), generated_images(args.generated)
    robustness(methods, real, "Real photographs")
    robustness(methods, generated, "Generated images")
    false_positives(real + generated, args.fp_samples)
    timing(methods, args.reps)


if __name__ == "__main__":
    main()
