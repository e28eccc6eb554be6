"""Typed outputs. Each has a canonical byte form: the audit trail hashes exactly those bytes.

Outputs stay in their working form (a tensor on the engine's device for images, a DataFrame for tables) while
they move through the policies; conversion to files happens at the edge (`write_outputs`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Sequence

from gensdk._canonical import sha256_hex
from gensdk.errors import RequestError

if TYPE_CHECKING:
    import pandas as pd

Modality = Literal["text", "image", "table"]
MODALITIES: tuple[Modality, ...] = ("text", "image", "table")

__all__ = ["ImageOutput", "Modality", "Output", "TableOutput", "TextOutput", "write_outputs", "write_plain_outputs"]


@dataclass(eq=False)
class Output:
    """One generated item. `metadata` carries what policies attach (watermark key id, provenance manifest)."""

    modality: ClassVar[Modality]
    metadata: dict[str, Any] = field(default_factory=dict, kw_only=True)

    def canonical_bytes(self) -> bytes:
        raise NotImplementedError

    def digest(self) -> str:
        return sha256_hex(self.canonical_bytes())


@dataclass(eq=False)
class TextOutput(Output):
    modality: ClassVar[Modality] = "text"
    text: str
    prompt: str | None = None

    def canonical_bytes(self) -> bytes:
        # surrogatepass: text decoded from broken UTF-8 still has one exact byte form to hash.
        return self.text.encode("utf-8", "surrogatepass")


@dataclass(eq=False)
class TableOutput(Output):
    modality: ClassVar[Modality] = "table"
    frame: pd.DataFrame

    def canonical_bytes(self) -> bytes:
        """Per column: name, type tag and the sha256 of its data (see gensdk.table_bytes)."""
        from gensdk.table_bytes import table_canonical_bytes

        return table_canonical_bytes(self.frame)


@dataclass(eq=False)
class ImageOutput(Output):
    """`pixels`: a float tensor (C, H, W) in [0, 1], kept on the engine's device until written out."""

    modality: ClassVar[Modality] = "image"
    pixels: Any

    def to_uint8(self) -> Any:
        """(H, W, C) uint8 numpy array: the form that is hashed and written to PNG."""
        import torch

        px = self.pixels if isinstance(self.pixels, torch.Tensor) else torch.as_tensor(self.pixels)
        return (px.detach().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()

    def canonical_bytes(self) -> bytes:
        arr = self.to_uint8()
        header = f"uint8:{arr.shape[0]}x{arr.shape[1]}x{arr.shape[2]}\n".encode()
        return header + arr.tobytes()

    def to_pil(self) -> Any:
        from PIL import Image

        arr = self.to_uint8()
        return Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)


def write_outputs(outputs: Sequence[Output], path: str | Path, *, host: Any = None) -> list[Path]:
    """Write released outputs through the installed writers (the `write_outputs` hook): files that carry
    provenance manifests when the provenance plugin is installed and the outputs have one, else plain files.
    `host` is the plugin host to ask (an engine's `engine.host`); by default the installed plugins."""
    if not outputs:
        return []
    modality_of(outputs)
    if host is None:
        from gensdk.plugins import get_plugin_host

        host = get_plugin_host()
    return host.pm.hook.write_outputs(outputs=list(outputs), path=Path(path))


def modality_of(outputs: Sequence[Output]) -> str:
    """The one modality of `outputs`; a writer cannot put mixed modalities in one place."""
    modality = outputs[0].modality
    if any(o.modality != modality for o in outputs):
        raise RequestError("cannot write outputs of mixed modalities to one path")
    return modality


def write_plain_outputs(outputs: Sequence[Output], path: str | Path) -> list[Path]:
    """The core's writer: tables to one CSV (or JSONL by suffix), texts to JSONL, images to PNGs in a directory."""
    path = Path(path)
    if not outputs:
        return []
    modality = modality_of(outputs)
    writer = {"table": _write_tables, "text": _write_texts, "image": _write_images}[modality]
    return writer(outputs, path)


def _write_tables(outputs: Sequence[Output], path: Path) -> list[Path]:
    import pandas as pd

    frame = pd.concat([o.frame for o in outputs], ignore_index=True)  # type: ignore[attr-defined]
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_csv(path, index=False)
    return [path]


def _write_texts(outputs: Sequence[Output], path: Path) -> list[Path]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for o in outputs:
            f.write(json.dumps({"prompt": o.prompt, "text": o.text}, ensure_ascii=False) + "\n")  # type: ignore[attr-defined]
    return [path]


def _write_images(outputs: Sequence[Output], path: Path) -> list[Path]:
    path.mkdir(parents=True, exist_ok=True)
    written = []
    for i, o in enumerate(outputs):
        target = path / f"{i:05d}.png"
        o.to_pil().save(target)  # type: ignore[attr-defined]
        written.append(target)
    return written
