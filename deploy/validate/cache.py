"""The resumable run cache of `vitdeploy validate` (``ReferenceStore``): the reference's outputs on disk, read
back batch by batch by each candidate, and each finished artifact's reduced figures."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from vitdeploy.core.errors import InputError
from vitdeploy.core.io import cache_root, cannot_write, sha256_file
from vitdeploy.runners.factory import Artifact
from vitdeploy.validate.config import VALIDATE_SCHEMA, ValidateConfig


class ReferenceStore:
    """One validation run's files: the reference's outputs (float32 rows, read back batch by batch by
    each candidate), the kept sample indices and the reference's facts, then one JSON of reduced
    figures per finished candidate, each written atomically. The folder is named by what decides the
    figures (artifact digest, data fingerprint, sample selection, preprocessing, batch, backend): an
    interrupted run started again resumes after its last finished artifact. Removed once the run ends.
    (Not vitdeploy.data.cache.RunCache: that keeps one run's folder listings and decoded samples in memory.)"""

    def __init__(self, config: ValidateConfig, ref_art: Artifact, pre, indices: np.ndarray) -> None:
        from vitdeploy.data.sources import fingerprint

        root = config.cache_dir or cache_root() / "validate"
        key = digest(VALIDATE_SCHEMA, artifact_digest(ref_art), config.backends.get(config.reference),
                      fingerprint(config.data), hashlib.sha256(np.asarray(indices, np.int64).tobytes()).hexdigest(),
                      pre.key(), config.on_error, config.batch_size)
        self.dir = root / key[:32]
        self.logits, self.kept, self.meta = self.dir / "reference.f32", self.dir / "reference.kept.npy", self.dir / "reference.json"

    def reference(self) -> dict[str, Any] | None:
        """The finished reference pass's facts (with ``kept``), or None."""
        try:
            meta = json.loads(self.meta.read_text())
            meta["kept"] = np.load(self.kept)
            complete = self.logits.stat().st_size == 4 * len(meta["kept"]) * math.prod(meta["shape"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return meta if complete else None

    def candidate(self, key: str) -> Path:
        return self.dir / f"candidate-{key[:32]}.json"

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the run's lock: two processes validating the same run (same key) on one machine would
        otherwise write and delete each other's files. The second waits for the first, which removes
        the folder when it ends, and then computes its own. The lock file goes too (no file per run
        left in the cache): its holder deletes it before letting go, and a process that then gets the
        lock of a deleted file opens the path again."""
        lock = self.dir.parent / f"{self.dir.name}.lock"
        while True:
            try:
                self.dir.parent.mkdir(parents=True, exist_ok=True)
                f = open(lock, "a")  # noqa: SIM115 - closed below, after the lock is released
            except OSError as exc:
                raise cannot_write(lock, exc) from exc
            try:
                fcntl.flock(f, fcntl.LOCK_EX)
                try:
                    current = os.stat(lock).st_ino == os.fstat(f.fileno()).st_ino
                except FileNotFoundError:
                    current = False
            except BaseException:  # Ctrl-C while waiting
                f.close()
                raise
            if current:
                break
            f.close()  # the previous holder deleted it while this process waited
        with f:
            try:
                yield
            finally:
                with contextlib.suppress(OSError):  # never hides the run's own error (or Ctrl-C)
                    lock.unlink(missing_ok=True)
                fcntl.flock(f, fcntl.LOCK_UN)


def digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()


def artifact_digest(art: Artifact) -> str:
    """What identifies an artifact's outputs: its file's content (and a checkpoint's), or a zoo name."""
    return digest(art.spec, art.kind, *(sha256_file(p) for p in (art.path, art.checkpoint) if p is not None))


def read_rows(f, n: int, shape: tuple[int, ...]) -> np.ndarray:
    rows = np.fromfile(f, dtype=np.float32, count=n * math.prod(shape))
    if rows.size != n * math.prod(shape):
        raise InputError(f"{f.name}: the cached reference outputs are shorter than the samples: remove it and rerun")
    return rows.reshape(n, *shape)

