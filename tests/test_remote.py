"""`--remote` against a real OpenSSH server on 127.0.0.1 whose "device" is a torch-free vitdeploy venv.

The session starts sshd (temporary host and client keys, an unprivileged port, ``-f`` config) and
talks to it through ssh with a temporary ssh config and known_hosts (VITDEPLOY_SSH_CONFIG), so the
user's ~/.ssh is untouched. The device venv has no system site-packages: only vitdeploy's core
dependencies (and onnxruntime, pytest for the fake TensorRT) are linked in from this Python.
"""

from __future__ import annotations

import getpass
import importlib.metadata as md
import json
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np
import pytest
from test_trt_fakes import tiny_onnx

SSHD = Path("/usr/sbin/sshd")
TESTS = Path(__file__).resolve().parent
DEVICE_DISTS = ("numpy", "onnx", "typer", "rich", "pillow", "onnxruntime", "pytest")  # pytest: test_trt_fakes imports it

pytestmark = pytest.mark.skipif(not SSHD.exists() or not shutil.which("ssh"), reason="OpenSSH server/client not installed "
                                "(.ci/run installs openssh-server)")


def _closure(names: tuple[str, ...]) -> list[md.Distribution]:
    """The installed distributions ``names`` need (their non-extra requirements, for this platform)."""
    from packaging.requirements import Requirement

    todo, seen, dists = list(names), set(), []
    while todo:
        req = Requirement(todo.pop())
        key = req.name.lower().replace("_", "-")
        if key in seen or (req.marker and not req.marker.evaluate({"extra": ""})):
            continue
        seen.add(key)
        dist = md.distribution(req.name)
        dists.append(dist)
        todo += [r for r in dist.requires or [] if "extra ==" not in r]
    return dists


def _device_venv(root: Path) -> Path:
    """A venv without system site-packages holding vitdeploy (this checkout) and DEVICE_DISTS, linked in."""
    venv = root / "device-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, capture_output=True)
    site = Path(subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    system_site = Path(sysconfig.get_paths()["purelib"])
    tops: set[str] = set()
    for dist in _closure(DEVICE_DISTS) + [md.distribution("vitdeploy")]:
        for f in dist.files or []:
            first = Path(f).parts[0]
            if first != ".." and not first.endswith(".pth") and first != "__pycache__":
                tops.add(first)
    editable = [p.name for p in system_site.glob("__editable__*vitdeploy*")]
    for name in tops | set(editable):
        if (system_site / name).exists() and not (site / name).exists():
            (site / name).symlink_to(system_site / name)
    if editable:  # pip's editable finder: copy the .pth (a link to a .pth is not read)
        for pth in system_site.glob("__editable__*vitdeploy*.pth"):
            (site / pth.name).unlink()
            shutil.copy(pth, site / pth.name)
    probe = "import vitdeploy.cli, onnxruntime\nimport importlib.util as u; assert u.find_spec('torch') is None, 'torch visible'"
    check = subprocess.run([str(venv / "bin" / "python"), "-c", probe], capture_output=True, text=True, check=False)
    if check.returncode != 0:
        pytest.skip(f"cannot build the torch-free device venv offline: {check.stderr.strip().splitlines()[-1:]}")
    return venv


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


@pytest.fixture(scope="session")
def device(tmp_path_factory):
    """A running sshd on 127.0.0.1; yields (host alias, ssh config path, device cache folder, device venv, tmp root)."""
    root = tmp_path_factory.mktemp("remote")
    venv = _device_venv(root)
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege-separation folder (Debian creates it at boot)
    _keygen(root / "host_key")
    _keygen(root / "id")
    shutil.copy(root / "id.pub", root / "authorized_keys")
    cache = root / "device-cache"
    port = _free_port()
    (root / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {root / 'host_key'}\nAuthorizedKeysFile {root / 'authorized_keys'}\n"
        f"PidFile {root / 'sshd.pid'}\nUsePAM no\nStrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        f"PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nSetEnv VITDEPLOY_REMOTE_CACHE={cache}\n")
    host_pub = (root / "host_key.pub").read_text().split()
    (root / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    (root / "ssh_config").write_text(
        f"Host device\n  HostName 127.0.0.1\n  Port {port}\n  User {getpass.getuser()}\n  IdentityFile {root / 'id'}\n"
        f"  IdentitiesOnly yes\n  IdentityAgent none\n  UserKnownHostsFile {root / 'known_hosts'}\n"
        "  GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking yes\n  LogLevel ERROR\n")
    proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(root / "sshd_config")], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while True:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.skip(f"sshd did not start: {proc.stderr.read().strip()[-300:] if proc.stderr else ''}")
        time.sleep(0.1)
    try:
        yield {"host": "device", "ssh_config": root / "ssh_config", "cache": cache, "venv": venv, "root": root}
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def remote(device, monkeypatch):
    monkeypatch.setenv("VITDEPLOY_SSH_CONFIG", str(device["ssh_config"]))
    return device


@pytest.fixture(scope="session")
def fake_trt_python(device):
    """A --remote-python wrapper: the device venv with a fake TensorRT 10.3 package on PYTHONPATH."""
    fake = device["root"] / "fake-trt"
    (fake / "tensorrt").mkdir(parents=True)
    (fake / "tensorrt" / "__init__.py").write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(TESTS)!r})\n"
        "from test_trt_fakes import make_fake_trt\n"
        "_fake = make_fake_trt('10.3.0')\n"
        "_fake.__spec__, _fake.__file__ = __spec__, __file__\n"
        "sys.modules[__name__] = _fake\n")
    wrapper = device["root"] / "python-with-fake-trt"
    wrapper.write_text(f"#!/bin/sh\nPYTHONPATH={fake} exec {device['venv'] / 'bin' / 'python'} \"$@\"\n")
    wrapper.chmod(0o755)
    return str(wrapper)


def _partials(cache: Path) -> list[Path]:
    return [p for p in cache.rglob(".partial.*")] if cache.exists() else []


def test_build_engine_without_tensorrt_on_device_is_exit_7(cli, remote, tmp_path):
    model = tiny_onnx(tmp_path)
    rc, _, err = cli("build-engine", model, "--fp16", "--remote", "device", "--remote-python", remote["venv"] / "bin" / "python")
    assert rc == 7, err
    line = err.strip()
    assert "\n" not in line and "device: TensorRT is not installed" in line and "python3-libnvinfer" in line
    assert not list(tmp_path.glob("*.engine"))


def test_device_without_vitdeploy_says_what_to_install(cli, remote, tmp_path):
    model = tiny_onnx(tmp_path)
    rc, _, err = cli("build-engine", model, "--fp16", "--remote", "device", "--remote-python", "/usr/bin/python3-nope")
    assert rc == 7 and "install vitdeploy there" in err and "--remote-python" in err


def test_unreachable_device_is_exit_3(cli, remote, tmp_path):
    model = tiny_onnx(tmp_path)
    rc, _, err = cli("build-engine", model, "--fp16", "--remote", "nobody@127.0.0.1:1")
    assert rc == 11 and "cannot reach" in err


def test_remote_build_comes_back_with_matching_hashes(cli, remote, fake_trt_python, tmp_path):
    from vitdeploy.io import read_manifest, sha256_file

    model = tiny_onnx(tmp_path)
    rc, out, err = cli("build-engine", model, "--fp16", "--workspace", "256MiB", "--remote", "device",
                       "--remote-python", fake_trt_python)
    assert rc == 0, err
    engine = tmp_path / "tiny.fp16.trt.engine"
    m = read_manifest(engine, required=True)
    assert m["sha256"] == sha256_file(engine) and m["tensorrt"]["version"] == "10.3.0"
    assert m["build_options"]["workspace_bytes"] == 256 << 20
    assert "FP16 engine" in out and "10.3.0 (strongly typed)" in out
    assert "device device: vitdeploy" in err and "TensorRT 10.3.0" in err
    assert not list(tmp_path.glob(".*.partial")) and not _partials(remote["cache"])
    assert not list((remote["cache"] / "jobs").iterdir())  # the job folder is gone

    # the same inputs again: nothing new is sent; the output exists: exit 5 before any transfer
    rc, _, err = cli("build-engine", model, "--fp16", "--remote", "device", "--remote-python", fake_trt_python)
    assert rc == 5 and "--force" in err
    rc, out, err = cli("build-engine", model, "--fp16", "--force", "--json", "--remote", "device", "--remote-python", fake_trt_python)
    assert rc == 0, err
    assert "sending" not in err and "sent 0, already there 2" in err
    assert json.loads(out)["sha256"] == sha256_file(engine)


def test_killed_connection_leaves_nothing_partial_and_rerun_resumes(remote, fake_trt_python, tmp_path, monkeypatch):
    from vitdeploy import remote as rm

    model = tiny_onnx(tmp_path, name="killed")
    big = tmp_path / "big.bin"
    big.write_bytes(np.random.default_rng(1).bytes(3 << 20))
    config = rm.RemoteConfig.create("device", fake_trt_python)
    real_stream = rm._stream

    def cut(proc, chunks):  # the first MiB of big.bin, then the connection dies
        for chunk in chunks:
            if len(chunk) == rm.CHUNK:
                proc.stdin.write(chunk)
                proc.kill()
                raise BrokenPipeError
            proc.stdin.write(chunk)

    monkeypatch.setattr(rm, "_stream", cut)
    device = rm.Device(config)
    with pytest.raises(rm.RemoteError, match="lost while sending big.bin"):
        rm.upload(device, [rm.Upload(model), rm.Upload(big)])
    monkeypatch.setattr(rm, "_stream", real_stream)
    big_key = rm.content_key(big)
    deadline = time.monotonic() + 10
    while _partials(remote["cache"]) and time.monotonic() < deadline:  # the device's trap runs as sshd hangs up
        time.sleep(0.1)
    assert not _partials(remote["cache"]) and not (remote["cache"] / big_key / "big.bin").exists()
    assert (remote["cache"] / rm.content_key(model) / "killed.onnx").exists()

    _, _, sent, reused = rm.upload(device, [rm.Upload(model), rm.Upload(big)])
    assert sent == ["big.bin"] and sorted(reused) == ["killed.json", "killed.onnx"]
    assert rm.sha256_file(remote["cache"] / big_key / "big.bin") == big_key


def _strip(doc):
    """A result document's structure: keys and types, not figures."""
    if isinstance(doc, dict):
        return {k: _strip(v) for k, v in doc.items() if k not in ("conditions", "created", "path", "seconds")}
    if isinstance(doc, list):
        return [_strip(v) for v in doc[:1]]
    return type(doc).__name__ if not isinstance(doc, (int, float)) or isinstance(doc, bool) else "number"


def test_remote_bench_matches_local_structure(cli, remote, tmp_path):
    model = tiny_onnx(tmp_path)
    args = ("bench", model, "--batch", "1,2", "--iterations", "3", "--warmup", "1", "--json")
    rc, out, err = cli(*args)
    assert rc == 0, err
    local = json.loads(out)
    rc, out, err = cli(*args, "--remote", "device", "--remote-python", remote["venv"] / "bin" / "python")
    assert rc == 0, err
    there = json.loads(out)
    assert _strip(there) == _strip(local)
    assert [r["artifact"] for r in there["results"]] == [r["artifact"] for r in local["results"]] == ["tiny.onnx", "tiny.onnx"]
    rc, out, err = cli(*args[:-1], "--remote", "device", "--remote-python", remote["venv"] / "bin" / "python")
    assert rc == 0 and "batch 2 (latency in ms)" in out


def test_remote_validate_sends_data_or_uses_a_device_path(cli, remote, tmp_path):
    model = tiny_onnx(tmp_path)
    rng = np.random.default_rng(0)
    data = tmp_path / "val.npz"
    np.savez(data, images=rng.uniform(-1, 1, (6, 3, 4, 4)).astype(np.float32), labels=np.arange(6) % 10)
    args = ("validate", model, model, "--batch", "2", "--samples", "all", "--no-data-check", "--json")
    rc, out, err = cli(*args, "--data", data)
    assert rc == 0, err
    local = json.loads(out)
    py = remote["venv"] / "bin" / "python"
    rc, out, err = cli(*args, "--data", data, "--remote", "device", "--remote-python", py)
    assert rc == 0, err
    there = json.loads(out)
    assert _strip(there) == _strip(local)
    assert there["candidates"][0]["comparison"]["cosine_min"] == pytest.approx(local["candidates"][0]["comparison"]["cosine_min"])
    on_device = remote["root"] / "on-device.npz"
    shutil.copy(data, on_device)
    rc, out, err = cli(*args[:-1], "--data", f"device:{on_device}", "--remote", "device", "--remote-python", py)
    assert rc == 0 and "pass" in out and "sending val.npz" not in err, err


def test_runs_on_one_device_take_turns(remote, tmp_path):
    import fcntl
    import threading

    from vitdeploy import remote as rm

    config = rm.RemoteConfig.create("device", str(remote["venv"] / "bin" / "python"))
    remote["cache"].mkdir(parents=True, exist_ok=True)
    results = []
    with open(remote["cache"] / "device.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run holds the device (flock(1) takes the same lock)
        worker = threading.Thread(target=lambda: results.append(rm.run_remote(config, ["env"])))
        worker.start()
        worker.join(3)
        assert worker.is_alive() and not results  # waiting for the lock
        fcntl.flock(lock, fcntl.LOCK_UN)
    worker.join(30)
    assert results and results[0].doc["vitdeploy"] == results[0].env["vitdeploy"]


def test_folder_upload_is_content_addressed(remote, tmp_path):
    from vitdeploy import remote as rm

    folder = tmp_path / "images"
    (folder / "0").mkdir(parents=True)
    (folder / "0" / "a.png").write_bytes(b"not really a png")
    (folder / "1.txt").write_text("one")
    device = rm.Device(rm.RemoteConfig.create("device"))
    _, links, sent, reused = rm.upload(device, [rm.Upload(folder)])
    key = rm.content_key(folder)
    assert sent == ["images"] and not reused and links == {"in0/images": f"{key}/images"}
    assert (remote["cache"] / key / "images" / "0" / "a.png").read_bytes() == b"not really a png"
    assert rm.upload(device, [rm.Upload(folder)])[2:] == ([], ["images"])
