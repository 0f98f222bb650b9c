"""`vitdeploy build-engine` through the CLI: exit codes, and a full run against a fake TensorRT."""

from __future__ import annotations

import importlib.util
import json

import pytest

from test_trt_fakes import make_fake_trt, tiny_onnx


@pytest.fixture(autouse=True)
def registered():
    """build-engine is registered here until the lead wires engine_cmd into vitdeploy.cli."""
    from vitdeploy import cli
    from vitdeploy.cli import engine_cmd

    before = list(cli.app.registered_commands)
    if "build-engine" not in {c.name for c in before}:
        engine_cmd.register(cli.app)
    yield
    cli.app.registered_commands[:] = before  # leave the app as the other test files expect it


@pytest.fixture
def model(tmp_path):
    return tiny_onnx(tmp_path)


@pytest.fixture
def fake_trt(monkeypatch):
    import vitdeploy.core.sysinfo
    import vitdeploy.engine.build
    import vitdeploy.trt.cuda
    from vitdeploy.core.deps import require

    trt = make_fake_trt("10.3.0")
    monkeypatch.setattr(vitdeploy.engine.build, "require", lambda name, purpose=None: trt if name == "tensorrt" else require(name, purpose))
    monkeypatch.setattr(vitdeploy.trt.cuda, "gpu_info", lambda: {"name": "Orin (fake)", "compute_capability": "8.7"})
    monkeypatch.setattr(vitdeploy.core.sysinfo, "jetson_info", lambda root=None: {"l4t": "36.4.3", "jetpack": "6.1/6.2"})
    return trt


def test_help_lists_examples_and_exit_codes(cli):
    code, out, _ = cli("build-engine", "--help")
    assert code == 0
    for needle in ("--fp16", "--int8", "--calib", "--dynamic-batch", "--timing-cache", "--dla", "--no-gpu-fallback",
                   "--hardware-compat", "--version-compatible", "--builder-opt-level", "--workspace", "Examples", "Exit codes"):
        assert needle in out, needle


@pytest.mark.parametrize("args,code,needle", [
    (["--fp16", "--int8", "--high-precision", "fp32"], 2, "choose one"),
    (["--fp16", "--high-precision", "fp32"], 2, "--int8 option"),
    (["--int8"], 2, "no Q/DQ nodes"),
    (["--dla", "0"], 2, "--dla needs --fp16 or --int8"),
    (["--workspace", "lots"], 2, "invalid size"),
    (["--dynamic-batch", "8:4:2"], 2, "MIN <= OPT <= MAX"),
    (["--builder-opt-level", "9"], 2, "0-5"),
    (["-o", "X.onnx"], 2, "give an engine path"),
])
def test_option_errors(cli, model, args, code, needle):
    rc, _, err = cli("build-engine", model, *args)
    assert rc == code and needle in err


def test_missing_model(cli, tmp_path):
    rc, _, err = cli("build-engine", tmp_path / "nope.onnx")
    assert rc == 3 and "not found" in err


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="tensorrt is installed here")
def test_missing_tensorrt_is_exit_7_after_validation(cli, model):
    rc, _, err = cli("build-engine", model, "--fp16")
    assert rc == 7 and "tensorrt is not installed" in err and "JetPack" in err


def test_build_with_fake_tensorrt(cli, model, fake_trt):
    rc, out, err = cli("build-engine", model, "--fp16", "--workspace", "256MiB", "--json")
    assert rc == 0, err
    m = json.loads(out)
    assert m["precision"] == "fp16" and m["tensorrt"]["version"] == "10.3.0" and m["artifact"] == "tiny.fp16.trt.engine"
    assert m["build_options"]["workspace_bytes"] == 256 << 20 and m["jetson"]["jetpack"] == "6.1/6.2"
    assert model.with_name("tiny.fp16.trt.engine").exists() and model.with_name("tiny.fp16.trt.json").exists()
    rc, _, err = cli("build-engine", model, "--fp16")
    assert rc == 5 and "--force" in err
    rc, out, err = cli("build-engine", model, "--fp16", "--force")
    assert rc == 0 and "FP16 engine" in out and "10.3.0 (strongly typed)" in out and "Orin (fake)" in out
