"""Shared fixtures. Tests run on a CPU-only machine; torch uses one thread (2 threads collapse under load).

The remote-device fixtures (test_remote.py, test_fleet.py): the session starts a real sshd on
127.0.0.1 (temporary host and client keys, an unprivileged port, ``-f`` config) and talks to it
through ssh with a temporary ssh config and known_hosts (VITDEPLOY_SSH_CONFIG), so the user's
~/.ssh is untouched. Its aliases: ``device`` and ``device2`` (the same sshd, each with its own
device cache and vitdeploy cache, sent as VITDEPLOY_REMOTE_CACHE and VITDEPLOY_CACHE, as two machines
would have) and ``offline`` (a closed port). The device venv has
no system site-packages: only vitdeploy's core dependencies (and onnxruntime, pytest for the fake
TensorRT) are linked in from this Python.
"""

from __future__ import annotations

import getpass
import importlib.metadata as md
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # the torch-free checks run without it
    torch = None

SSHD = Path("/usr/sbin/sshd")
TESTS = Path(__file__).resolve().parent
DEVICE_DISTS = ("numpy", "onnx", "typer", "rich", "pillow", "onnxruntime", "pytest")  # pytest: test_trt_fakes imports it
DEVICE_ALIASES = ("device", "device2", "device3")


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
    """A fresh $VITDEPLOY_CACHE per test: statistics and decoded sets of one test never serve another."""
    monkeypatch.setenv("VITDEPLOY_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def cli(capsys):
    """Run the CLI in-process: returns (exit_code, stdout, stderr)."""
    from vitdeploy.cli import run

    def invoke(*args: str):
        code = run([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return invoke


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
    """A running sshd on 127.0.0.1; yields {host: the first alias, ssh_config, cache: its device cache,
    caches: alias -> device cache, venv: the device venv, root: the session's folder}."""
    if not SSHD.exists() or not shutil.which("ssh"):
        pytest.skip("OpenSSH server/client not installed (.ci/run installs openssh-server)")
    root = tmp_path_factory.mktemp("remote")
    venv = _device_venv(root)
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege-separation folder (Debian creates it at boot)
    _keygen(root / "host_key")
    _keygen(root / "id")
    shutil.copy(root / "id.pub", root / "authorized_keys")
    caches = {alias: root / f"{alias}-cache" for alias in DEVICE_ALIASES}
    port = _free_port()
    (root / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {root / 'host_key'}\nAuthorizedKeysFile {root / 'authorized_keys'}\n"
        f"PidFile {root / 'sshd.pid'}\nUsePAM no\nStrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        f"PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nAcceptEnv VITDEPLOY_REMOTE_CACHE VITDEPLOY_CACHE\n")
    host_pub = (root / "host_key.pub").read_text().split()
    (root / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    common = (f"  HostName 127.0.0.1\n  User {getpass.getuser()}\n  IdentityFile {root / 'id'}\n  IdentitiesOnly yes\n"
              f"  IdentityAgent none\n  UserKnownHostsFile {root / 'known_hosts'}\n  GlobalKnownHostsFile /dev/null\n"
              "  StrictHostKeyChecking yes\n  LogLevel ERROR\n")
    (root / "ssh_config").write_text(
        "".join(f"Host {alias}\n  Port {port}\n  SetEnv VITDEPLOY_REMOTE_CACHE={cache} VITDEPLOY_CACHE={cache}-home\n{common}"
                for alias, cache in caches.items())
        + f"Host offline\n  Port {_free_port()}\n{common}")
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
        yield {"host": DEVICE_ALIASES[0], "ssh_config": root / "ssh_config", "cache": caches[DEVICE_ALIASES[0]],
               "caches": caches, "venv": venv, "root": root}
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def remote(device, monkeypatch):
    monkeypatch.setenv("VITDEPLOY_SSH_CONFIG", str(device["ssh_config"]))
    return device


@pytest.fixture(scope="session")
def fake_trt_python(device):
    """A --remote-python wrapper: the device venv with a fake TensorRT 10.3 package on PYTHONPATH, its
    CUDA faked too (host memory), so engines build, run, bench and validate there."""
    fake = device["root"] / "fake-trt"
    (fake / "tensorrt").mkdir(parents=True)
    (fake / "tensorrt" / "__init__.py").write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(TESTS)!r})\n"
        "from test_trt_fakes import FakeCuda, make_fake_trt\n"
        "import vitdeploy.trt.cuda\n"
        "_cuda = FakeCuda()\n"
        "vitdeploy.trt.cuda.Cuda = lambda rt=None: _cuda\n"
        "_fake = make_fake_trt('10.3.0', cuda=_cuda)\n"
        "_fake.__spec__, _fake.__file__ = __spec__, __file__\n"
        "sys.modules[__name__] = _fake\n")
    wrapper = device["root"] / "python-with-fake-trt"
    wrapper.write_text(f"#!/bin/sh\nPYTHONPATH={fake} exec {device['venv'] / 'bin' / 'python'} \"$@\"\n")
    wrapper.chmod(0o755)
    return str(wrapper)


@pytest.fixture(scope="session")
def dropping_python(device, fake_trt_python):
    """A --remote-python wrapper that drops the ssh connection mid-run: the handshake works, then
    `build-engine` kills the device's sshd session process (the network going away under a build)."""
    wrapper = device["root"] / "python-that-drops"
    wrapper.write_text(
        "#!/bin/sh\n"
        'case " $* " in *" build-engine "*)\n'
        '  p=$$\n'
        '  while [ "$p" -gt 1 ]; do\n'
        '    case "$(ps -o comm= -p "$p")" in sshd*) kill -9 "$p"; exit 1;; esac\n'
        '    p=$(ps -o ppid= -p "$p" | tr -d " ")\n'
        "  done;;\n"
        "esac\n"
        f'exec {fake_trt_python} "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


@pytest.fixture(scope="module")
def digit_data(tmp_path_factory):
    """scikit-learn's digits split for training and held-out evaluation (tests/digits.py)."""
    import digits

    return digits.split_digit_data(tmp_path_factory.mktemp("digits"))


@pytest.fixture(scope="session")
def digits_vit_tiny(tmp_path_factory):
    """vit_tiny_test trained once per session on scikit-learn's digits (1000 steps, ~20 s), shared by
    the validate and deploy tests: {images, labels, train_idx, test_idx, checkpoint (a state dict .pth)}.
    Seeded before anything is built, so the weights are the same whatever ran before."""
    import numpy as np
    import torch

    import digits
    from vitdeploy.models import create_model, get_spec

    torch.manual_seed(0)
    np.random.seed(0)
    images, labels = digits.digit_images(32)
    train_idx, test_idx = digits.split(len(images))
    x = digits.preprocessed(images, get_spec("vit_tiny_test").preprocessing())
    model = digits.train(create_model("vit_tiny_test"), x[train_idx], labels[train_idx], steps=1000)
    root = tmp_path_factory.mktemp("digits-vit")
    torch.save(model.state_dict(), root / "vit.pth")
    return {"images": images, "labels": labels, "train_idx": train_idx, "test_idx": test_idx, "checkpoint": root / "vit.pth"}
