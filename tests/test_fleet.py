"""`vitdeploy deploy --devices`: a fleet of "devices" that are ssh aliases of the sshd on 127.0.0.1
(conftest.py: ``device`` and ``device2``, each with its own device cache, and ``offline``, a closed
port), running the torch-free venv with the fake TensorRT and CUDA (``fake_trt_python``)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from vitdeploy.core.errors import UsageError
from vitdeploy.pipeline.fleet import DeviceSpec, load_devices, power_mode_warning


def _toml(path: Path, devices: list[dict]) -> Path:
    path.write_text("".join("[[device]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in d.items()) + "\n" for d in devices))
    return path


@pytest.mark.parametrize(("text", "message"), [
    ("[[device]]\nname = 'a'\n", "device 1: key 'host' missing"),
    ("[[device]]\nname = 'a'\nhost = 'h'\nport = 22\n", "device 1: unknown key 'port'"),
    ("[[device]]\nname = 'a'\nhost = 'h'\n[[device]]\nname = 'a'\nhost = 'g'\n", "device 2: key 'name' = 'a' is given twice"),
    ("[[device]]\nname = 'a/b'\nhost = 'h'\n", "key 'name' = 'a/b'"),
    ("[[device]]\nname = 'a'\nhost = 3\n", "key 'host' must be a non-empty string"),
    ("[devices]\nname = 'a'\n", "unknown key 'devices'"),
    ("name = \n", "is not valid TOML"),
])
def test_malformed_devices_file_is_one_line_naming_the_key(tmp_path, text, message):
    path = tmp_path / "devices.toml"
    path.write_text(text)
    with pytest.raises(UsageError, match=re.escape(message)) as info:
        load_devices(path)
    assert "\n" not in str(info.value) and info.value.exit_code == 2


def test_devices_file_parses_to_typed_specs_and_power_modes(tmp_path):
    path = _toml(tmp_path / "devices.toml", [{"name": "nano", "host": "me@nano", "power_mode": 0, "ssh_config": "fleet.cfg"},
                                             {"name": "agx", "host": "agx", "python": "/opt/v/bin/python"}])
    nano, agx = load_devices(path)
    assert nano == DeviceSpec("nano", "me@nano", None, "0", tmp_path / "fleet.cfg")
    assert agx.remote().python == "/opt/v/bin/python" and nano.remote().ssh_config == tmp_path / "fleet.cfg"
    assert power_mode_warning(nano, "mode 0") is None and power_mode_warning(agx, None) is None
    assert "expects 0" in power_mode_warning(nano, "MAXN")


def test_devices_need_engines_built_there(tmp_path):
    from vitdeploy.pipeline.run import DeployConfig

    spec = DeviceSpec("nano", "nano")
    for bad in ({"engines": "never"}, {"int8_target": "ort-cpu"}):
        with pytest.raises(UsageError, match="--devices builds TensorRT engines on the devices"):
            DeployConfig(model="vit_tiny_test", out=tmp_path, devices=(spec,), **bad)


@pytest.mark.slow  # ~35 s: export, quantize, then three devices over ssh
def test_fleet_report_has_a_column_per_device_and_survives_a_device_down(cli, remote, fake_trt_python, dropping_python,
                                                                         tmp_path, monkeypatch):
    from vitdeploy.calib.builtin import write_builtin_sample
    from vitdeploy.core.io import read_manifest, sha256_file

    monkeypatch.setenv("COLUMNS", "80")
    calib = tmp_path / "calib"
    write_builtin_sample(calib)
    out = tmp_path / "out"
    orin = {"name": "orin", "host": "device", "python": fake_trt_python, "power_mode": "MAXN"}
    args = ("deploy", "vit_tiny_test", "--calib", calib, "--batch", "1,2", "--iterations", "3", "--out", out)

    # two devices: one report, a column each, engines back with their manifests' hashes
    devices = _toml(tmp_path / "two.toml", [orin, {"name": "xavier", "host": "device2", "python": fake_trt_python}])
    rc, stdout, err = cli(*args, "--devices", devices)
    # the fake engines compute nothing like the model: their verdicts fail, and that is exit 6 (after the report)
    assert rc == 6 and "failed validation" in err.strip().splitlines()[-1], err
    assert max(len(line) for line in stdout.splitlines() if not re.match(r"\w+: /", line)) <= 80, stdout
    assert re.search(r"orin\s+xavier", stdout) and "TensorRT" in stdout and "fp16 ms @2" in stdout
    report = json.loads((out / "report.json").read_text())
    assert report["schema"] == "vitdeploy.fleet-report/1" and not report["failed"]
    assert [d["name"] for d in report["devices"]] == ["orin", "xavier"]
    for d in report["devices"]:
        assert d["status"] == "ok" and d["tensorrt"] == "10.3.0" and not d["resumed"]
        assert [r["precision"] for r in d["precisions"]] == ["fp32", "fp16", "int8"]
        for row in d["precisions"]:
            assert set(row["latency"]) == {"1", "2"} and row["latency"]["2"]["p50_ms"] > 0
            assert row["validation"].startswith(("pass", "FAIL")) and row["cosine"] is not None
        for p, e in d["engines"].items():
            engine = out / e["path"]
            assert engine.parent == out / "devices" / d["name"] and engine.name.endswith(f"{'' if p == 'fp32' else p + '.'}trt.engine")
            assert e["sha256"] == sha256_file(engine) == read_manifest(engine, required=True)["sha256"]
    for alias in ("device", "device2"):  # each device's own cache, its job folders gone
        assert any(remote["caches"][alias].glob("*/data")) and not any((remote["caches"][alias] / "jobs").iterdir())
    assert any("orin: power mode unknown" in w and "expects MAXN" in w for w in report["warnings"])
    md = (out / "report.md").read_text()
    assert "|  | orin | xavier |" in md and "| TensorRT | 10.3.0 | 10.3.0 |" in md and "| fp16 ms @1 |" in md
    assert (out / "report.png").read_bytes()[:4] == b"\x89PNG"

    # orin unchanged (skipped, its result kept), a new name on device2 runs, the offline one fails, and
    # one loses its connection in the middle of its build: exit 11, the others' results kept
    devices = _toml(tmp_path / "three.toml", [orin, {"name": "xavier-2", "host": "device2", "python": fake_trt_python},
                                              {"name": "gone", "host": "offline"},
                                              {"name": "drops", "host": "device3", "python": dropping_python}])
    rc, stdout, err = cli(*args, "--devices", devices, "--json")
    assert rc == 11, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: 2 of 4 devices failed: gone (exit 11), drops (exit 11)") and "report.md" in last, err
    report = json.loads(stdout)
    by = {d["name"]: d for d in report["devices"]}
    assert by["orin"]["status"] == "ok" and by["orin"]["resumed"] and "orin: unchanged, skipped" in err
    assert by["xavier-2"]["status"] == "ok" and not by["xavier-2"]["resumed"]
    assert by["gone"]["status"] == "failed" and by["gone"]["error"]["exit_code"] == 11
    assert "cannot reach offline" in by["gone"]["error"]["message"] and report["failed"] == ["gone", "drops"]
    assert by["drops"]["status"] == "failed" and by["drops"]["error"]["exit_code"] == 11, by["drops"]
    assert by["drops"]["error"]["message"].startswith("lost the connection to device3"), by["drops"]
    drops_cache = remote["caches"]["device3"]  # nothing half-sent or half-built left there
    assert not list(drops_cache.rglob("*.partial*")) and not list(drops_cache.rglob("*.engine"))
    assert json.loads((out / "devices" / "gone" / "result.json").read_text())["status"] == "failed"
    md = (out / "report.md").read_text()
    assert "| status | ok (resumed) | ok | FAILED exit 11 |" in md and "**gone** (offline): **failed**, exit 11" in md
