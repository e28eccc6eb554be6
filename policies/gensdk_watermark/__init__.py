"""gensdk_watermark: keyed watermarks for generated text, images and tables, with calibrated detectors.

* ``watermark-text`` (`TextWatermarkPolicy`): a green-list (KGW) or SynthID-Text logits processor applied
  while the model samples; detection gives a z-score and a p-value (`text.KGW`, `text.SynthID`).
* ``watermark-image`` (`ImageWatermarkPolicy`): a 32-bit payload, convolutionally coded, spread over a
  periodic mid-frequency luminance pattern embedded on the engine's device; survives JPEG, resizing, noise,
  brightness changes and crops (`image.ImageMark`).
* ``watermark-table`` (`TableWatermarkPolicy`): a keyed green/red split of numeric values' finest digits,
  with a bounded change (`table.TableMark`).

`gensdk detect text|image|table FILE --key KEYFILE` reads a mark back; `gensdk watermark keygen FILE` makes a
key. See docs/watermark.md.
"""

from gensdk_watermark.image import ImageMark, ImageWatermarkPolicy
from gensdk_watermark.keys import WatermarkKey
from gensdk_watermark.table import TableMark, TableWatermarkPolicy
from gensdk_watermark.text import KGW, SynthID, TextWatermarkPolicy

__all__ = [
    "KGW",
    "ImageMark",
    "ImageWatermarkPolicy",
    "SynthID",
    "TableMark",
    "TableWatermarkPolicy",
    "TextWatermarkPolicy",
    "WatermarkKey",
]
