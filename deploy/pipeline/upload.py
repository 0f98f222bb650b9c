"""Content-addressed upload of a remote command's inputs into the device's cache.

Each input (``Upload``: a file with its manifest and .calib cache, or a folder sent as one tar) goes
to ``CACHE/<content key>/data`` (``BLOB``), the key being a file's sha256 or a folder's list of file
hashes (vitdeploy.data.sources.content_key). It is streamed to a temporary name, checked against
its key there and only then renamed, so a dropped connection leaves no partial file or folder and a
re-run sends only what is missing (``upload``). The ssh transport is vitdeploy.pipeline.ssh's.
"""

from __future__ import annotations

import contextlib
import io
import shlex
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from vitdeploy.core.errors import InputError, RemoteError, UsageError
from vitdeploy.core.io import manifest_path
from vitdeploy.data.sources import content_key
from vitdeploy.pipeline.ssh import CACHE, Device, last_line, shell_path

BLOB = "data"  # CACHE/<content key>/data: a file or folder, linked under its names in each job folder
CHUNK = 1 << 20


@dataclass(frozen=True)
class Upload:
    """A local input of a remote command: a file (with its manifest and .calib cache when they
    exist beside it) or a folder (sent as one tar). ``key`` is its content hash."""

    path: Path

    def files(self) -> list[Path]:
        """The path itself, then its manifest and .calib cache when present. InputError if it is missing."""
        if not self.path.exists():
            raise InputError(f"{self.path} not found")
        if self.path.suffix.lower() in (".txt", ".lst"):
            raise UsageError(f"{self.path}: a list of image paths names files on this machine, not the device's; "
                             "give an image folder or a .npy/.npz (sent as it is), or HOST:/path for data on the device")
        if self.path.is_dir():
            return [self.path]
        return [self.path] + [p for p in (manifest_path(self.path), self.path.with_suffix(".calib"))
                              if p != self.path and p.is_file()]


def _stream(proc: subprocess.Popen, chunks: Iterable[bytes]) -> None:
    """Write ``chunks`` to ssh's stdin (a seam: the tests kill the connection here)."""
    assert proc.stdin is not None
    for chunk in chunks:
        proc.stdin.write(chunk)


def _file_chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            yield block


def _tar_chunks(folder: Path) -> Iterator[bytes]:
    """A tar of ``folder``'s contents, one file at a time (memory: the largest file)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w|") as tar:
        for p in sorted(folder.rglob("*")):
            tar.add(p, arcname=p.relative_to(folder).as_posix(), recursive=False)
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue()


def missing(device: Device, keys: set[str]) -> set[str]:
    """Of ``keys`` (content keys), those not yet in the device's cache (``CACHE/<key>/data``)."""
    tests = " ".join(shlex.quote(f"{k}/{BLOB}") for k in sorted(keys))
    out = device.run(f'cd {CACHE} 2>/dev/null || exit 0; for f in {tests}; do [ -e "$f" ] && echo "$f"; done; exit 0').stdout
    present = {line.split("/", 1)[0] for line in out.splitlines()}
    return set(keys) - present


def send(device: Device, path: Path, key: str) -> None:
    """Stream one file (or folder) into the cache under a temporary name, check it, rename it.

    A dropped connection leaves only the temporary name, which the device removes (trap, or a
    hash or tar check that fails on truncated data)."""
    if path.is_dir():  # a tar cut at a file boundary extracts cleanly: check the folder's own key there
        key_of = (f'{shell_path(device.config.python)} -c "import pathlib, sys; from vitdeploy.data.sources import '
                  f'content_key; print(content_key(pathlib.Path(sys.argv[1])))" "$t"')
        receive, check, chunks = 'mkdir "$t" && tar -xf - -C "$t"', f'[ "$({key_of})" = {key} ]', _tar_chunks(path)
    else:
        receive, check, chunks = 'cat > "$t"', f'[ "$(sha256sum < "$t" | cut -d" " -f1)" = {key} ]', _file_chunks(path)
    script = (f'set -e; d={CACHE}/{key}; mkdir -p "$d"; t="$d/.partial.$$"; trap \'rm -rf "$t"\' EXIT HUP INT TERM PIPE; '
              f'{receive}; {check}; rm -rf "$d"/{BLOB}; mv "$t" "$d"/{BLOB}')
    with tempfile.TemporaryFile() as err:  # a file, not a pipe: a chatty remote cannot block the upload
        proc = subprocess.Popen(device.ssh_command(script), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err)
        assert proc.stdin is not None
        try:
            _stream(proc, chunks)
        except OSError:  # the connection broke: ssh's exit status and message say how
            pass
        finally:
            with contextlib.suppress(OSError, ValueError):
                proc.stdin.close()
            proc.wait()
        err.seek(0)
        message = last_line(err.read().decode(errors="replace"))
    if proc.returncode == 1 and not message:  # the content check (`[ ... ]` under set -e) failed
        raise RemoteError(f"{path.name} arrived incomplete on {device.config.host} (its content check failed): "
                          "nothing partial is kept; rerun to send it again")
    if proc.returncode != 0:
        raise RemoteError(f"connection to {device.config.host} lost while sending {path.name}"
                          f" ({message or f'exit {proc.returncode}'}): nothing partial is kept; rerun to send what is missing")


def upload(device: Device, inputs: list[Upload], on_send: Callable[[str], None] | None = None
           ) -> tuple[dict[Path, str], dict[str, str], list[str], list[str]]:
    """Send what the device lacks. Returns (local file -> job-relative name, job-relative name -> cache
    entry, names sent, names reused); input i and its sidecars go to ``in<i>/`` so equal names from
    different folders do not collide."""
    keyed = {(i, p): content_key(p) for i, u in enumerate(inputs) for p in u.files()}
    lacking = missing(device, set(keyed.values()))
    sent, reused = [], []
    done: set[str] = set()
    for (_, p), k in keyed.items():
        if k in lacking and k not in done:
            if on_send:
                on_send(p.name)
            send(device, p, k)
            done.add(k)
            sent.append(p.name)
        elif k not in done:
            reused.append(p.name)
    names = {p: f"in{i}/{p.name}" for (i, p) in keyed}
    links = {f"in{i}/{p.name}": f"{k}/{BLOB}" for (i, p), k in keyed.items()}  # one blob, any number of names
    return names, links, sent, reused
