"""Run vitdeploy commands on another machine (a Jetson) over the system's OpenSSH client.

Everything goes through ``ssh`` (BatchMode, host-key checking on), so ``~/.ssh/config``, keys, the
agent and jump hosts work and no password is ever handled here. CACHE below is the device's
``$VITDEPLOY_REMOTE_CACHE``, default ``~/.cache/vitdeploy/remote``. A run is:

1. handshake: ``PYTHON -m vitdeploy env --json`` on the device (its vitdeploy, Python, TensorRT,
   GPU, JetPack and power mode), before anything is copied;
2. content-addressed upload: each input goes to ``CACHE/<sha256>/data``, streamed to a temporary
   name, checked against its content key there (a file's sha256, a folder's list of file hashes)
   and only then renamed, so a dropped connection leaves no partial file or folder and a re-run
   sends only what is missing;
3. the command itself, ``PYTHON -m vitdeploy ... --json``, in a job folder holding hard links to
   the cached inputs, under ``flock CACHE/device.lock`` (one job at a time on a device);
4. results streamed back into the local paths through vitdeploy.core.io's atomic writers (all replaced
   together, only once all arrived), their hashes checked against their manifests.

Errors: the device unreachable or the connection lost: RemoteError (exit 11); vitdeploy, Python or
TensorRT missing there: MissingDependencyError (exit 7, says what to install); another vitdeploy
version there: CompatibilityError (exit 10); the remote command's own failure: RemoteCommandError
with the remote exit code and its one-line message.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shlex
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from vitdeploy.core.errors import (
    CompatibilityError,
    InputError,
    MissingDependencyError,
    RemoteError,
    UsageError,
    VitdeployError,
)
from vitdeploy.core import manifest as manifests
from vitdeploy.core.io import atomic_path, manifest_path, sha256_file
from vitdeploy.core.manifest import Manifest
from vitdeploy.data.sources import content_key

BLOB = "data"  # CACHE/<content key>/data: a file or folder, linked under its names in each job folder

# what ssh says when an established connection goes away (as opposed to one that never came up)
_DROPPED = ("closed by remote host", "reset by peer", "Broken pipe", "Timeout, server")

SSH_CONFIG_ENV = "VITDEPLOY_SSH_CONFIG"  # an ssh config file passed as `ssh -F` (tests, CI); default: ssh's own
CACHE = '"${VITDEPLOY_REMOTE_CACHE:-$HOME/.cache/vitdeploy/remote}"'  # on the device (shell expression)
CHUNK = 1 << 20
JETSON_INSTALL = ("python3 -m venv --system-site-packages ~/vitdeploy && ~/vitdeploy/bin/pip install ./vitdeploy "
                  "(README, Jetson > Install), then pass --remote-python ~/vitdeploy/bin/python")
TENSORRT_INSTALL = ("sudo apt install python3-libnvinfer (JetPack), seen by a venv made with --system-site-packages; "
                    "elsewhere pip install tensorrt")


class RemoteCommandError(VitdeployError):
    """The vitdeploy command on the device failed: its exit code and its one-line message."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class RemoteConfig:
    """Where and how to run: ``host`` as ssh takes it (user@host or a ~/.ssh/config alias), the
    device's Python with vitdeploy installed, an optional ssh config file (default: $VITDEPLOY_SSH_CONFIG,
    else ssh's own), and the connect timeout in seconds."""

    host: str
    python: str = "python3"
    ssh_config: Path | None = None
    connect_timeout_s: int = 20

    @classmethod
    def create(cls, host: str, python: str | None = None, ssh_config: Path | None = None) -> RemoteConfig:
        cfg = ssh_config or os.environ.get(SSH_CONFIG_ENV)
        return cls(host=host, python=python or "python3", ssh_config=Path(cfg) if cfg else None)


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


@dataclass
class RemoteRun:
    """What a remote command gave: its JSON document, the device's environment (``vitdeploy env``),
    the names sent and those already on the device, and the local files brought back."""

    doc: Any
    env: dict[str, Any]
    sent: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    fetched: list[Path] = field(default_factory=list)


def shell_path(path: str) -> str:
    """``path`` quoted for the device's shell, a leading ``~/`` left to that shell (the device's home)."""
    return '"$HOME"/' + shlex.quote(path[2:]) if path.startswith("~/") else shlex.quote(path)


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
    import io

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w|") as tar:
        for p in sorted(folder.rglob("*")):
            tar.add(p, arcname=p.relative_to(folder).as_posix(), recursive=False)
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue()


class Device:
    """One device reached through ``ssh``. Every method raises RemoteError when ssh cannot connect."""

    def __init__(self, config: RemoteConfig) -> None:
        self.config = config

    def ssh_command(self, script: str) -> list[str]:
        """The ssh argv running ``script`` under ``sh -c`` on the device (whatever the login shell)."""
        argv = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={self.config.connect_timeout_s}",
                "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4"]
        if self.config.ssh_config is not None:
            argv += ["-F", str(self.config.ssh_config)]
        return argv + ["--", self.config.host, "sh -c " + shlex.quote(script)]

    def run(self, script: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a shell script on the device; with ``check``, a non-zero exit is a RemoteError."""
        try:
            done = subprocess.run(self.ssh_command(script), capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
        except FileNotFoundError as exc:
            raise MissingDependencyError("ssh is not installed here: install the OpenSSH client (apt install openssh-client)") from exc
        if done.returncode == 255:
            last = _last_line(done.stderr) or "ssh failed"
            what = "lost the connection to" if any(s in last for s in _DROPPED) else "cannot reach"
            raise RemoteError(f"{what} {self.config.host}: {last}")
        if check and done.returncode != 0:
            raise RemoteError(f"{self.config.host}: remote command failed ({_last_line(done.stderr) or f'exit {done.returncode}'})")
        return done

    def handshake(self, need_tensorrt: bool) -> dict[str, Any]:
        """The device's ``vitdeploy env --json``; refuses a device without vitdeploy (or TensorRT
        when ``need_tensorrt``) with what to install (exit 7), and another vitdeploy version (exit 10)."""
        from vitdeploy import __version__

        py = self.config.python
        done = self.run(f"{shell_path(py)} -m vitdeploy env --json", check=False)
        host = self.config.host
        if done.returncode == 127 or "not found" in _last_line(done.stderr) and done.returncode != 0:
            raise MissingDependencyError(f"{host}: {py} not found; install vitdeploy there: {JETSON_INSTALL}")
        if "No module named vitdeploy" in done.stderr:
            raise MissingDependencyError(f"{host}: vitdeploy is not installed for {py}; install it: {JETSON_INSTALL}")
        try:
            env = json.loads(done.stdout)
        except json.JSONDecodeError:
            raise RemoteError(f"{host}: `{py} -m vitdeploy env --json` failed: {_last_line(done.stderr) or 'no output'}") from None
        if env.get("vitdeploy") != __version__:
            raise CompatibilityError(f"{host} has vitdeploy {env.get('vitdeploy')}, this machine {__version__}: "
                                     f"install the same version on both")
        trt = (env.get("packages") or {}).get("tensorrt") or {}
        if need_tensorrt and (not trt.get("installed") or trt.get("error")):
            why = f"fails to import ({trt['error']})" if trt.get("error") else "is not installed"
            raise MissingDependencyError(f"{host}: TensorRT {why} for {py}: {TENSORRT_INSTALL}")
        return env

    def missing(self, keys: set[str]) -> set[str]:
        """Of ``keys`` (content keys), those not yet in the device's cache (``CACHE/<key>/data``)."""
        tests = " ".join(shlex.quote(f"{k}/{BLOB}") for k in sorted(keys))
        out = self.run(f'cd {CACHE} 2>/dev/null || exit 0; for f in {tests}; do [ -e "$f" ] && echo "$f"; done; exit 0').stdout
        present = {line.split("/", 1)[0] for line in out.splitlines()}
        return set(keys) - present

    def send(self, path: Path, key: str) -> None:
        """Stream one file (or folder) into the cache under a temporary name, check it, rename it.

        A dropped connection leaves only the temporary name, which the device removes (trap, or a
        hash or tar check that fails on truncated data)."""
        if path.is_dir():  # a tar cut at a file boundary extracts cleanly: check the folder's own key there
            key_of = (f'{shell_path(self.config.python)} -c "import pathlib, sys; from vitdeploy.data.sources import '
                      f'content_key; print(content_key(pathlib.Path(sys.argv[1])))" "$t"')
            receive, check, chunks = 'mkdir "$t" && tar -xf - -C "$t"', f'[ "$({key_of})" = {key} ]', _tar_chunks(path)
        else:
            receive, check, chunks = 'cat > "$t"', f'[ "$(sha256sum < "$t" | cut -d" " -f1)" = {key} ]', _file_chunks(path)
        script = (f'set -e; d={CACHE}/{key}; mkdir -p "$d"; t="$d/.partial.$$"; trap \'rm -rf "$t"\' EXIT HUP INT TERM PIPE; '
                  f'{receive}; {check}; rm -rf "$d"/{BLOB}; mv "$t" "$d"/{BLOB}')
        with tempfile.TemporaryFile() as err:  # a file, not a pipe: a chatty remote cannot block the upload
            proc = subprocess.Popen(self.ssh_command(script), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err)
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
            message = _last_line(err.read().decode(errors="replace"))
        if proc.returncode == 1 and not message:  # the content check (`[ ... ]` under set -e) failed
            raise RemoteError(f"{path.name} arrived incomplete on {self.config.host} (its content check failed): "
                              "nothing partial is kept; rerun to send it again")
        if proc.returncode != 0:
            raise RemoteError(f"connection to {self.config.host} lost while sending {path.name}"
                              f" ({message or f'exit {proc.returncode}'}): nothing partial is kept; rerun to send what is missing")

    @contextlib.contextmanager
    def job(self, links: dict[str, str]) -> Iterator[str]:
        """A fresh job folder on the device (its path, relative to the cache) with ``links``
        (relative name -> cache entry) hard-linked in (a folder: symlinked); removed afterwards, as are jobs over a day old."""
        job = f"jobs/{secrets.token_hex(6)}"
        lines = [f"cd {CACHE}", "mkdir -p jobs", "find jobs -mindepth 1 -maxdepth 1 -mmin +1440 -exec rm -rf {} + 2>/dev/null || true",
                 f"mkdir {job}"]
        for rel, entry in links.items():
            dst = shlex.quote(f"{job}/{rel}")
            lines += [f"mkdir -p $(dirname {dst})",
                      f'ln {shlex.quote(entry)} {dst} 2>/dev/null || ln -s "$PWD"/{shlex.quote(entry)} {dst}']
        self.run("set -e; " + "; ".join(lines))
        try:
            yield job
        finally:
            with contextlib.suppress(VitdeployError):
                self.run(f"cd {CACHE} && rm -rf {shlex.quote(job)}", check=False)

    def vitdeploy(self, job: str, argv: list[str], ok_codes: tuple[int, ...] = (0,)) -> Any:
        """``PYTHON -m vitdeploy ARGV --json`` in the job folder under the device lock; its JSON output.
        A failure raises RemoteCommandError with the remote exit code and error line."""
        cmd = " ".join([shell_path(self.config.python)] + [shlex.quote(a) for a in ["-m", "vitdeploy", *argv, "--json"]])
        done = self.run(f"cd {CACHE}/{shlex.quote(job)} && exec flock {CACHE}/device.lock {cmd}", check=False)
        if done.returncode in ok_codes:
            try:
                return json.loads(done.stdout)
            except json.JSONDecodeError:
                pass
        message = _error_line(done.stderr) or f"exit {done.returncode}"
        raise RemoteCommandError(f"{self.config.host}: {message}", done.returncode if done.returncode else 1)

    def fetch(self, pairs: list[tuple[str, Path]]) -> None:
        """Bring remote files (cache-relative path -> local path) back all at once: each is written
        to a temporary name beside its target and every target is replaced only when all arrived."""
        with contextlib.ExitStack() as stack:
            for remote, local in pairs:
                tmp = stack.enter_context(atomic_path(local))
                with open(tmp, "wb") as f:
                    self._cat(remote, f)

    def _cat(self, remote: str, out: IO[bytes]) -> None:
        proc = subprocess.run(self.ssh_command(f"cat {CACHE}/{shlex.quote(remote)}"), stdout=out, stderr=subprocess.PIPE,
                              stdin=subprocess.DEVNULL, check=False)
        if proc.returncode != 0:
            raise RemoteError(f"cannot bring back {remote} from {self.config.host}: "
                              f"{_last_line(proc.stderr.decode(errors='replace')) or f'exit {proc.returncode}'}")


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def _error_line(stderr: str) -> str:
    """The remote CLI's one error line (``error: ...``), else its last line."""
    errors = [ln.strip() for ln in stderr.splitlines() if ln.strip().startswith(("error:", "internal error:"))]
    return (errors[-1].removeprefix("error:").strip() if errors else _last_line(stderr))


def upload(device: Device, inputs: list[Upload], on_send: Callable[[str], None] | None = None
           ) -> tuple[dict[Path, str], dict[str, str], list[str], list[str]]:
    """Send what the device lacks. Returns (local file -> job-relative name, job-relative name -> cache
    entry, names sent, names reused); input i and its sidecars go to ``in<i>/`` so equal names from
    different folders do not collide."""
    keyed = {(i, p): content_key(p) for i, u in enumerate(inputs) for p in u.files()}
    missing = device.missing(set(keyed.values()))
    sent, reused = [], []
    done: set[str] = set()
    for (_, p), k in keyed.items():
        if k in missing and k not in done:
            if on_send:
                on_send(p.name)
            device.send(p, k)
            done.add(k)
            sent.append(p.name)
        elif k not in done:
            reused.append(p.name)
    names = {p: f"in{i}/{p.name}" for (i, p) in keyed}
    links = {f"in{i}/{p.name}": f"{k}/{BLOB}" for (i, p), k in keyed.items()}  # one blob, any number of names
    return names, links, sent, reused


@dataclass
class Job:
    """A job folder on a handshaken device holding the uploaded inputs: several commands can run in it
    (each under the device lock) and their outputs come back with ``fetch``."""

    device: Device
    folder: str  # cache-relative
    env: dict[str, Any]
    names: dict[Path, str]  # local input -> job-relative name
    sent: list[str]
    reused: list[str]

    def vitdeploy(self, argv: list[str | Upload], ok_codes: tuple[int, ...] = (0,)) -> Any:
        """``vitdeploy ARGV --json`` here, each Upload replaced by its job-relative name: its JSON document."""
        return self.device.vitdeploy(self.folder, [self.names[a.path] if isinstance(a, Upload) else a for a in argv], ok_codes)

    def fetch(self, outputs: list[tuple[str, Path]]) -> None:
        """Job-relative names -> local paths, all replaced together once all arrived."""
        self.device.fetch([(f"{self.folder}/{rel}", local) for rel, local in outputs])

    def relabel(self, obj: Any) -> Any:
        """A result document with the device paths of the inputs (``.../in<i>/name``) replaced by the local paths."""
        names = {rel: str(local) for local, rel in self.names.items()}

        def fix(o: Any) -> Any:
            if isinstance(o, dict):
                return {k: fix(v) for k, v in o.items()}
            if isinstance(o, list):
                return [fix(v) for v in o]
            if isinstance(o, str):
                return next((local for rel, local in names.items() if o == rel or o.endswith("/" + rel)), o)
            return o

        return fix(obj)


@contextlib.contextmanager
def remote_job(config: RemoteConfig, inputs: list[Upload], *, need_tensorrt: bool = False,
               on_send: Callable[[str], None] | None = None) -> Iterator[Job]:
    """Handshake, upload what the device lacks of ``inputs``, and a job folder with them (removed afterwards)."""
    device = Device(config)
    env = device.handshake(need_tensorrt)
    names, links, sent, reused = upload(device, inputs, on_send)
    with device.job(links) as folder:
        yield Job(device, folder, env, names, sent, reused)


def run_remote(config: RemoteConfig, argv: list[str | Upload], *, need_tensorrt: bool = False,
               outputs: list[tuple[str, Path]] = (), ok_codes: tuple[int, ...] = (0,),
               on_send: Callable[[str], None] | None = None) -> RemoteRun:
    """Run ``vitdeploy ARGV --json`` on the device: handshake, upload the Upload arguments (each
    replaced by its path in the job folder), run under the device lock, bring ``outputs``
    (job-relative name -> local path) back atomically. Errors as in the module docstring."""
    inputs = [a for a in argv if isinstance(a, Upload)]
    with remote_job(config, inputs, need_tensorrt=need_tensorrt, on_send=on_send) as job:
        doc = job.vitdeploy(argv, ok_codes)
        job.fetch(list(outputs))
    return RemoteRun(doc=job.relabel(doc), env=job.env, sent=job.sent, reused=job.reused, fetched=[p for _, p in outputs])


def check_fetched(artifact: Path, host: str) -> Manifest:
    """The manifest of an artifact brought back from ``host``, its sha256 checked against the file;
    on a mismatch both are removed and RemoteError says to rerun."""
    manifest = manifests.read(artifact, required=True)
    assert manifest is not None  # required=True: InputError when absent
    if manifest.sha256 != sha256_file(artifact):
        for p in (artifact, manifest_path(artifact)):
            p.unlink(missing_ok=True)
        raise RemoteError(f"{artifact} from {host} does not match its manifest's sha256; rerun")
    return manifest


def conditions(host: str, env: dict[str, Any]) -> str:
    """One line: the device's vitdeploy, Python, TensorRT, GPU and Jetson release / power mode."""
    trt = (env.get("packages") or {}).get("tensorrt") or {}
    gpus = env.get("gpus") or []
    jetson = env.get("jetson") or {}
    parts = [f"vitdeploy {env.get('vitdeploy')}", f"Python {env.get('python')}",
             f"TensorRT {trt.get('version') or 'absent'}",
             f"GPU {gpus[0]['name']} (sm {gpus[0]['compute_capability']})" if gpus else "no GPU listed"]
    if jetson:
        parts.append(f"JetPack {jetson.get('jetpack') or '?'} / L4T {jetson.get('l4t')}, power {jetson.get('power_mode') or '?'}")
    return f"device {host}: " + ", ".join(parts)
