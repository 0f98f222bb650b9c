"""`--remote` against a real OpenSSH server on 127.0.0.1 whose "device" is a torch-free vitdeploy venv
(the fixtures ``device``, ``remote`` and ``fake_trt_python`` are in conftest.py, shared with test_fleet.py)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from test_trt_fakes import tiny_onnx
from vitdeploy.core.errors import RemoteError
from vitdeploy.core.io import sha256_file
from vitdeploy.data.sources import content_key


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


def test_unreachable_device_is_exit_11(cli, remote, tmp_path):
    model = tiny_onnx(tmp_path)
    rc, _, err = cli("build-engine", model, "--fp16", "--remote", "nobody@127.0.0.1:1")
    assert rc == 11 and "cannot reach" in err


@pytest.mark.slow  # whole vitdeploy commands over ssh on the device venv
def test_remote_build_comes_back_with_matching_hashes(cli, remote, fake_trt_python, tmp_path):
    from vitdeploy.core.io import read_manifest, sha256_file

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
    from vitdeploy.pipeline import remote as rm
    from vitdeploy.pipeline import upload as up

    model = tiny_onnx(tmp_path, name="killed")
    big = tmp_path / "big.bin"
    big.write_bytes(np.random.default_rng(1).bytes(3 << 20))
    config = rm.RemoteConfig.create("device", fake_trt_python)
    real_stream = up._stream

    def cut(proc, chunks):  # the first MiB of big.bin, then the connection dies
        for chunk in chunks:
            if len(chunk) == up.CHUNK:
                proc.stdin.write(chunk)
                proc.kill()
                raise BrokenPipeError
            proc.stdin.write(chunk)

    monkeypatch.setattr(up, "_stream", cut)
    device = rm.Device(config)
    with pytest.raises(RemoteError, match="lost while sending big.bin"):
        rm.upload(device, [rm.Upload(model), rm.Upload(big)])
    monkeypatch.setattr(up, "_stream", real_stream)
    big_key = content_key(big)
    deadline = time.monotonic() + 10
    while _partials(remote["cache"]) and time.monotonic() < deadline:  # the device's trap runs as sshd hangs up
        time.sleep(0.1)
    assert not _partials(remote["cache"]) and not (remote["cache"] / big_key / up.BLOB).exists()
    assert (remote["cache"] / content_key(model) / up.BLOB).exists()

    _, _, sent, reused = rm.upload(device, [rm.Upload(model), rm.Upload(big)])
    assert sent == ["big.bin"] and sorted(reused) == ["killed.json", "killed.onnx"]
    assert sha256_file(remote["cache"] / big_key / up.BLOB) == big_key


def _strip(doc):
    """A result document's structure: keys and types, not figures."""
    if isinstance(doc, dict):
        return {k: _strip(v) for k, v in doc.items() if k not in ("conditions", "created", "path", "seconds")}
    if isinstance(doc, list):
        return [_strip(v) for v in doc[:1]]
    return type(doc).__name__ if not isinstance(doc, (int, float)) or isinstance(doc, bool) else "number"


@pytest.mark.slow  # whole vitdeploy commands over ssh on the device venv
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


@pytest.mark.slow  # whole vitdeploy commands over ssh on the device venv
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


@pytest.mark.slow  # two whole jobs over ssh queued on one device (~4 s)
def test_runs_on_one_device_take_turns(remote, tmp_path):
    import fcntl
    import threading

    from vitdeploy.pipeline import remote as rm

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
    from vitdeploy.pipeline import remote as rm
    from vitdeploy.pipeline import upload as up

    folder = tmp_path / "images"
    (folder / "0").mkdir(parents=True)
    (folder / "0" / "a.png").write_bytes(b"not really a png")
    (folder / "1.txt").write_text("one")
    device = rm.Device(rm.RemoteConfig.create("device"))
    _, links, sent, reused = rm.upload(device, [rm.Upload(folder)])
    key = content_key(folder)
    assert sent == ["images"] and not reused and links == {"in0/images": f"{key}/{up.BLOB}"}
    assert (remote["cache"] / key / up.BLOB / "0" / "a.png").read_bytes() == b"not really a png"
    assert rm.upload(device, [rm.Upload(folder)])[2:] == ([], ["images"])


def test_a_folder_cut_short_at_a_file_boundary_is_not_kept(remote, tmp_path, monkeypatch):
    """tar extracts a stream cut between two files without an error: the device checks the folder
    against its content key before keeping it."""
    from vitdeploy.pipeline import remote as rm
    from vitdeploy.pipeline import upload as up

    folder = tmp_path / "calib"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.png").write_bytes(bytes([i]) * 1000)
    real = up._tar_chunks

    def cut(path):  # every file but the last, then the tar's end: a clean-looking, short archive
        import io
        import tarfile

        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w|") as tar:
            for p in sorted(path.rglob("*"))[:-1]:
                tar.add(p, arcname=p.relative_to(path).as_posix(), recursive=False)
        yield buf.getvalue()

    monkeypatch.setattr(up, "_tar_chunks", cut)
    device = rm.Device(rm.RemoteConfig.create("device", str(remote["venv"] / "bin" / "python")))
    with pytest.raises(RemoteError, match="arrived incomplete"):
        rm.upload(device, [rm.Upload(folder)])
    key = content_key(folder)
    assert not (remote["cache"] / key / up.BLOB).exists() and not _partials(remote["cache"])
    monkeypatch.setattr(up, "_tar_chunks", real)
    _, _, sent, _ = rm.upload(device, [rm.Upload(folder)])
    assert sent == ["calib"] and sorted(p.name for p in (remote["cache"] / key / up.BLOB).iterdir()) == ["0.png", "1.png", "2.png"]


@pytest.mark.slow  # whole vitdeploy commands over ssh on the device venv
def test_equal_files_under_two_names_both_reach_the_job(cli, remote, tmp_path):
    """One blob per content, linked under every name: a copy of an input is not a dangling link."""
    model = tiny_onnx(tmp_path)
    copy = tmp_path / "copy.onnx"
    shutil.copy(model, copy)
    rc, out, err = cli("bench", model, copy, "--iterations", "2", "--warmup", "0", "--json", "--remote", "device",
                       "--remote-python", remote["venv"] / "bin" / "python")
    assert rc == 0, err
    assert [r["artifact"] for r in json.loads(out)["results"]] == ["tiny.onnx", "copy.onnx"]


def test_device_python_under_home_is_expanded_there(remote):
    from vitdeploy.pipeline import remote as rm

    assert rm.shell_path("~/venv/bin/python") == '"$HOME"/venv/bin/python'
    assert rm.shell_path("/opt/v b/python") == "'/opt/v b/python'"


def test_a_list_of_image_paths_is_refused_with_remote(cli, remote, tmp_path):
    model = tiny_onnx(tmp_path)
    (tmp_path / "list.txt").write_text("a.png\n")
    rc, _, err = cli("validate", model, model, "--data", tmp_path / "list.txt", "--remote", "device")
    assert rc == 2 and "names files on this machine" in err and "Traceback" not in err
