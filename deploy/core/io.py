"""Files: atomic writes, output checks, hashes, and the JSON manifest beside each artifact.

Stages talk through files: every artifact ``X.onnx`` / ``X.engine`` has ``X.json`` beside it
describing how it was made, so the next stage (possibly on another machine) reads it instead
of asking the user again.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import functools
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from vitdeploy.core.errors import InputError, OutputError, OutputExistsError, UsageError

MANIFEST_SCHEMA = "vitdeploy.manifest/1"


def cache_root() -> Path:
    """vitdeploy's cache folder: ``$VITDEPLOY_CACHE``, else ``~/.cache/vitdeploy`` (statistics, validate's
    run files, spilled sample sets, the built-in sample)."""
    return Path(os.environ.get("VITDEPLOY_CACHE") or Path.home() / ".cache" / "vitdeploy")


def sha256_file(path: str | os.PathLike) -> str:
    """sha256 (hex) of a file's bytes, read once per process while the file is unchanged: keyed by
    its resolved path, size, mtime, ctime and inode (an atomic rewrite is a new inode; an in-place
    write changes ctime). A deploy hashes the same ONNX files at each step; this reads each once."""
    p = Path(path)
    st = p.stat()
    return _sha256_of(str(p.resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


@functools.lru_cache(maxsize=65536)
def _sha256_of(path: str, size: int, mtime_ns: int, ctime_ns: int, inode: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def check_output(path: str | os.PathLike, force: bool = False, create: bool = True) -> Path:
    """Refuse to overwrite without ``force`` and fail early when the folder cannot be written.
    The folder is created unless ``create`` is False (then atomic_path creates it when writing, and
    a failed check leaves nothing behind: the check before minutes of work, e.g. a report folder)."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"output {path} is a directory; give a file path")
    if path.exists() and not force:
        raise OutputExistsError(f"{path} exists; pass --force to overwrite it")
    parent = path.parent if str(path.parent) else Path(".")
    if not create:
        existing = next(p for p in (parent, *parent.parents) if p.exists())
        if existing == parent and not parent.is_dir():
            raise OutputError(f"output folder {parent} exists and is not a folder")
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            raise OutputError(f"cannot create output folder {parent}: {existing} is not a writable folder")
        return path
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
    check_output(path, force)  # the artifact named first: it is what the user asked for
    check_output(manifest_path(path), force)
    return path


def refuse_overwriting_inputs(output: str | os.PathLike | None, **inputs: str | os.PathLike | None) -> None:
    """UsageError when ``output`` (or the manifest beside it) is one of the named inputs, whatever
    --force says: writing it would destroy what the command reads. ``inputs``: option name -> path."""
    if output is None:
        return
    targets = {Path(output), manifest_path(output)}
    for name, given in inputs.items():
        if given is not None and any(_same_file(t, Path(given)) for t in targets):
            raise UsageError(f"the output {output} would overwrite the input {name} {given}: give another --output")


def _same_file(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def disk_full(exc: BaseException | None) -> OSError | None:
    """The disk-full OSError that caused ``exc`` (itself, or anywhere in its cause chain), else None."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError) and exc.errno in NO_SPACE:
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def cannot_write(path: str | os.PathLike | None, exc: OSError) -> OutputError:
    """The one-line error for a failed write: a full disk says so, anything else gives the OS's reason."""
    reason = "no space left on device" if exc.errno in NO_SPACE else (exc.strerror or str(exc))
    return OutputError(f"cannot write {path or exc.filename or 'the output'}: {reason}"
                       + ("; free some space and rerun" if exc.errno in NO_SPACE else ""))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; move it into place only on success.

    On any exception (Ctrl-C and disk-full included) the temporary file is removed and the
    target is untouched, so no half-written artifact is ever left behind. An OSError while
    writing (a full disk, a quota) becomes OutputError "cannot write PATH: ..." (exit 5).
    """
    path = Path(path)
    tmp_path: Path | None = None
    parent = path.parent if str(path.parent) else Path(".")
    created = [d for d in (parent, *parent.parents) if not d.exists()]  # folders to remove on failure
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent or ".")
        os.close(fd)
        tmp_path = Path(tmp)
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; artifacts get the usual permissions
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException as exc:
        if tmp_path is not None:
            with contextlib.suppress(OSError):
                tmp_path.unlink()
        for folder in created:
            with contextlib.suppress(OSError):
                folder.rmdir()
        if isinstance(exc, OSError):
            raise cannot_write(path, exc) from exc
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    write_bytes_atomic(path, (json.dumps(obj, indent=2, sort_keys=False, default=json_default) + "\n").encode())


def json_default(obj: Any) -> Any:
    """``json.dumps``'s ``default`` for vitdeploy's documents: paths, numpy values, sets/tuples, read-only mappings."""
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):  # numpy scalars/arrays
        return obj.tolist()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if isinstance(obj, Mapping):  # a read-only mapping (types.MappingProxyType: a manifest's raw JSON)
        return dict(obj)
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
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"manifest {path} is unreadable: {exc}; fix or delete it") from exc
    _check_manifest(path, data)
    if data.get("artifact") not in (None, Path(artifact).name):
        # A renamed copy (model.onnx + model.json copied to deit.onnx + deit.json) is the same artifact:
        # its recorded digest says so. Anything else beside it describes another file.
        if data.get("sha256") and Path(artifact).is_file() and sha256_file(artifact) == data["sha256"]:
            return data
        if required:
            raise InputError(f"manifest {path} describes {data.get('artifact')!r}, not {Path(artifact).name}")
        return None
    return data


_OBJECT_FIELDS = ("model", "input", "output", "batch", "preprocessing", "export", "quantization", "parity")


def _check_manifest(path: Path, data: Any) -> None:
    """InputError when a manifest is not the shape vitdeploy writes (the fields later stages read)."""
    def bad(what: str) -> InputError:
        return InputError(f"manifest {path} is malformed ({what}); re-export the model or delete the manifest")

    if not isinstance(data, dict):
        raise bad(f"a JSON {type(data).__name__}, not an object")
    wrong = [k for k in _OBJECT_FIELDS if data.get(k) is not None and not isinstance(data[k], dict)]
    if wrong:
        raise bad(f"{wrong[0]!r} should be an object")
    batch = data.get("batch")
    if batch is not None:
        nums = [batch.get("min"), batch.get("opt", batch.get("min")), batch.get("max")]
        if not all(isinstance(n, int) and not isinstance(n, bool) for n in nums) or not 1 <= nums[0] <= nums[1] <= nums[2]:
            raise bad(f"batch {batch} is not 1 <= min <= opt <= max")


def has_random_weights(manifest: Mapping[str, Any] | None) -> bool:
    """Whether a manifest describes a zoo model exported without a checkpoint: a random network,
    on which which class wins is noise (closeness of outputs still means something)."""
    from vitdeploy.core.manifest import Manifest

    m = Manifest.coerce(manifest)
    return m is not None and m.random_weights
