"""Data sources: opening a folder of images, an image list or a preprocessed .npy/.npz array
(``open_dataset``), and the one fingerprint of a source (``fingerprint``) and of a selection of its
samples (``data_hash``).

A folder is walked recursively (once per run scope: ``data.cache.files_under``); ImageFolder class subfolders give labels (``labels.folder_classes``).
An array keeps its file dtype (``Dataset.source_dtype``, for the value check) and is read as float32 a
selection of rows at a time (``Dataset.rows``); a ``.npy`` is memory-mapped, so only the rows read are
loaded (an ``.npz`` member, compressed or not, is read whole: give large sets as ``.npy``).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vitdeploy.core.errors import InputError
from vitdeploy.core.io import sha256_file
from vitdeploy.data.cache import files_under
from vitdeploy.data.labels import folder_classes

if TYPE_CHECKING:
    from vitdeploy.core.preprocessing import Preprocessing

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff")
ARRAY_KEYS = ("images", "x", "data", "inputs", "input")
LABEL_KEYS = ("labels", "y", "targets", "label")


@dataclass
class Dataset:
    """A resolved data source: either image files or a preprocessed array (memory-mapped for ``.npy``)."""

    source: str
    kind: str  # "images" | "array"
    files: list[Path] = field(default_factory=list)
    labels: np.ndarray | None = None
    classes: list[str] | None = None
    array: np.ndarray | None = None  # (N, C, H, W) as stored in the file: read it through ``rows``
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    source_dtype: str | None = None  # the array's dtype in the file
    # How ``labels`` were made (see ``labels_for``): "index" (folders named 0..999 keep their number),
    # "imagenet" (folders named by ImageNet-1k wnids: their standard 1000-class index), "sorted"
    # (other folder names, numbered in sorted order), "array" (labels stored in the .npz); None: no labels.
    label_scheme: str | None = None

    def __len__(self) -> int:
        return len(self.files) if self.kind == "images" else int(self.array.shape[0])  # type: ignore[union-attr]

    def rows(self, indices) -> np.ndarray:
        """Samples ``indices`` of an array dataset, float32 (N, C, H, W): only those rows are read."""
        return np.asarray(self.array[np.asarray(indices, dtype=np.int64)], dtype=np.float32)  # type: ignore[index]


def open_dataset(path: str | os.PathLike) -> Dataset:
    """Resolve DATA: a folder (recursive; class subfolders give labels), a .txt list, or .npy/.npz."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"data {p} not found")
    if p.is_dir():
        files = [f for f in files_under(p) if f.suffix.lower() in IMAGE_SUFFIXES]
        if not files:
            raise InputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {p}")
        rel_parents = {f.relative_to(p).parts[0] for f in files if len(f.relative_to(p).parts) > 1}
        labels = classes = scheme = None
        if rel_parents and all(len(f.relative_to(p).parts) == 2 for f in files):  # ImageFolder layout
            classes, scheme, index = folder_classes(rel_parents)
            labels = np.array([index[f.relative_to(p).parts[0]] for f in files], dtype=np.int64)
        return Dataset(str(p), "images", files=files, labels=labels, classes=classes, label_scheme=scheme)
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
        loaded = np.load(p, allow_pickle=False, mmap_mode="r")  # .npy: mapped, not read; .npz: members read
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
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_) or np.iscomplexobj(arr):
        raise InputError(f"{p}: expected a real numeric N,C,H,W array of preprocessed images, got dtype {arr.dtype}")
    return Dataset(str(p), "array", array=arr, labels=labels, source_dtype=str(arr.dtype),
                   label_scheme=None if labels is None else "array")



# Fingerprints. One walk, one file hash (sha256 of the bytes, computed once per process while the file's
# path, size and mtime are unchanged), two folder keys: the cheap one manifests record, and the content
# address remote caches use.

def fingerprint(path: str | os.PathLike, content: bool = False) -> str:
    """The identity of a data source: a file's sha256; a folder's sha256 over its files in sorted order,
    each as ``relpath:size:mtime`` (whole seconds; cheap: no file is read), or with ``content`` as
    ``relpath\0sha256`` (a content address: unchanged by copying, tar or touch). The cheap form is what
    manifests record (``calibration_data.fingerprint``) and validate's cache key; the content form is
    ``vitdeploy.pipeline.remote``'s cache key (``content_key``). A missing source: the empty hash, or
    with ``content`` the error of reading it."""
    p = Path(path)
    if not p.is_dir():
        return sha256_file(p) if content or p.is_file() else hashlib.sha256().hexdigest()
    h = hashlib.sha256()
    for f in files_under(p):
        rel = f.relative_to(p)
        if content:
            h.update(f"{rel.as_posix()}\0{sha256_file(f)}\n".encode())
        else:
            st = f.stat()
            h.update(f"{rel}:{st.st_size}:{int(st.st_mtime)}\n".encode())
    return h.hexdigest()


def content_key(path: Path) -> str:
    """sha256 of a file, or of a folder's sorted (relative path, file sha256) list (``fingerprint`` with
    ``content``). Each file is read once per process while unchanged: a fleet's device threads share
    the dataset's hashes."""
    return fingerprint(path, content=True)


def data_hash(ds: Dataset, indices: np.ndarray, pre: Preprocessing) -> str:
    """Content hash of the selected samples and the preprocessing (cache key, manifests)."""
    h = hashlib.sha256(pre.key().encode())
    if ds.kind == "array":
        for start in range(0, len(indices), 256):  # the float32 rows, a block at a time
            h.update(ds.rows(indices[start:start + 256]).tobytes())
    else:
        for i in indices:
            f = ds.files[i]
            h.update(str(f.name).encode())
            try:
                h.update(bytes.fromhex(sha256_file(f)))
            except OSError:
                h.update(b"unreadable")
    return h.hexdigest()
