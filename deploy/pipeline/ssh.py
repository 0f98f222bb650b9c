"""The ssh transport to a device (a Jetson): its settings, the commands run there, and the errors.

Everything goes through the system's OpenSSH client (BatchMode, host-key checking on), so
``~/.ssh/config``, keys, the agent and jump hosts work and no password is ever handled here. CACHE
is the device's ``$VITDEPLOY_REMOTE_CACHE``, default ``~/.cache/vitdeploy/remote``. ``Device``
runs shell scripts there (``run``), checks its vitdeploy and TensorRT (``handshake``), makes job
folders linking cached inputs (``job``), runs ``vitdeploy ... --json`` in one under ``flock
CACHE/device.lock`` (``vitdeploy``) and brings results back atomically (``fetch``). Sending inputs
into the cache is vitdeploy.pipeline.upload's; the remote job built from both, vitdeploy.pipeline.remote's.

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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from vitdeploy.core.errors import CompatibilityError, MissingDependencyError, RemoteError, VitdeployError
from vitdeploy.core.io import atomic_path

# what ssh says when an established connection goes away (as opposed to one that never came up)
_DROPPED = ("closed by remote host", "reset by peer", "Broken pipe", "Timeout, server")

SSH_CONFIG_ENV = "VITDEPLOY_SSH_CONFIG"  # an ssh config file passed as `ssh -F` (tests, CI); default: ssh's own
CACHE = '"${VITDEPLOY_REMOTE_CACHE:-$HOME/.cache/vitdeploy/remote}"'  # on the device (shell expression)
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


def shell_path(path: str) -> str:
    """``path`` quoted for the device's shell, a leading ``~/`` left to that shell (the device's home)."""
    return '"$HOME"/' + shlex.quote(path[2:]) if path.startswith("~/") else shlex.quote(path)


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
            last = last_line(done.stderr) or "ssh failed"
            what = "lost the connection to" if any(s in last for s in _DROPPED) else "cannot reach"
            raise RemoteError(f"{what} {self.config.host}: {last}")
        if check and done.returncode != 0:
            raise RemoteError(f"{self.config.host}: remote command failed ({last_line(done.stderr) or f'exit {done.returncode}'})")
        return done

    def handshake(self, need_tensorrt: bool) -> dict[str, Any]:
        """The device's ``vitdeploy env --json``; refuses a device without vitdeploy (or TensorRT
        when ``need_tensorrt``) with what to install (exit 7), and another vitdeploy version (exit 10)."""
        from vitdeploy import __version__

        py = self.config.python
        done = self.run(f"{shell_path(py)} -m vitdeploy env --json", check=False)
        host = self.config.host
        if done.returncode == 127 or "not found" in last_line(done.stderr) and done.returncode != 0:
            raise MissingDependencyError(f"{host}: {py} not found; install vitdeploy there: {JETSON_INSTALL}")
        if "No module named vitdeploy" in done.stderr:
            raise MissingDependencyError(f"{host}: vitdeploy is not installed for {py}; install it: {JETSON_INSTALL}")
        try:
            env = json.loads(done.stdout)
        except json.JSONDecodeError:
            raise RemoteError(f"{host}: `{py} -m vitdeploy env --json` failed: {last_line(done.stderr) or 'no output'}") from None
        if env.get("vitdeploy") != __version__:
            raise CompatibilityError(f"{host} has vitdeploy {env.get('vitdeploy')}, this machine {__version__}: "
                                     f"install the same version on both")
        trt = (env.get("packages") or {}).get("tensorrt") or {}
        if need_tensorrt and (not trt.get("installed") or trt.get("error")):
            why = f"fails to import ({trt['error']})" if trt.get("error") else "is not installed"
            raise MissingDependencyError(f"{host}: TensorRT {why} for {py}: {TENSORRT_INSTALL}")
        return env

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
                              f"{last_line(proc.stderr.decode(errors='replace')) or f'exit {proc.returncode}'}")


def last_line(text: str) -> str:
    """The last non-blank line of ``text`` (ssh's or a remote command's stderr), stripped; "" if none."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def _error_line(stderr: str) -> str:
    """The remote CLI's one error line (``error: ...``), else its last line."""
    errors = [ln.strip() for ln in stderr.splitlines() if ln.strip().startswith(("error:", "internal error:"))]
    return (errors[-1].removeprefix("error:").strip() if errors else last_line(stderr))
