"""Calibration / evaluation data: image folders, image lists, or preprocessed .npy/.npz arrays.

Images are preprocessed the way the model was trained (from the manifest): resize the shorter
side to size / crop_pct with the model's interpolation, center crop, scale to [0, 1],
normalise with mean/std, NCHW float32. Sampling is deterministic (seed). Undecodable files
are counted and named, then skipped or fatal (``on_error``), never silently dropped.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vitdeploy.errors import InputError, UsageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff")
ARRAY_KEYS = ("images", "x", "data", "inputs", "input")
LABEL_KEYS = ("labels", "y", "targets", "label")


@dataclass(frozen=True)
class Preprocess:
    input_size: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str = "bicubic"
    crop_pct: float = 0.875

    @classmethod
    def from_manifest(cls, manifest: dict | None, **overrides) -> Preprocess:
        pre = dict((manifest or {}).get("preprocessing") or {})
        pre.update({k: v for k, v in overrides.items() if v is not None})
        missing = [k for k in ("input_size", "mean", "std") if k not in pre]
        if missing:
            raise UsageError(f"no preprocessing known (missing {', '.join(missing)}): export with vitdeploy to get a "
                             "manifest, or pass --input-size, --mean and --std")
        return cls(tuple(int(v) for v in pre["input_size"]), tuple(float(v) for v in pre["mean"]),
                   tuple(float(v) for v in pre["std"]), pre.get("interpolation", "bicubic"),
                   float(pre.get("crop_pct", 0.875)))

    def key(self) -> str:
        return json.dumps([list(self.input_size), list(self.mean), list(self.std), self.interpolation, self.crop_pct])


def _pil_filter(name: str):
    from PIL import Image

    table = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR,
             "nearest": Image.Resampling.NEAREST, "lanczos": Image.Resampling.LANCZOS}
    if name not in table:
        raise UsageError(f"unknown interpolation {name!r}; choose from {', '.join(table)}")
    return table[name]


def preprocess_image(img, pre: Preprocess) -> np.ndarray:
    """PIL image -> normalised CHW float32 array."""
    _, h, w = pre.input_size
    img = img.convert("RGB")
    scale_to = int(round(min(h, w) / pre.crop_pct))
    iw, ih = img.size
    if iw <= ih:
        nw, nh = scale_to, max(1, int(round(ih * scale_to / iw)))
    else:
        nh, nw = scale_to, max(1, int(round(iw * scale_to / ih)))
    img = img.resize((nw, nh), _pil_filter(pre.interpolation))
    left, top = int(round((nw - w) / 2.0)), int(round((nh - h) / 2.0))
    img = img.crop((left, top, left + w, top + h))
    arr = np.asarray(img, dtype=np.float32) / 255.0
    arr = (arr - np.asarray(pre.mean, np.float32)) / np.asarray(pre.std, np.float32)
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


@dataclass
class Dataset:
    """A resolved data source: either image files or an in-memory preprocessed array."""

    source: str
    kind: str  # "images" | "array"
    files: list[Path] = field(default_factory=list)
    labels: np.ndarray | None = None
    classes: list[str] | None = None
    array: np.ndarray | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)

    def __len__(self) -> int:
        return len(self.files) if self.kind == "images" else int(self.array.shape[0])  # type: ignore[union-attr]


def open_dataset(path: str | os.PathLike) -> Dataset:
    """Resolve DATA: a folder (recursive; class subfolders give labels), a .txt list, or .npy/.npz."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"data {p} not found")
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise InputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {p}")
        rel_parents = {f.relative_to(p).parts[0] for f in files if len(f.relative_to(p).parts) > 1}
        labels = classes = None
        if rel_parents and all(len(f.relative_to(p).parts) == 2 for f in files):  # ImageFolder layout
            # Folders named by class index ("0".."999") keep their numbers, so a subset of classes still
            # scores against the model's outputs; other names are indexed in sorted order (ImageFolder).
            numeric = all(c.isdigit() for c in rel_parents)
            classes = sorted(rel_parents, key=int) if numeric else sorted(rel_parents)
            index = {c: int(c) for c in classes} if numeric else {c: i for i, c in enumerate(classes)}
            labels = np.array([index[f.relative_to(p).parts[0]] for f in files], dtype=np.int64)
        return Dataset(str(p), "images", files=files, labels=labels, classes=classes)
    suffix = p.suffix.lower()
    if suffix in (".npy", ".npz"):
        return _open_array(p)
    if suffix in (".txt", ".lst", ".list"):
        lines = [ln.strip() for ln in p.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
        files = [(p.parent / ln) if not Path(ln).is_absolute() else Path(ln) for ln in lines]
        if not files:
            raise InputError(f"image list {p} is empty")
        return Dataset(str(p), "images", files=files)
    raise InputError(f"unsupported data {p}: give a folder of images, a .txt list of image paths, or a .npy/.npz array")


def _open_array(p: Path) -> Dataset:
    try:
        loaded = np.load(p, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise InputError(f"cannot read {p}: {exc}") from exc
    labels = None
    if isinstance(loaded, np.ndarray):
        arr = loaded
    else:
        keys = list(loaded.keys())
        key = next((k for k in ARRAY_KEYS if k in keys), keys[0] if len(keys) == 1 else None)
        if key is None:
            raise InputError(f"{p} holds {keys}: name the images array one of {', '.join(ARRAY_KEYS)}")
        arr = loaded[key]
        lkey = next((k for k in LABEL_KEYS if k in keys), None)
        labels = np.asarray(loaded[lkey]).astype(np.int64) if lkey else None
    if arr.ndim != 4:
        raise InputError(f"{p}: expected a 4-D N,C,H,W array of preprocessed images, got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise InputError(f"{p} holds no samples")
    if labels is not None and labels.shape[0] != arr.shape[0]:
        raise InputError(f"{p}: {labels.shape[0]} labels for {arr.shape[0]} images")
    return Dataset(str(p), "array", array=np.asarray(arr, dtype=np.float32), labels=labels)


def check_shape(ds: Dataset, pre: Preprocess) -> None:
    if ds.kind == "array" and tuple(ds.array.shape[1:]) != tuple(pre.input_size):  # type: ignore[union-attr]
        raise InputError(f"{ds.source}: samples are {tuple(ds.array.shape[1:])} but the model takes "  # type: ignore[union-attr]
                         f"{tuple(pre.input_size)} (a .npy/.npz must be preprocessed already)")


def sample_indices(n: int, samples: int | None, seed: int) -> np.ndarray:
    """A deterministic subset (all of it, shuffled, when samples is None or >= n)."""
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[: samples if samples is not None else n])


def iter_batches(ds: Dataset, pre: Preprocess, indices: np.ndarray, batch_size: int, on_error: str = "skip",
                 progress: Callable[[int], None] | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (batch, dataset indices) of preprocessed samples. Decode failures go to ds.skipped."""
    from PIL import Image, UnidentifiedImageError

    check_shape(ds, pre)
    if on_error not in ("skip", "fail"):
        raise UsageError(f"on_error must be skip or fail, not {on_error!r}")
    buf, idx = [], []
    for i in indices:
        if ds.kind == "array":
            buf.append(ds.array[i])  # type: ignore[index]
            idx.append(i)
        else:
            f = ds.files[i]
            try:
                with Image.open(f) as img:
                    buf.append(preprocess_image(img, pre))
                    idx.append(i)
            except (OSError, UnidentifiedImageError, ValueError) as exc:
                reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
                if on_error == "fail":
                    raise InputError(f"cannot decode {f}: {reason}") from exc
                ds.skipped.append((str(f), reason))
        if progress:
            progress(1)
        if len(buf) == batch_size:
            yield np.stack(buf), np.asarray(idx)
            buf, idx = [], []
    if buf:
        yield np.stack(buf), np.asarray(idx)


def load_samples(ds: Dataset, pre: Preprocess, indices: np.ndarray, on_error: str = "skip",
                 progress: Callable[[int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """All selected samples as one array (and their dataset indices). Raises when none decode."""
    parts, idx = [], []
    for batch, i in iter_batches(ds, pre, indices, 64, on_error, progress):
        parts.append(batch)
        idx.append(i)
    if not parts:
        detail = f"; e.g. {ds.skipped[0][0]}: {ds.skipped[0][1]}" if ds.skipped else ""
        raise InputError(f"no decodable image in {ds.source} ({len(ds.skipped)} failed{detail})")
    return np.concatenate(parts), np.concatenate(idx)


def data_hash(ds: Dataset, indices: np.ndarray, pre: Preprocess) -> str:
    """Content hash of the selected samples and the preprocessing (cache key, manifests)."""
    h = hashlib.sha256(pre.key().encode())
    if ds.kind == "array":
        h.update(np.ascontiguousarray(ds.array[indices]).tobytes())  # type: ignore[index]
    else:
        for i in indices:
            f = ds.files[i]
            h.update(str(f.name).encode())
            try:
                h.update(hashlib.sha256(f.read_bytes()).digest())
            except OSError:
                h.update(b"unreadable")
    return h.hexdigest()


def source_fingerprint(path: str | os.PathLike) -> str:
    """A cheap identity of a data source (file hash, or a folder's names, sizes and mtimes)."""
    p = Path(path)
    h = hashlib.sha256()
    if p.is_file():
        with open(p, "rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
    elif p.is_dir():
        for f in sorted(q for q in p.rglob("*") if q.is_file()):
            st = f.stat()
            h.update(f"{f.relative_to(p)}:{st.st_size}:{int(st.st_mtime)}\n".encode())
    return h.hexdigest()
