"""Keyed image watermark: a periodic spread-spectrum pattern in the luminance, found again after a crop.

How it works (all in torch, on the image's own device):

* The mark is a *tile* of TILE x TILE pixels repeated over the whole image. The tile is built in its 2-D
  Fourier domain from mid-frequency coefficients only (periods of PERIOD_MIN..PERIOD_MAX pixels: low enough to
  survive JPEG quality 50 and a resize to half size, high enough to stay out of the image's strongest content;
  the bins next to the axes, where the edges of the fold and of upright structures lie, are left out). A keyed
  permutation splits those coefficients into a **pilot** (known phasors weighted by frequency, used to find the
  tile again) and **payload channels** (the real and imaginary parts of the rest, each with a keyed sign).
* The payload is 32 bits, protected by a rate-1/3 convolutional code (constraint length 7, the 3GPP generators
  133/171/165, terminated: 114 coded bits) decoded with soft-decision Viterbi. Each coded bit owns about six
  channels per tile, and every tile of the image repeats them.
* Embedding is *informed* (improved spread spectrum): the detector's statistics are linear in the folded image,
  so the host image's own contribution to the pilot and to each coded bit is measured first and the energy is
  spent to bring each to a common margin (see `ImageMark.embed`). The same change is added to R, G and B (a
  change of luminance only), scaled to a target PSNR.

Detection folds the image (minus a blurred copy, which removes the low frequencies that would leak into the band)
onto one TILE x TILE cell and takes its spectrum. A crop shifts the tile cyclically, so correlating the pilot with
every cyclic shift at once (one inverse FFT) finds the offset; the payload channels are read at that offset and
decoded.

The p-value is that of the pilot peak: under "no watermark" the phases of the folded image relative to the keyed
pilot are uniform, so its correlation at one shift is close to N(0, 1) once normalised (see `_pilot_z_map`); the
maximum over the TILE**2 shifts and the two statistics is Bonferroni-corrected. benchmarks/bench_watermark_image.py
measures the false-positive rate this gives on unmarked photographs and generated images.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from pydantic import Field, SecretStr

from gensdk._markers import hookimpl
from gensdk.errors import DataError
from gensdk.outputs import Output
from gensdk.policy import Policy, PolicyOptions
from gensdk.request import GenerationContext
from gensdk.verdicts import Finding
from gensdk_watermark.keys import require, resolve_key

__all__ = [
    "MIN_SIDE",
    "PAYLOAD_BITS",
    "TILE",
    "ImageDetection",
    "ImageMark",
    "ImageWatermarkPolicy",
    "decode_image_file",
    "psnr",
]

TILE = 128  # period of the mark; a crop keeps full tiles as long as each side keeps >= TILE pixels
MIN_SIDE = TILE  # embedding needs at least one whole tile in each direction
PAYLOAD_BITS = 32
PERIOD_MIN, PERIOD_MAX = 5.0, 14.0  # pixels; see the module docstring
PILOT_SHARE = 1 / 3  # of the band's coefficients; the rest carry the payload
PILOT_ENERGY = 0.3  # share of the mark's energy in the pilot, before the host's pilot correlation is cancelled
PILOT_ENERGY_MAX = 0.6  # after: the payload keeps at least the rest
AMPLITUDE_FLOOR = 0.5  # of the blind amplitude, for every coded bit and the pilot (see ImageMark.embed)
AXIS_GAP = 2  # frequency bins next to the axes left out of the band
BLUR_SIGMA = 4.0  # pixels; the detector's pre-whitening high-pass
DEFAULT_PSNR_DB = 40.0

# Convolutional code: constraint length 7, rate 1/3, terminated with 6 zero bits.
_K = 7
_GENERATORS = (0o133, 0o171, 0o165)
CODED_BITS = (PAYLOAD_BITS + _K - 1) * len(_GENERATORS)


# -- the convolutional code -------------------------------------------------------------------------------------


def _parity(x: np.ndarray) -> np.ndarray:
    x = x.copy()
    out = np.zeros_like(x)
    while np.any(x):
        out ^= x & 1
        x >>= 1
    return out


@lru_cache(maxsize=1)
def _trellis() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each next state ns and each of its two predecessors: the predecessor state, the input bit, and the
    three code symbols (+-1) emitted on that branch."""
    n_states = 1 << (_K - 1)
    ns = np.arange(n_states)
    bit = ns >> (_K - 2)  # the input bit is the newest bit of the register, i.e. the top bit of ns
    prev = np.stack([((ns << 1) & (n_states - 1)) | 0, ((ns << 1) & (n_states - 1)) | 1], axis=1)
    register = (bit[:, None] << (_K - 1)) | prev  # (64, 2) full 7-bit registers
    symbols = np.stack([2 * _parity(register & g) - 1 for g in _GENERATORS], axis=-1)  # (64, 2, 3)
    return prev, np.broadcast_to(bit[:, None], prev.shape), symbols


def conv_encode(bits: np.ndarray) -> np.ndarray:
    """0/1 payload bits -> 0/1 coded bits (terminated)."""
    state, out = 0, []
    for b in [*map(int, bits), *([0] * (_K - 1))]:
        register = (b << (_K - 1)) | state
        out.extend(bin(register & g).count("1") & 1 for g in _GENERATORS)
        state = register >> 1
    return np.array(out, dtype=np.int64)


def viterbi_decode(soft: np.ndarray) -> np.ndarray:
    """Soft values (positive: coded bit 1) -> the most likely 0/1 payload bits."""
    prev, bit, symbols = _trellis()
    steps = len(soft) // len(_GENERATORS)
    soft = soft.reshape(steps, len(_GENERATORS))
    metric = np.full(1 << (_K - 1), -np.inf)
    metric[0] = 0.0  # the encoder starts in state 0
    choices = np.empty((steps, 1 << (_K - 1)), dtype=np.int64)
    for t in range(steps):
        candidates = metric[prev] + (symbols * soft[t]).sum(-1)  # (64, 2)
        choices[t] = candidates.argmax(1)
        metric = candidates.max(1)
    state, decoded = 0, []  # terminated: the encoder ends in state 0
    for t in range(steps - 1, -1, -1):
        c = choices[t, state]
        decoded.append(bit[state, c])
        state = prev[state, c]
    return np.array(decoded[::-1][:PAYLOAD_BITS], dtype=np.int64)


# -- the keyed layout -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    """Where the pilot and each coded bit live in the tile's rfft2 half-plane (shape TILE x TILE//2+1)."""

    pilot_index: np.ndarray  # flat indices of pilot coefficients
    pilot_phase: np.ndarray  # their unit phasors (complex)
    pilot_weight: np.ndarray  # matched-filter weight of each pilot coefficient (grows with frequency)
    channel_index: np.ndarray  # flat coefficient index of each payload channel
    channel_imag: np.ndarray  # bool: the channel is the imaginary part of its coefficient
    channel_sign: np.ndarray  # +-1
    channel_bit: np.ndarray  # which coded bit the channel carries


@lru_cache(maxsize=32)
def _layout(seed: int) -> _Layout:
    rng = np.random.default_rng(seed)
    u = np.fft.fftfreq(TILE) * TILE  # row frequencies, signed
    v = np.arange(TILE // 2 + 1)
    radius = np.hypot(u[:, None], v[None, :])
    band = (radius >= TILE / PERIOD_MAX) & (radius <= TILE / PERIOD_MIN)
    # Near the axes lie the streaks of the fold's edges (an image is not periodic) and of horizontal and
    # vertical structure; v = 0 and v = Nyquist also hold conjugate-symmetric (partly real) coefficients.
    band &= (np.abs(u)[:, None] > AXIS_GAP) & (v[None, :] > AXIS_GAP)
    band[:, -1] = False
    coefficients = rng.permutation(np.flatnonzero(band))
    n_pilot = int(len(coefficients) * PILOT_SHARE)
    pilot, payload = coefficients[:n_pilot], coefficients[n_pilot:]
    channels = np.concatenate([payload, payload])
    imag = np.concatenate([np.zeros(len(payload), bool), np.ones(len(payload), bool)])
    order = rng.permutation(len(channels))
    radius_of = radius.reshape(-1)
    return _Layout(
        pilot_index=pilot,
        pilot_phase=np.exp(2j * np.pi * rng.random(n_pilot)),
        # natural images' spectra fall like 1/f: weighting by f whitens the host for the linear statistic
        pilot_weight=radius_of[pilot] / radius_of[pilot].mean(),
        channel_index=channels[order],
        channel_imag=imag[order],
        channel_sign=rng.choice([-1.0, 1.0], size=len(channels)),
        channel_bit=np.arange(len(channels)) % CODED_BITS,
    )


def _spectra(seed: int, device: Any) -> tuple[Any, Any]:
    """The pilot's half-plane spectrum and, per payload channel, its unit spectrum value (flat index, value)."""
    import torch

    lay = _layout(seed)
    pilot = np.zeros(TILE * (TILE // 2 + 1), dtype=np.complex128)
    pilot[lay.pilot_index] = lay.pilot_phase * lay.pilot_weight
    channel_value = np.where(lay.channel_imag, 1j, 1.0) * lay.channel_sign
    return (
        torch.from_numpy(pilot.reshape(TILE, TILE // 2 + 1)).to(device=device, dtype=torch.complex64),
        torch.from_numpy(channel_value).to(device=device, dtype=torch.complex64),
    )


def _irfft_tile(spectrum: Any) -> Any:
    import torch

    return torch.fft.irfft2(spectrum, s=(TILE, TILE))


# -- embedding and detection --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageDetection:
    """What the detector read from one image."""

    detected: bool
    p_value: float
    z: float
    payload: str | None  # hex of the decoded 32 bits (None when not detected)
    offset: tuple[int, int]  # (dy, dx) of the tile grid found by the pilot
    channel_agreement: float  # share of coded bits whose sign agrees with the re-encoded decoded payload
    bit_accuracy: float | None  # against `expected_payload`, when one was given

    def to_dict(self) -> dict[str, Any]:
        return {
            "detected": self.detected, "p_value": self.p_value, "z": round(self.z, 3), "payload": self.payload,
            "offset": list(self.offset), "channel_agreement": round(self.channel_agreement, 4),
            "bit_accuracy": self.bit_accuracy,
        }


class ImageMark:
    """The image scheme under one key. `embed` and `detect` take (C, H, W) float tensors in [0, 1]."""

    def __init__(self, seed: int, psnr_db: float = DEFAULT_PSNR_DB, alpha: float = 1e-3):
        self.seed = seed
        self.psnr_db = psnr_db
        self.alpha = alpha  # p-value threshold of `detected`
        self._device_layouts: dict[str, dict[str, Any]] = {}

    @classmethod
    def from_key(cls, key: Any, **kwargs: Any) -> ImageMark:
        return cls(key.derive_int("image/tile/v1"), **kwargs)

    def _on(self, device: Any) -> dict[str, Any]:
        """The layout as tensors on `device` (built once per device)."""
        import torch

        name = str(device)
        if name not in self._device_layouts:
            lay = _layout(self.seed)
            pilot, channel_value = _spectra(self.seed, device)
            self._device_layouts[name] = {
                "pilot": pilot,
                "pilot_index": torch.from_numpy(lay.pilot_index).to(device),
                "pilot_phase": torch.from_numpy(lay.pilot_phase).to(device=device, dtype=torch.complex64),
                "pilot_weight": torch.from_numpy(lay.pilot_weight).to(device=device, dtype=torch.float32),
                "channel_index": torch.from_numpy(lay.channel_index).to(device),
                "channel_imag": torch.from_numpy(lay.channel_imag).to(device),
                "channel_sign": torch.from_numpy(lay.channel_sign).to(device=device, dtype=torch.float32),
                "channel_bit": torch.from_numpy(lay.channel_bit).to(device),
                "channel_value": channel_value,
                "bit_channels": torch.from_numpy(np.bincount(lay.channel_bit, minlength=CODED_BITS)).to(device=device, dtype=torch.float32),
            }
        return self._device_layouts[name]

    def _stats(self, spectrum: Any, t: dict[str, Any]) -> Any:
        """Linear correlation of each coded bit's channels with a folded spectrum: (CODED_BITS,) tensor."""
        import torch

        values = spectrum.reshape(-1)[t["channel_index"]]
        parts = torch.where(t["channel_imag"], values.imag, values.real) * t["channel_sign"]
        return torch.zeros(CODED_BITS, device=parts.device, dtype=parts.dtype).index_add_(0, t["channel_bit"], parts)

    def _pilot_stat(self, spectrum: Any, t: dict[str, Any]) -> float:
        """The weighted linear pilot correlation of a folded spectrum at shift 0."""
        values = spectrum.reshape(-1)[t["pilot_index"]] * t["pilot_phase"].conj()
        return float((values.real * t["pilot_weight"]).sum())

    def _bit_tile(self, amplitude: Any, t: dict[str, Any]) -> Any:
        """Spatial tile of the payload channels, coded bit j scaled by amplitude[j] (signed)."""
        import torch

        flat = torch.zeros(TILE * (TILE // 2 + 1), device=amplitude.device, dtype=torch.complex64)
        flat.index_add_(0, t["channel_index"], t["channel_value"] * amplitude[t["channel_bit"]].to(torch.complex64))
        return _irfft_tile(flat.reshape(TILE, TILE // 2 + 1))

    def embed(self, pixels: Any, payload: bytes) -> Any:
        """Return a marked copy of `pixels` (same device and dtype). Raises DataError when the image is too
        small to carry the mark or is not a 1-, 2-, 3- or 4-channel (C, H, W) tensor.

        Informed embedding: the detector's statistic of each coded bit is linear in the folded image, so the
        host image's own contribution is measured first and the bit's amplitude is chosen to bring the
        statistic to the same margin for every bit (improved spread spectrum). Bits the host already pushes
        the right way cost little; every bit keeps a floor of AMPLITUDE_FLOOR x the blind amplitude, which is
        what still works after a crop changes the host's contribution.
        """
        import torch

        channels, height, width = _check_shape(pixels)
        if min(height, width) < MIN_SIDE:
            raise DataError(f"image of {height}x{width} pixels is too small to carry the watermark (needs at least {MIN_SIDE}x{MIN_SIDE})")
        if len(payload) * 8 != PAYLOAD_BITS:
            raise DataError(f"the image payload is {PAYLOAD_BITS} bits, got {len(payload) * 8}")
        t = self._on(pixels.device)
        bits = np.unpackbits(np.frombuffer(payload, dtype=np.uint8)).astype(np.int64)
        sign = torch.from_numpy(2.0 * conv_encode(bits) - 1.0).to(device=pixels.device, dtype=torch.float32)
        reps = (math.ceil(height / TILE), math.ceil(width / TILE))

        def spread(tile: Any) -> Any:
            return tile.repeat(*reps)[:height, :width]

        host_spectrum = torch.fft.rfft2(_fold(_luminance(pixels)))
        energy = 10 ** (-self.psnr_db / 10)  # mean square of the whole mark
        # The pilot: its blind amplitude gives PILOT_ENERGY of the energy; the host's own pilot correlation is
        # then cancelled by adjusting that amplitude (one number), so every image starts from the same margin.
        pilot = _irfft_tile(t["pilot"])
        pilot_ms = float(pilot.pow(2).mean())
        blind = math.sqrt(PILOT_ENERGY * energy / pilot_ms)
        pilot_gain = self._pilot_stat(torch.fft.rfft2(_fold(spread(pilot))), t)
        pilot_amp = max(AMPLITUDE_FLOOR * blind, blind - self._pilot_stat(host_spectrum, t) / pilot_gain)
        pilot_amp = min(pilot_amp, math.sqrt(PILOT_ENERGY_MAX * energy / pilot_ms))  # the PSNR is a promise
        bits_budget = energy - pilot_amp**2 * pilot_ms
        host = self._stats(host_spectrum, t) * sign
        unit = self._bit_tile(sign, t)
        gain = self._stats(torch.fft.rfft2(_fold(spread(unit))), t) * sign  # detector response per unit amplitude
        per_bit = float(unit.pow(2).mean()) * t["bit_channels"] / t["bit_channels"].sum()  # mean square per unit amplitude
        amplitude = _informed_amplitudes(host, gain.clamp_min(1e-12), per_bit, bits_budget)
        pilot = pilot * pilot_amp
        delta = spread(pilot + self._bit_tile(amplitude * sign, t))
        colour = min(channels, 3) if channels != 2 else 1  # (L, A) and (R, G, B, A): leave alpha alone
        out = pixels.clone()
        out[:colour] = (pixels[:colour].float() + delta).clamp(0, 1).to(pixels.dtype)
        return out

    def detect(self, pixels: Any, expected_payload: bytes | None = None) -> ImageDetection:
        import torch

        _check_shape(pixels)
        t = self._on(pixels.device)
        spectrum = torch.fft.rfft2(_fold(_luminance(pixels)))
        z_map = _pilot_z_map(spectrum, t)
        peak = int(z_map.reshape(-1).argmax())
        dy, dx = divmod(peak, TILE)
        z = float(z_map.reshape(-1)[peak])
        # Union bound over the TILE**2 shifts and the two statistics (see _pilot_z_map).
        p_value = min(1.0, 2 * TILE * TILE * 0.5 * math.erfc(z / math.sqrt(2)))
        u = torch.fft.fftfreq(TILE, device=pixels.device)[:, None]
        v = torch.fft.rfftfreq(TILE, device=pixels.device)[None, :]
        aligned = spectrum * torch.exp(2j * math.pi * (u * dy + v * dx)).to(spectrum.dtype)
        soft = self._stats(aligned, t).double().cpu().numpy()
        decoded = viterbi_decode(soft)
        agreement = float(np.mean((soft > 0) == (conv_encode(decoded) == 1)))
        detected = p_value < self.alpha
        accuracy = None
        if expected_payload is not None:
            expected = np.unpackbits(np.frombuffer(expected_payload, dtype=np.uint8))
            accuracy = float(np.mean(expected == decoded))
        payload = np.packbits(decoded).tobytes().hex() if detected else None
        return ImageDetection(detected, p_value, z, payload, (dy, dx), agreement, accuracy)


def _pilot_z_map(spectrum: Any, t: dict[str, Any]) -> Any:
    """z-scores of the pilot at every cyclic shift of the tile: the larger of a phase-only correlation (each
    coefficient counts the same, robust to strong image content) and a frequency-weighted linear one (what
    the embedder's host cancellation acts on). Under "no watermark" the phases are uniform, so both are close
    to N(0, 1) at every shift: each phase-only term has variance 1/2, and the linear sum is normalised by its
    own variance given the magnitudes."""
    import torch

    flat = spectrum.reshape(-1)
    idx, phase, weight = t["pilot_index"], t["pilot_phase"], t["pilot_weight"]
    values = flat[idx] * phase.conj()
    n = len(idx)

    def correlation(terms: Any) -> Any:  # sum over pilot terms of Re(term * e^{2 pi i k.s / P}) for every s
        g = torch.zeros_like(flat)
        g[idx] = terms
        # irfft2 sums every half-plane term and its mirror image: P^2 / 2 * irfft2 = the sum of real parts
        return torch.fft.irfft2(g.reshape(spectrum.shape), s=(TILE, TILE)) * (TILE * TILE / 2)

    phase_only = correlation(values / values.abs().clamp_min(1e-12)) / math.sqrt(n / 2)
    weighted = values * weight
    linear = correlation(weighted) / weighted.abs().pow(2).sum().div(2).sqrt().clamp_min(1e-12)
    return torch.maximum(phase_only, linear)


def _informed_amplitudes(host: Any, gain: Any, per_bit: Any, budget: float) -> Any:
    """Amplitude of each coded bit: enough to lift (host + amplitude * gain) to a common margin, never less
    than the floor, with the margin set by bisection so the mark's mean square equals `budget`."""
    floor = AMPLITUDE_FLOOR * math.sqrt(budget / float(per_bit.sum()))

    def amplitudes(margin: float) -> Any:
        return ((margin - host) / gain).clamp_min(floor)

    lo, hi = 0.0, float((host.abs() + gain * floor * 100).max())
    for _ in range(40):
        mid = (lo + hi) / 2
        if float((amplitudes(mid) ** 2 * per_bit).sum()) > budget:
            hi = mid
        else:
            lo = mid
    return amplitudes(lo)


def _check_shape(pixels: Any) -> tuple[int, int, int]:
    if getattr(pixels, "ndim", None) != 3 or pixels.shape[0] not in (1, 2, 3, 4):
        raise DataError(f"expected image pixels as a (C, H, W) tensor with C in 1..4, got shape {tuple(getattr(pixels, 'shape', ()))}")
    if not pixels.is_floating_point():
        raise DataError(f"expected float pixels in [0, 1], got {pixels.dtype}")
    return tuple(pixels.shape)  # type: ignore[return-value]


def _luminance(pixels: Any) -> Any:
    px = pixels.float()
    if px.shape[0] >= 3:
        return 0.299 * px[0] + 0.587 * px[1] + 0.114 * px[2]
    return px[0]


def _fold(luma: Any) -> Any:
    """High-pass the luminance, then sum it onto one TILE x TILE cell (zero-padding partial tiles)."""
    import torch
    import torch.nn.functional as F

    radius = int(3 * BLUR_SIGMA)
    x = torch.arange(-radius, radius + 1, device=luma.device, dtype=luma.dtype)
    kernel = torch.exp(-0.5 * (x / BLUR_SIGMA) ** 2)
    kernel = kernel / kernel.sum()
    img = luma[None, None]
    padded = F.pad(img, (radius, radius, radius, radius), mode="replicate")
    blurred = F.conv2d(F.conv2d(padded, kernel.view(1, 1, 1, -1)), kernel.view(1, 1, -1, 1))
    residual = (img - blurred)[0, 0]
    height, width = residual.shape
    ph, pw = (-height) % TILE, (-width) % TILE
    residual = F.pad(residual, (0, pw, 0, ph))
    return residual.reshape((height + ph) // TILE, TILE, (width + pw) // TILE, TILE).sum(dim=(0, 2))


def psnr(original: Any, marked: Any) -> float:
    """PSNR in dB of two images in [0, 1] (tensors, on any device, or arrays of the same shape)."""
    if hasattr(original, "double"):
        mse = float((original.double() - marked.double()).pow(2).mean())
    else:
        mse = float(np.mean((np.asarray(original, dtype=np.float64) - np.asarray(marked, dtype=np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def decode_image_file(path: Any) -> Any:
    """Read an image file as a (C, H, W) float tensor in [0, 1]: 8- and 16-bit, grey, RGB, with or without
    alpha, palette images. Unreadable files are a DataError."""
    import torch
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode == "P":
                img = img.convert("RGBA" if "transparency" in img.info else "RGB")
                mode = img.mode
            if mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(img, dtype=np.float64) / (65535.0 if mode.startswith("I;16") else max(1.0, float(np.asarray(img).max())))
                arr = arr[None]
            elif mode == "F":
                arr = np.asarray(img, dtype=np.float64)[None]
            else:
                if mode not in ("L", "LA", "RGB", "RGBA"):
                    img = img.convert("RGB")
                arr = np.asarray(img, dtype=np.float64) / 255.0
                arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from None
    return torch.from_numpy(np.ascontiguousarray(arr)).float()


# -- the policy ---------------------------------------------------------------------------------------------------


class ImageWatermarkPolicy(Policy):
    """Watermarks generated images on the engine's device (policy id ``watermark-image``).

    The payload is `payload` (8 hex digits) when configured, otherwise a per-output id derived from the
    generation seed and the output's position, recorded in the audit trail so that a decoded payload leads back
    to its record. Each marked image is checked by running the detector on its 8-bit form; an image too small
    to carry the mark, or one whose mark does not verify, is an error, so the output is blocked.
    """

    id = "watermark-image"
    version = "1"
    modalities = frozenset({"image"})

    class Options(PolicyOptions):
        key_file: str | None = None
        key: SecretStr | None = None  # hex; never written to describe() or the audit trail
        psnr_db: float = Field(DEFAULT_PSNR_DB, ge=30, le=60)  # strength: PSNR of the mark against the image
        payload: str | None = Field(None, pattern=r"^[0-9a-fA-F]{8}$")
        alpha: float = Field(1e-3, gt=0, lt=1)  # p-value threshold of detection

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        require("torch", "PIL", purpose="The image watermark")
        o = self.options
        self.key = resolve_key(o.key, o.key_file, what=f"policy {self.id!r}")
        self.mark = ImageMark.from_key(self.key, psnr_db=o.psnr_db, alpha=o.alpha)

    def payload_for(self, context: GenerationContext, index: int) -> bytes:
        if self.options.payload:
            return bytes.fromhex(self.options.payload)
        return hashlib.sha256(f"gensdk-image-payload:{context.seed}:{context.batch_offset + index}".encode()).digest()[:4]

    @hookimpl
    def transform_output(self, outputs: list[Output], context: GenerationContext) -> list[Finding]:
        findings = []
        for i, output in enumerate(outputs):
            payload = self.payload_for(context, i)
            original = output.pixels  # type: ignore[attr-defined]
            marked = self.mark.embed(original, payload)
            check = self.mark.detect((marked * 255).round() / 255, payload)  # as it will be written (8 bit)
            if not check.detected or check.bit_accuracy != 1.0:
                raise DataError(f"the image watermark does not verify after embedding (p = {check.p_value:.3g}, "
                                f"bit accuracy {check.bit_accuracy}); the image is blocked")
            details = {"policy": self.id, "scheme": "tile-ss", "key_id": self.key.key_id, "payload": payload.hex(),
                       "psnr_db": round(psnr(original, marked), 2),
                       "self_check": check.to_dict()}
            output.pixels = marked  # type: ignore[attr-defined]
            output.metadata["watermark"] = details
            findings.append(Finding("watermark-embedded", f"image watermarked with payload {payload.hex()} (key {self.key.key_id})",
                                    output_index=i, details=details))
        return findings
