"""What a table family keeps of its training data so that generated rows can be checked for memorisation.

A `TrainingReference` holds the training rows and a held-out sample (rows the model never saw), both encoded
as float32 vectors the same way: numeric columns standardised by the training rows' mean and deviation,
categorical and boolean columns one-hot. The distance of a generated row to its closest training record
(DCR) means something only next to the DCRs of the held-out rows: a held-out row is a fresh draw from the same
population, so a generated row closer to the training data than (say) 99% of held-out rows are is closer than
a model that generalises has reason to be.

    ref = TrainingReference.build(schema, train_frame, holdout_frame)
    ref.save(model_dir)                        # reference.safetensors + reference.json
    ref = TrainingReference.load(model_dir)    # None when the directory has no reference
    dcr = ref.distances_to_closest(rows, device="cpu")

Nearest neighbours are found with torch on the engine's device in blocks of query rows sized to a memory budget,
so 100,000 rows against 30,000 training rows never hold more than one (block x training rows) matrix.

An `ImageReference` is the same machinery for image families: its vectors are flattened pixels in [0, 1],
area-averaged down to at most `IMAGE_SIDE` x `IMAGE_SIDE` per channel first, so a reference costs at most
16 * 16 * 4 bytes = 1 KiB per greyscale image (3 KiB in colour) whatever the training resolution.

    ref = ImageReference.build(train_pixels, holdout_pixels)   # (N, C, H, W) in [0, 1]
    dcr = ref.distances_to_closest(ref.encode(pixels))
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gensdk.errors import DataError, ModelLoadError
from gensdk.tabular import TableSchema

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["IMAGE_SIDE", "REFERENCE_META", "REFERENCE_NAME", "ImageReference", "TrainingReference"]

REFERENCE_NAME = "reference.safetensors"
REFERENCE_META = "reference.json"
FORMAT_VERSION = 1
# Memory one block of the distance matrix may take (float32): 64 MiB is 560 query rows against 30,000.
DEFAULT_BLOCK_BYTES = 64 * 2**20
# Encoded rows that hash equal and lie this close are the same record (float32 round-off of the matmul form).
EXACT_TOLERANCE = 1e-3
# Groups with more training rows than this are searched with a matrix product, smaller ones pair by pair.
BIG_GROUP = 256
# Random odd 64-bit multipliers for row hashing; fixed so hashes agree between runs and machines.
_HASH_SEED = 0x5EED
# Images are compared at most this many pixels a side: copies (even noisy ones) stay copies when area-averaged,
# and the reference stays small (1 KiB a greyscale image) at any training resolution.
IMAGE_SIDE = 16
# Image distances under this are measured again exactly: well above the matmul form's round-off at 768 values.
NEAR_RECHECK = 0.1


@dataclass
class TrainingReference:
    schema: TableSchema | None  # None for a reference of images (ImageReference)
    center: np.ndarray  # (numeric,) float64: training means of the numeric columns
    scale: np.ndarray  # (numeric,) float64: training deviations (1 for constant columns)
    training: np.ndarray  # (n_train, width) float32
    holdout: np.ndarray  # (n_holdout, width) float32
    holdout_dcr: np.ndarray = field(default=None)  # type: ignore[assignment]  # (n_holdout,) float32
    _device_cache: dict[str, Any] = field(default_factory=dict, repr=False)
    _row_hashes: np.ndarray | None = field(default=None, repr=False)

    # -- building -------------------------------------------------------------------------------------------

    @classmethod
    def build(cls, schema: TableSchema, training: pd.DataFrame, holdout: pd.DataFrame, device: str = "cpu") -> TrainingReference:
        """Encode both parts with the training part's scaling and measure the held-out rows' DCRs."""
        if len(training) == 0 or len(holdout) == 0:
            raise DataError(f"a training reference needs training and held-out rows (got {len(training)} and {len(holdout)})")
        numeric = [c.name for c in schema.columns if c.numeric]
        values = training[numeric].to_numpy(dtype=np.float64)
        center = values.mean(axis=0) if numeric else np.zeros(0)
        scale = values.std(axis=0) if numeric else np.zeros(0)
        ref = cls(schema, center, np.where(scale > 0, scale, 1.0), np.zeros((0, 0), np.float32), np.zeros((0, 0), np.float32))
        ref.training = ref.encode(training)
        ref.holdout = ref.encode(holdout)
        ref.holdout_dcr = ref.distances_to_closest(ref.holdout, device=device)
        return ref

    @property
    def width(self) -> int:
        return int(self.training.shape[1])

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        """Rows as float32 vectors: standardised numbers, then one one-hot block per categorical column
        (a category the training data did not have encodes as an all-zero block)."""
        import pandas as pd

        missing = [c.name for c in self.schema.columns if c.name not in frame.columns]
        if missing:
            raise DataError(f"rows to check lack the training columns {missing}")
        numeric = [c.name for c in self.schema.columns if c.numeric]
        blocks = []
        if numeric:
            try:
                values = frame[numeric].to_numpy(dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise DataError(f"numeric columns of the rows to check are not numbers: {exc}") from None
            blocks.append(((values - self.center) / self.scale).astype(np.float32))
        for col in self.schema.columns:
            if col.numeric:
                continue
            codes = pd.Index([str(c) for c in col.categories]).get_indexer(frame[col.name].astype(str).to_numpy())
            onehot = np.zeros((len(frame), len(col.categories) + 1), np.float32)
            # Categories compare as strings: a JSON round trip may turn a category's type into another.
            # Code -1 (a category training did not have) lands in the last column, which is dropped.
            onehot[np.arange(len(frame)), codes] = 1.0
            blocks.append(onehot[:, :-1])
        return np.ascontiguousarray(np.concatenate(blocks, axis=1) if blocks else np.zeros((len(frame), 0), np.float32))

    # -- distances ------------------------------------------------------------------------------------------

    def distances_to_closest(
        self,
        rows: pd.DataFrame | np.ndarray,
        device: str = "cpu",
        block_bytes: int = DEFAULT_BLOCK_BYTES,
        cap: float | None = None,
    ) -> np.ndarray:
        """Euclidean distance of each row to its closest training record, as float32 (n,).

        With `cap` (a distance below the categorical gap), only distances under `cap` are needed: any other
        is reported as +inf. Two rows that differ in one category are at least sqrt(2) apart (two one-hot
        entries differ by 1), so below that gap a row can only be close to training rows with exactly its
        categories, and the search runs inside those groups: the same exact answer for a fraction of the work.
        """
        encoded = rows if isinstance(rows, np.ndarray) else self.encode(rows)
        gap = self.categorical_gap
        if cap is not None and cap < gap:
            dcr = self._grouped_distances(encoded, device, block_bytes)
            dcr[dcr >= cap] = np.inf
            return dcr
        dcr = nearest_distances(encoded, self._on(device), block_bytes)
        if gap < np.inf:  # below the gap, the grouped search's direct differences are the more exact figure
            near = self._grouped_distances(encoded, device, block_bytes)
            dcr = np.where(near < gap, near, dcr)
        return dcr if cap is None else np.where(dcr < cap, dcr, np.inf).astype(np.float32)

    @property
    def categorical_gap(self) -> float:
        """The smallest distance between rows whose categories differ (inf when there are no categories)."""
        return float(np.sqrt(2.0)) if self._n_numeric() < self.width else float("inf")

    def _n_numeric(self) -> int:
        if self.schema is None:  # vectors without categories (images): every column is a number
            return self.width
        return sum(1 for c in self.schema.columns if c.numeric)

    def _on(self, device: str) -> Any:
        """The training matrix as a torch tensor on `device`, moved there once."""
        import torch

        if device not in self._device_cache:
            self._device_cache[device] = torch.from_numpy(self.training).to(device)
        return self._device_cache[device]

    def _groups(self, device: str) -> tuple[np.ndarray, Any]:
        """Training rows sorted by the hash of their categories: (sorted keys, their numeric part on device)."""
        import torch

        cache_key = f"groups:{device}"
        if cache_key not in self._device_cache:
            keys = _row_hash(self.training[:, self._n_numeric() :])
            order = np.argsort(keys, kind="stable")
            numeric = np.ascontiguousarray(self.training[order, : self._n_numeric()])
            self._device_cache[cache_key] = (keys[order], torch.from_numpy(numeric).to(device))
        return self._device_cache[cache_key]  # type: ignore[no-any-return]

    def _grouped_distances(self, encoded: np.ndarray, device: str, block_bytes: int) -> np.ndarray:
        """Each row's distance to the closest training row with the same categories (inf when none has).

        Inside a group the one-hot parts are equal, so only the numeric columns count. Most groups are small:
        their (query, training row) pairs are enumerated and reduced in large vectorised blocks; the few big
        groups get a matrix product each."""
        import torch

        train_keys, train_num = self._groups(device)
        keys = _row_hash(encoded[:, self._n_numeric() :])
        lo = np.searchsorted(train_keys, keys, side="left")
        count = np.searchsorted(train_keys, keys, side="right") - lo
        query_num = torch.from_numpy(np.ascontiguousarray(encoded[:, : self._n_numeric()])).to(device)
        out = np.full(len(encoded), np.inf, np.float32)
        big_groups = count > BIG_GROUP
        _pairwise_min(query_num, train_num, lo, count, ~big_groups & (count > 0), out, block_bytes)
        for key in np.unique(keys[big_groups]):
            rows = np.flatnonzero(keys == key)
            t0 = lo[rows[0]]
            out[rows] = nearest_distances(encoded[rows, : self._n_numeric()], train_num[t0 : t0 + count[rows[0]]], block_bytes, direct=True)
        return out

    def holdout_quantile(self, q: float) -> float:
        """The q-quantile of the held-out rows' DCRs: generated rows closer than this are suspect."""
        return float(np.quantile(self.holdout_dcr.astype(np.float64), q))

    def exact_copies(self, encoded: np.ndarray, dcr: np.ndarray) -> np.ndarray:
        """Boolean mask of rows identical to a training record: equal row hash, confirmed by distance ~0."""
        if self._row_hashes is None:
            self._row_hashes = np.sort(_row_hash(self.training))
        hashes = _row_hash(encoded)
        pos = np.searchsorted(self._row_hashes, hashes).clip(max=len(self._row_hashes) - 1)
        return (self._row_hashes[pos] == hashes) & (dcr <= EXACT_TOLERANCE)

    # -- persistence ----------------------------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        from safetensors.numpy import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        tensors = {"training": self.training, "holdout": self.holdout, "holdout_dcr": self.holdout_dcr,
                   "center": self.center, "scale": self.scale}
        save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(path / REFERENCE_NAME))
        meta = {"format_version": FORMAT_VERSION, "training_rows": len(self.training),
                "holdout_rows": len(self.holdout), "width": self.width, **self._describe()}
        (path / REFERENCE_META).write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")

    def _describe(self) -> dict[str, Any]:
        """What the json beside the vectors needs to encode new rows the same way."""
        return {"schema": self.schema.to_json() if self.schema else None}

    @classmethod
    def exists(cls, path: str | Path) -> bool:
        return (Path(path) / REFERENCE_NAME).is_file()

    @staticmethod
    def save_or_clear(reference: TrainingReference | None, path: str | Path) -> None:
        """Save `reference` beside a model, or remove a stale one: never leave another model's reference."""
        if reference is not None:
            reference.save(path)
            return
        for stale in (REFERENCE_NAME, REFERENCE_META):
            (Path(path) / stale).unlink(missing_ok=True)

    @classmethod
    def load(cls, path: str | Path) -> TrainingReference | None:
        """Read a reference saved beside a model; None when there is none, ModelLoadError when it is damaged."""
        path = Path(path)
        if not cls.exists(path):
            return None
        tensors = _read_tensors(path / REFERENCE_NAME)
        try:
            meta = json.loads((path / REFERENCE_META).read_text(encoding="utf-8"))
            if meta.get("kind") == "image":
                return ImageReference.from_saved(tensors, meta, path)
            schema = TableSchema.from_json(meta["schema"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelLoadError(f"{path / REFERENCE_META} is missing or corrupted: {exc}") from None
        ref = cls(schema, tensors["center"], tensors["scale"], tensors["training"], tensors["holdout"], tensors["holdout_dcr"])
        expected_width = sum(1 if c.numeric else len(c.categories) for c in schema.columns)
        if ref.training.shape[1] != expected_width or ref.holdout.shape[1] != expected_width or len(ref.holdout_dcr) != len(ref.holdout):
            raise ModelLoadError(f"{path / REFERENCE_NAME} does not match its schema (width {ref.training.shape[1]}, expected {expected_width})")
        return ref


@dataclass
class ImageReference(TrainingReference):
    """Training and held-out images as vectors: pixels area-averaged to `shape` (C, h, w), then flattened."""

    shape: tuple[int, int, int] = (0, 0, 0)

    @classmethod
    def build_images(cls, training: Any, holdout: Any, device: str = "cpu") -> ImageReference:
        """From (N, C, H, W) pixel tensors in [0, 1]; the held-out images' DCRs are measured once, here."""
        if len(training) == 0 or len(holdout) == 0:
            raise DataError(f"an image reference needs training and held-out images (got {len(training)} and {len(holdout)})")
        c, h, w = (int(v) for v in training.shape[1:])
        empty = np.zeros((0, 0), np.float32)
        ref = cls(None, np.zeros(0), np.zeros(0), empty, empty, shape=(c, min(h, IMAGE_SIDE), min(w, IMAGE_SIDE)))
        ref.training = ref.encode(training)
        ref.holdout = ref.encode(holdout)
        ref.holdout_dcr = ref.distances_to_closest(ref.holdout, device=device)
        return ref

    def encode(self, images: Any) -> np.ndarray:  # type: ignore[override]
        """Images as float32 vectors: a (N, C, H, W) tensor or array, or a sequence of (C, H, W) ones (any device),
        area-averaged to the reference's size. Other channel counts are a DataError naming both shapes."""
        import torch

        if not isinstance(images, torch.Tensor):
            images = torch.stack([torch.as_tensor(np.asarray(i) if not isinstance(i, torch.Tensor) else i) for i in images]) \
                if len(images) else torch.zeros((0, *self.shape))
        images = images.detach().to("cpu", torch.float32)
        if images.ndim != 4 or images.shape[1] != self.shape[0]:
            raise DataError(f"images to check have shape {tuple(images.shape)}; the training images had {self.shape[0]} "
                            "channel(s), as (N, C, H, W)")
        if tuple(images.shape[2:]) != self.shape[1:]:
            images = torch.nn.functional.adaptive_avg_pool2d(images, self.shape[1:])
        return np.ascontiguousarray(images.clamp(0, 1).flatten(1).numpy())

    def distances_to_closest(self, rows: Any, device: str = "cpu", block_bytes: int = DEFAULT_BLOCK_BYTES,
                             cap: float | None = None) -> np.ndarray:
        """As for tables, with `cap` only cutting off the answer: images have no categories to group by, so every
        search is one matrix product per block. Its float32 round-off grows with the vector's length (~5e-3 at
        768 values) and would hide exact copies: a near image's distance is measured again from the difference
        to its nearest training image (round-off cannot make another image the nearest at that range)."""
        encoded = rows if isinstance(rows, np.ndarray) else self.encode(rows)
        nearest = np.empty(len(encoded), np.int64)
        dcr = nearest_distances(encoded, self._on(device), block_bytes, index=nearest)
        near = np.flatnonzero(dcr < NEAR_RECHECK)
        diff = encoded[near].astype(np.float64) - self.training[nearest[near]]
        dcr[near] = np.sqrt((diff * diff).sum(axis=1))
        if cap is not None:
            dcr[dcr >= cap] = np.inf
        return dcr

    def _describe(self) -> dict[str, Any]:
        return {"kind": "image", "shape": list(self.shape)}

    @classmethod
    def from_saved(cls, tensors: dict[str, np.ndarray], meta: dict[str, Any], path: Path) -> ImageReference:
        shape = tuple(int(v) for v in meta["shape"])
        ref = cls(None, tensors["center"], tensors["scale"], tensors["training"], tensors["holdout"], tensors["holdout_dcr"], shape=shape)  # type: ignore[arg-type]
        width = int(np.prod(shape))
        if len(shape) != 3 or ref.training.shape[1] != width or ref.holdout.shape[1] != width or len(ref.holdout_dcr) != len(ref.holdout):
            raise ModelLoadError(f"{path / REFERENCE_NAME} does not match its image shape {shape} (width {ref.training.shape[1]})")
        return ref


def nearest_distances(queries: np.ndarray, training: Any, block_bytes: int = DEFAULT_BLOCK_BYTES, direct: bool = False,
                      index: np.ndarray | None = None) -> np.ndarray:
    """Distance from each query row to its nearest row of `training` (a torch tensor), in query blocks.

    Per block: min_j ||x - y_j||^2 = ||x||^2 + min_j (||y_j||^2 - 2 x.y_j), one matrix product and one
    reduction; the square root is taken of the minimum only, not of the whole block. That form loses
    ~1e-3 to float32 round-off on small distances; `direct=True` uses `torch.cdist` on differences instead
    (exact to float32, several times slower: for the few rows that need it). `index`, when given, receives the
    position of each query's nearest training row."""
    import torch

    n = len(queries)
    out = np.empty(n, np.float32)
    if n == 0:
        return out
    if training.shape[0] == 0:
        raise DataError("the training reference holds no rows")
    rows_per_block = max(1, block_bytes // (4 * training.shape[0]))
    y_sq = (training * training).sum(dim=1)
    for start in range(0, n, rows_per_block):
        x = torch.from_numpy(queries[start : start + rows_per_block]).to(training.device)
        if direct:
            dist, where = torch.cdist(x, training, compute_mode="donot_use_mm_for_euclid_dist").min(dim=1)
            out[start : start + len(x)] = dist.cpu().numpy()
        else:
            cross, where = torch.addmm(y_sq.unsqueeze(0), x, training.T, beta=1.0, alpha=-2.0).min(dim=1)
            out[start : start + len(x)] = (cross + (x * x).sum(dim=1)).clamp_min_(0).sqrt_().cpu().numpy()
        if index is not None:
            index[start : start + len(x)] = where.cpu().numpy()
    return out


def _pairwise_min(queries: Any, training: Any, lo: np.ndarray, count: np.ndarray, selected: np.ndarray, out: np.ndarray, block_bytes: int) -> None:
    """For each selected query row i: min distance to training rows lo[i] .. lo[i]+count[i]-1, computed from
    direct differences (exact in float32, unlike the matmul form) over blocks of at most ~block_bytes."""
    import torch

    rows = np.flatnonzero(selected)
    if len(rows) == 0:
        return
    width = max(1, queries.shape[1])
    pairs_per_block = max(1, block_bytes // (8 * width))
    ends = np.cumsum(count[rows])
    start = 0
    while start < len(rows):
        done = ends[start - 1] if start else 0
        stop = max(start + 1, int(np.searchsorted(ends, done + pairs_per_block, side="right")))
        block = rows[start:stop]
        counts = torch.from_numpy(count[block]).to(queries.device)
        owner = torch.repeat_interleave(torch.arange(len(block), device=queries.device), counts)
        first = torch.from_numpy(lo[block]).to(queries.device)
        within = torch.arange(len(owner), device=queries.device) - torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
        diff = queries[torch.from_numpy(block).to(queries.device)][owner] - training[first[owner] + within]
        best = torch.full((len(block),), float("inf"), device=queries.device).scatter_reduce_(0, owner, (diff * diff).sum(dim=1), "amin")
        out[block] = best.sqrt_().cpu().numpy()
        start = stop


def _row_hash(encoded: np.ndarray) -> np.ndarray:
    """A 64-bit hash per row of float32 values (multiply-add of the raw bits with random odd multipliers)."""
    bits = np.ascontiguousarray(encoded, dtype=np.float32).view(np.uint32).astype(np.uint64)
    mult = np.random.default_rng(_HASH_SEED).integers(1, 2**63, size=bits.shape[1], dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    with np.errstate(over="ignore"):
        return (bits * mult).sum(axis=1, dtype=np.uint64) if bits.shape[1] else np.zeros(len(bits), np.uint64)


def _read_tensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    try:
        tensors = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for truncated or garbled files
        raise ModelLoadError(f"training reference {path} is truncated or corrupted: {exc}") from None
    missing = {"training", "holdout", "holdout_dcr", "center", "scale"} - set(tensors)
    if missing:
        raise ModelLoadError(f"training reference {path} lacks tensors {sorted(missing)}")
    return tensors
