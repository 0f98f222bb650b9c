"""The options once all called "target", renamed apart (the typed configs keep their field names):

- export/check ``--target`` -> ``--trt-version`` (TensorRT ONNX-parser versions checked against),
- quantize ``--target`` -> ``--qdq-form`` (which Q/DQ form is written),
- deploy ``--int8-target`` -> ``--qdq-form`` (the same choice, plus auto).

The old spellings stay as hidden aliases: same behaviour, one deprecation line on stderr; giving both is
a usage error (exit 2). The core functions are stubbed, so these tests only run the CLI layer (fast);
`check` runs for real.
"""

from __future__ import annotations

import onnx
import onnx.helper as oh
import pytest

from vitdeploy.core.errors import VitdeployError


class _Stop(VitdeployError):
    """Raised by a stubbed core function once it has the config: the CLI layer's work is done."""

    exit_code = 99


@pytest.fixture
def captured(monkeypatch):
    """The configs the stubbed core functions of export, quantize and deploy were called with."""
    import vitdeploy.calib.quantize
    import vitdeploy.export.pipeline
    import vitdeploy.pipeline.run

    configs: list = []

    def stub(config, *args, **kwargs):
        configs.append(config)
        raise _Stop("stub")

    monkeypatch.setattr(vitdeploy.export.pipeline, "export", stub)
    monkeypatch.setattr(vitdeploy.calib.quantize, "quantize", stub)
    monkeypatch.setattr(vitdeploy.pipeline.run, "run_deploy", stub)
    return configs


@pytest.fixture
def files(tmp_path):
    """A small ONNX file and a stand-in calibration file (quantize only needs them to exist before its core)."""
    graph = oh.make_graph([oh.make_node("Relu", ["x"], ["y"])], "g",
                          [oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", 3])],
                          [oh.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["batch", 3])])
    model = tmp_path / "relu.onnx"
    onnx.save(oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)]), str(model))
    calib = tmp_path / "calib.npy"
    calib.write_bytes(b"")
    return {"MODEL": model, "CALIB": calib, "OUT": tmp_path / "out"}


# (command and its other arguments, new spelling, old spelling, values, the config field that gets them)
CASES = {
    "export": (("export", "vit_tiny_test", "-o", "OUT"), "--trt-version", "--target", ("trt10", "ort"),
               lambda c: c.targets),
    "quantize": (("quantize", "MODEL", "--int8", "--calib", "CALIB", "-o", "OUT"), "--qdq-form", "--target", ("ort-cpu",),
                 lambda c: c.target),
    "deploy": (("deploy", "vit_tiny_test", "--out", "OUT"), "--qdq-form", "--int8-target", ("ort-cpu",),
               lambda c: c.int8_target),
}


def _args(base, files, option, values):
    args = [str(files.get(a, a)) for a in base]
    for v in values:
        args += [option, v]
    return args


def _deprecation_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if "deprecated" in line]


@pytest.mark.parametrize("command", CASES)
def test_new_and_old_spellings_make_the_same_config(cli, captured, files, command):
    base, new, old, values, field = CASES[command]
    rc, _, err = cli(*_args(base, files, new, values))
    assert rc == 99, err
    assert not _deprecation_lines(err)
    rc, _, err = cli(*_args(base, files, old, values))
    assert rc == 99, err
    assert _deprecation_lines(err) == [f"warning: {old} is deprecated; use {new}"]  # once, even when repeated
    assert len(captured) == 2 and captured[0] == captured[1]
    assert field(captured[0]) == (values if command == "export" else values[0])


@pytest.mark.parametrize("command", CASES)
def test_defaults_are_unchanged(cli, captured, files, command):
    base, _, _, _, field = CASES[command]
    rc, _, err = cli(*_args(base, files, "", ()))
    assert rc == 99, err
    assert field(captured[0]) == {"export": ("trt8.5", "trt10", "trt11"), "quantize": "trt", "deploy": "auto"}[command]


@pytest.mark.parametrize("order", ["new first", "old first"])
@pytest.mark.parametrize("command", CASES)
def test_both_spellings_is_a_usage_error(cli, captured, files, command, order):
    base, new, old, values, _ = CASES[command]
    pair = [new, values[0], old, values[0]] if order == "new first" else [old, values[0], new, values[0]]
    rc, out, err = cli(*_args(base, files, "", ()), *pair)
    assert rc == 2 and not captured and not out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and new in lines[0] and old in lines[0]


@pytest.mark.parametrize("command, new, old", [("export", "--trt-version", "--target"), ("check", "--trt-version", "--target"),
                                               ("quantize", "--qdq-form", "--target"), ("deploy", "--qdq-form", "--int8-target")])
def test_help_shows_only_the_new_name(cli, command, new, old):
    rc, out, _ = cli(command, "--help")
    assert rc == 0
    assert new in out
    assert old not in out.replace(new, "")  # hidden alias; examples use the new name too


def test_check_runs_with_either_spelling(cli, files):
    rc, out, err = cli("check", files["MODEL"], "--trt-version", "trt10", "--trt-version", "trt8.5", "--json")
    assert rc == 0 and not _deprecation_lines(err)
    new = out
    rc, out, err = cli("check", files["MODEL"], "--target", "trt10", "--target", "trt8.5", "--json")
    assert rc == 0 and out == new
    assert _deprecation_lines(err) == ["warning: --target is deprecated; use --trt-version"]
    rc, out, err = cli("check", files["MODEL"], "--target", "trt10", "--trt-version", "trt10")
    assert rc == 2 and not out and len(err.strip().splitlines()) == 1
