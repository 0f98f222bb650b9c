"""A small built-in calibration sample, for demos only.

Synthetic, deterministic images (smooth colour fields with a few shapes): enough for INT8 ranges
to exist, not to be right. `vitdeploy deploy` uses it only when no --calib is given, and its
report says loudly that real data must be used.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

BUILTIN_NOTE = ("INT8 was calibrated on vitdeploy's built-in synthetic sample, not on real data: its accuracy "
                "figures are NOT meaningful. Re-run with --calib pointing at a few hundred real images.")


BUILTIN_COUNT = 64  # images in the built-in sample


def write_builtin_sample(folder: Path, count: int = BUILTIN_COUNT, size: int = 256, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        low = rng.uniform(0, 255, (4, 4, 3)).astype(np.uint8)
        img = Image.fromarray(low).resize((size, size), Image.Resampling.BICUBIC)
        draw = ImageDraw.Draw(img)
        for _ in range(int(rng.integers(2, 6))):
            x0, y0 = (int(v) for v in rng.integers(0, size - 32, 2))
            w, h = (int(v) for v in rng.integers(16, size // 2, 2))
            color = tuple(int(c) for c in rng.integers(0, 255, 3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x0, y0, x0 + w, y0 + h], fill=color)
        img = img.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0, 2))))
        img.save(folder / f"builtin_{i:03d}.png")
    return folder


def cached_sample(count: int = BUILTIN_COUNT) -> Path:
    """The built-in sample, written once under the cache folder (``$VITDEPLOY_CACHE``) and reused."""
    import os
    import shutil
    import tempfile

    from vitdeploy.core.io import cache_root

    folder = cache_root() / f"builtin-sample-{count}"
    if folder.is_dir() and len(list(folder.glob("*.png"))) == count:
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".builtin-", dir=folder.parent))
    write_builtin_sample(tmp, count)
    try:
        os.replace(tmp, folder)  # atomic: a reader sees all images or none
    except OSError:  # another process won the race (or a stale folder is in the way)
        shutil.rmtree(tmp, ignore_errors=True)
        if not (folder.is_dir() and len(list(folder.glob("*.png"))) == count):
            raise
    return folder
