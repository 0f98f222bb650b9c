"""Run vitdeploy commands on another machine (a Jetson) over the system's OpenSSH client.

CACHE below is the device's ``$VITDEPLOY_REMOTE_CACHE``, default ``~/.cache/vitdeploy/remote``. A run is:

1. handshake: ``PYTHON -m vitdeploy env --json`` on the device (its vitdeploy, Python, TensorRT,
   GPU, JetPack and power mode), before anything is copied (vitdeploy.pipeline.ssh);
2. content-addressed upload: each input goes to ``CACHE/<sha256>/data``, streamed to a temporary
   name, checked against its content key there (a file's sha256, a folder's list of file hashes)
   and only then renamed, so a dropped connection leaves no partial file or folder and a re-run
   sends only what is missing (vitdeploy.pipeline.upload);
3. the command itself, ``PYTHON -m vitdeploy ... --json``, in a job folder holding hard links to
   the cached inputs, under ``flock CACHE/device.lock`` (one job at a time on a device);
4. results streamed back into the local paths through vitdeploy.core.io's atomic writers (all replaced
   together, only once all arrived), their hashes checked against their manifests (``check_fetched``).

This module is the public API the CLI and the fleet use: ``remote_job`` / ``Job``, ``run_remote``,
``check_fetched``, ``conditions``, and the transport and upload names they take (re-exported).

Errors: the device unreachable or the connection lost: RemoteError (exit 11); vitdeploy, Python or
TensorRT missing there: MissingDependencyError (exit 7, says what to install); another vitdeploy
version there: CompatibilityError (exit 10); the remote command's own failure: RemoteCommandError
with the remote exit code and its one-line message.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vitdeploy.core import manifest as manifests
from vitdeploy.core.errors import RemoteError
from vitdeploy.core.io import manifest_path, sha256_file
from vitdeploy.core.manifest import Manifest
from vitdeploy.pipeline.ssh import Device, RemoteCommandError, RemoteConfig, shell_path
from vitdeploy.pipeline.upload import Upload, upload

__all__ = ["Device", "Job", "RemoteCommandError", "RemoteConfig", "RemoteRun", "Upload", "check_fetched", "conditions",
           "remote_job", "run_remote", "shell_path", "upload"]


@dataclass
class RemoteRun:
    """What a remote command gave: its JSON document, the device's environment (``vitdeploy env``),
    the names sent and those already on the device, and the local files brought back."""

    doc: Any
    env: dict[str, Any]
    sent: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)


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
    return RemoteRun(doc=job.relabel(doc), env=job.env, sent=job.sent, reused=job.reused)


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
