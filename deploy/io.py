"""Files: atomic writes, output checks, hashes, and the JSON manifest beside each artifact.

Stages talk through files: every artifact ``X.onnx`` / ``X.engine`` has ``X.json`` beside it
describing how it was made, so the next stage (possibly on another machine) reads it instead
of asking the user again.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vitdeploy.errors import InputError, OutputError, OutputExistsError

MANIFEST_SCHEMA = "vitdeploy.manifest/1"


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def check_output(path: str | os.PathLike, force: bool = False) -> Path:
    """Refuse to overwrite without ``force`` and fail early when the folder cannot be written."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"output {path} is a directory; give a file path")
    if path.exists() and not force:
        raise OutputExistsError(f"{path} exists; pass --force to overwrite it")
    parent = path.parent if str(path.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output folder {parent}: {exc.strerror or exc}") from exc
    if not os.access(parent, os.W_OK):
        raise OutputError(f"output folder {parent} is not writable")
    return path


def check_artifact_output(path: str | os.PathLike, force: bool = False) -> Path:
    """check_output for an artifact and for the manifest that will stand beside it."""
    path = Path(path)
    if path.suffix.lower() == ".json" or manifest_path(path) == path:
        raise OutputError(f"output {path} would be its own manifest: give an .onnx (or .engine) path")
    check_output(manifest_path(path), force)
    return check_output(path, force)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; move it into place only on success.

    On any exception (Ctrl-C and disk-full included) the temporary file is removed and the
    target is untouched, so no half-written artifact is ever left behind.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent or ".")
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; artifacts get the usual permissions
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    write_bytes_atomic(path, (json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n").encode())


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):  # numpy scalars/arrays
        return obj.tolist()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def manifest_path(artifact: str | os.PathLike) -> Path:
    return Path(artifact).with_suffix(".json")


def new_manifest(kind: str, artifact: str | os.PathLike, **fields: Any) -> dict[str, Any]:
    from vitdeploy import __version__

    return {
        "schema": MANIFEST_SCHEMA,
        "kind": kind,
        "artifact": Path(artifact).name,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "vitdeploy": __version__,
        **fields,
    }


def write_manifest(artifact: str | os.PathLike, manifest: dict[str, Any]) -> Path:
    path = manifest_path(artifact)
    if Path(artifact).exists():
        manifest = {**manifest, "sha256": sha256_file(artifact)}
    write_json_atomic(path, manifest)
    return path


def read_manifest(artifact: str | os.PathLike, required: bool = False) -> dict[str, Any] | None:
    """The manifest beside ``artifact``, or None (InputError when ``required``)."""
    path = manifest_path(artifact)
    if not path.exists():
        if required:
            raise InputError(f"no manifest {path} beside {artifact}; re-export it with vitdeploy or give the options explicitly")
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"manifest {path} is unreadable: {exc}") from exc
    if not isinstance(data, dict) or data.get("artifact") not in (None, Path(artifact).name):
        if required:
            raise InputError(f"manifest {path} describes {data.get('artifact')!r}, not {Path(artifact).name}")
        return None
    return data


def has_random_weights(manifest: dict[str, Any] | None) -> bool:
    """Whether a manifest describes a zoo model exported without a checkpoint: a random network,
    on which which class wins is noise (closeness of outputs still means something)."""
    m = manifest or {}
    return (m.get("model") or {}).get("source") == "zoo" and not m.get("checkpoint")
