"""Image decoding: a file -> fully decoded 8-bit RGB PIL image, or ImageDecodeError naming it.

16-bit and float images are brought to 8 bits keeping their picture (``to_rgb8``); what reading a
file can raise that is the file's fault (``_decode_errors``) becomes ImageDecodeError (exit 3),
anything else is a vitdeploy bug and propagates.
"""

from __future__ import annotations

import os
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np

from vitdeploy.core.errors import InputError


def to_rgb8(img):
    """Any PIL image -> 8-bit RGB PIL image, keeping the picture of high-bit-depth images.

    ``Image.convert("RGB")`` clips single-channel 16-bit and 32-bit integer images to 0..255 (a
    16-bit image turns flat white) and truncates float images (0..1 floats turn flat black), so:

    - ``I;16`` / ``I;16L`` / ``I;16B`` / ``I;16N`` (unsigned 16-bit): value >> 8 (0..65535 -> 0..255).
    - ``I`` and other integer modes (32-bit or signed 16-bit; no bit depth is recorded): values
      within 0..255 are used as they are, within 0..65535 taken as 16-bit (>> 8), else min-max scaled.
    - ``F`` (float): NaN -> 0; within [0, 1] scaled by 255, within [0, 255] used as they are,
      else min-max scaled to 0..255 (a constant image is clipped to 0..255).

    16-bit RGB/RGBA PNGs and TIFFs already open as 8-bit RGB/RGBA in Pillow. Every other mode
    (RGB, RGBA, LA, L, 1, P, CMYK, YCbCr, ...) goes through Pillow's ``convert("RGB")`` unchanged.
    """
    from PIL import Image

    if img.mode == "RGB":
        return img
    if img.mode.startswith("I;16") and not img.mode.endswith("S"):
        gray = (np.asarray(img).astype(np.uint16) >> 8).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    if img.mode == "F" or img.mode.startswith("I"):
        return Image.fromarray(_scale_to_uint8(np.asarray(img), is_float=img.mode == "F")).convert("RGB")
    return img.convert("RGB")


def _scale_to_uint8(arr: np.ndarray, is_float: bool) -> np.ndarray:
    """A 2-D integer or float array -> uint8 0..255 by the rules of ``to_rgb8``."""
    a = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if is_float and lo >= 0.0 and hi <= 1.0:
        a = a * 255.0
    elif lo >= 0.0 and hi <= 255.0:
        pass
    elif not is_float and lo >= 0.0 and hi <= 65535.0:
        return (a.astype(np.uint32) >> 8).astype(np.uint8)
    elif hi > lo:
        a = (a - lo) * (255.0 / (hi - lo))
    return np.clip(np.round(a), 0, 255).astype(np.uint8)



class ImageDecodeError(InputError):
    """A file that does not decode as an image (exit 3): its ``path`` and the decoder's ``reason``."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        super().__init__(f"cannot decode {path}: {reason}")
        self.path, self.reason = str(path), reason


def _decode_errors() -> tuple[type[BaseException], ...]:
    """What reading one image file can raise that is the file's fault, not vitdeploy's: OSError (missing,
    a directory, permission denied, truncated or broken data, unknown format: UnidentifiedImageError),
    ValueError (bad headers, modes that cannot become RGB), the parse errors Pillow's plugins raise on
    broken files (SyntaxError, EOFError, struct.error, zlib.error) and Pillow's DecompressionBombError
    (more than twice ``Image.MAX_IMAGE_PIXELS``)."""
    from PIL import Image

    return OSError, ValueError, SyntaxError, EOFError, struct.error, zlib.error, Image.DecompressionBombError


def decode_image(path: Path):
    """The image at ``path``, fully decoded, as 8-bit RGB (``to_rgb8``; first frame of an animation).

    Raises ImageDecodeError (exit 3) naming the file and the decoder's reason for anything in
    ``_decode_errors``; other exceptions are vitdeploy bugs and propagate. Pillow's warnings (large
    images, palette transparency, corrupt EXIF) are not shown: they concern files that decode."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as img:
                img.load()
                rgb = to_rgb8(img)
                return rgb.copy() if rgb is img else rgb  # the with block closes img
    except _decode_errors() as exc:
        reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise ImageDecodeError(path, reason) from exc

