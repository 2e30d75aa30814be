"""The one image reader of hashbench's datasets: each PIL mode it accepts, and how it becomes RGB.

:func:`open_image` returns either an 8-bit ``RGB`` image or, for the grey modes of more than
8 bits, an ``F`` image (32-bit float, one channel) already scaled to [0, 1]; :func:`to_tensor`
turns either into a 3×H×W float tensor in [0, 1].  ``F`` keeps the precision of 16-bit data
through resizing and cropping; 8-bit images take the same path as they always have, so their
pixels (and everything computed from them) do not change.

Every mode PIL may hand back is either in :data:`MODES` or refused with an error naming it.
Decisions for the modes whose scale is not written in the file:

* ``I;16`` and its byte orders (``I;16L``, ``I;16B``, ``I;16N``): 16-bit grey, divided by 65535.
* ``I`` (32-bit signed integers, e.g. a 16-bit PNG or TIFF as older Pillow opens it): read as
  16-bit grey (divided by 65535) when every value lies in [0, 65535]; other values have no known
  scale and are refused.
* ``F`` (32-bit float): taken as intensities in [0, 1]; a NaN, an infinity or a value outside
  [0, 1] is refused rather than clipped (a float image saved in 0–255 would turn white).
* Alpha (``RGBA``, ``LA``, ``PA``, ``RGBa``) is dropped, not composited, as before.
* ``CMYK`` and ``YCbCr`` use PIL's conversion; other modes (``LAB``, ``HSV``, ``La``, which
  PIL cannot convert, ``I;16S``, packed ``BGR;…``, ...) are refused.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

#: accepted PIL mode → how it becomes RGB in [0, 1]
MODES: dict[str, str] = {
    "1": "bilevel: 0 → 0.0, 1 → 1.0",
    "L": "8-bit grey / 255",
    "P": "palette: its RGB colours / 255 (transparency dropped)",
    "PA": "palette with alpha: its RGB colours / 255 (alpha dropped)",
    "LA": "8-bit grey / 255 (alpha dropped)",
    "RGB": "8-bit channels / 255",
    "RGBA": "8-bit channels / 255 (alpha dropped)",
    "RGBa": "8-bit channels / 255 (premultiplied alpha dropped)",
    "RGBX": "8-bit channels / 255 (padding dropped)",
    "CMYK": "PIL's CMYK → RGB conversion, / 255",
    "YCbCr": "PIL's YCbCr → RGB conversion, / 255",
    "I;16": "16-bit grey / 65535",
    "I;16L": "16-bit grey (little-endian) / 65535",
    "I;16B": "16-bit grey (big-endian) / 65535",
    "I;16N": "16-bit grey (native order) / 65535",
    "I": "32-bit integer grey / 65535; every value must lie in [0, 65535]",
    "F": "32-bit float grey as is; every value must lie in [0, 1]",
}
#: the modes read as grey with more than 8 bits (see :func:`open_image`)
_DEEP = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})
_I16_MAX = 65535.0


class UnsupportedImage(ValueError):
    """An image whose mode or values hashbench does not know how to read as RGB in [0, 1]."""


def open_image(path: str | Path) -> Image.Image:
    """The image at ``path``, decoded, as ``RGB`` (8-bit modes) or ``F`` in [0, 1] (deeper grey modes).

    Raises :class:`UnsupportedImage` for a mode outside :data:`MODES` or values outside a mode's
    range, and PIL's own errors (``OSError``, ``SyntaxError``, ``ValueError``, decompression bombs)
    for files it cannot decode.
    """
    with Image.open(path) as opened:
        mode = opened.mode
        if mode not in MODES:
            raise UnsupportedImage(
                f"image mode {mode!r} is not supported (accepted: {', '.join(MODES)}); save it as RGB or grey"
            )
        if mode not in _DEEP:
            return opened.convert("RGB")
        values = np.asarray(opened)
    if mode == "F":
        data = values.astype(np.float32)
        if data.size and not (np.isfinite(data).all() and data.min() >= 0.0 and data.max() <= 1.0):
            raise UnsupportedImage(
                f"image mode 'F' (32-bit float) must hold values in [0, 1]; this one holds "
                f"{_value_range(data)}; save it as 8- or 16-bit"
            )
    else:
        data = values.astype(np.float64)
        if mode == "I" and data.size and (data.min() < 0 or data.max() > _I16_MAX):
            raise UnsupportedImage(
                f"image mode 'I' (32-bit integer) is read as 16-bit grey and must hold values in [0, 65535]; "
                f"this one holds {_value_range(data)}; save it as 8- or 16-bit"
            )
        data = (data / _I16_MAX).astype(np.float32)
    return Image.fromarray(np.ascontiguousarray(data, dtype=np.float32), mode="F")


def to_tensor(img: Image.Image) -> torch.Tensor:
    """A 3×H×W float32 tensor in [0, 1] of an image :func:`open_image` returned (resized or cropped)."""
    if img.mode == "RGB":
        return torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).to(torch.float32).div_(255.0)
    if img.mode == "F":
        grey = torch.from_numpy(np.array(img, dtype=np.float32)).clamp_(0.0, 1.0)  # bilinear stays in range
        return grey.unsqueeze(0).expand(3, -1, -1).contiguous()
    raise UnsupportedImage(f"image mode {img.mode!r}: expected an image from open_image (RGB or F)")


def _value_range(data: np.ndarray) -> str:
    if not np.isfinite(data).all():
        return "NaN or infinite values"
    return f"values from {data.min():g} to {data.max():g}"
