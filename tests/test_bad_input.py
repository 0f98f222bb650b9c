"""Bad input across commands: a one-line error, the documented exit code, nothing left behind."""

from __future__ import annotations

import json

import numpy as np
import pytest


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory):
    from vitdeploy.export import ExportConfig, export

    d = tmp_path_factory.mktemp("bad")
    return export(ExportConfig("vit_tiny_test", output=d / "v.onnx", targets=("ort",))).onnx_path


def _one_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith(("error:", "internal error:"))]
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in err, err
    return lines[0]


def test_export_refuses_an_output_that_is_its_own_manifest(cli, tmp_path):
    rc, _, err = cli("export", "vit_tiny_test", "-o", tmp_path / "x.json", "--trt-version", "ort")
    assert rc == 5 and "its own manifest" in _one_error(err)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, message", [
    (("--opset", "99"), "above what the installed onnx"),
    (("--opset", "13"), "below 17"),
])
def test_export_opset_bounds(cli, tmp_path, args, message):
    rc, _, err = cli("export", "vit_tiny_test", "-o", tmp_path / "v.onnx", *args)
    assert rc == 2 and message in _one_error(err)


def test_export_user_factory_that_raises(cli, tmp_path):
    rc, _, err = cli("export", "os.path:join", "--input-size", "3,32,32", "-o", tmp_path / "v.onnx")
    assert rc == 3 and "os.path:join() raised TypeError" in _one_error(err)


def test_simplify_none_keeps_raw_node_count_honest(tmp_path):
    import onnx

    from vitdeploy.export import ExportConfig, export

    m = export(ExportConfig("vit_tiny_test", output=tmp_path / "v.onnx", simplify="none", decompose_layernorm=True)).manifest
    assert "decompose_layernorm" in m["passes"]
    assert m["graph"]["nodes"] > m["graph"]["nodes_raw"]  # the decomposition adds nodes to the raw export
    assert len(onnx.load(str(tmp_path / "v.onnx")).graph.node) == m["graph"]["nodes"]


@pytest.mark.parametrize("args, message", [
    (("--fp16", "--trt-calibration-cache"), "--trt-calibration-cache only applies to --int8"),
    (("--fp16", "--exclude", "Conv", "--high-precision", "fp32"), "--exclude, --high-precision only apply to --int8"),
    (("--fp16", "--qdq-form", "ort-cpu"), "only applies to --int8"),
    (("--int8", "--calib", "CALIB", "--keep-fp32", "Softmax"), "--keep-fp32 only applies to --fp16"),
    (("--int8", "--calib", "CALIB", "--qdq-form", "ort-cpu", "--high-precision", "fp32"), "applies to --qdq-form trt"),
])
def test_quantize_options_of_the_other_precision(cli, onnx_model, tmp_path, args, message):
    np.save(tmp_path / "c.npy", np.zeros((4, 3, 32, 32), np.float32))
    args = tuple(str(tmp_path / "c.npy") if a == "CALIB" else a for a in args)
    rc, _, err = cli("quantize", onnx_model, *args, "-o", tmp_path / "q.onnx")
    assert rc == 2 and message in _one_error(err)
    assert not (tmp_path / "q.onnx").exists()


def test_empty_onnx_file(cli, tmp_path):
    (tmp_path / "empty.onnx").write_bytes(b"")
    rc, _, err = cli("check", tmp_path / "empty.onnx")
    assert rc == 3 and "not an ONNX model" in _one_error(err)
    rc, _, err = cli("quantize", tmp_path / "empty.onnx", "--fp16", "--input-size", "3,32,32", "--mean", "0,0,0",
                     "--std", "1,1,1")
    assert rc == 3


def test_validate_zoo_reference_needs_a_checkpoint(cli, onnx_model, tmp_path):
    np.save(tmp_path / "d.npy", np.zeros((4, 3, 32, 32), np.float32))
    rc, _, err = cli("validate", "vit_tiny_test", onnx_model, "--data", tmp_path / "d.npy")
    assert rc == 2 and "--checkpoint" in _one_error(err)


@pytest.mark.parametrize("content, message", [
    ("[1, 2]", "expected {precision:"),
    ('{"int8": [0.9]}', "expected {precision:"),
    ('{"int8": {"cosine_min": "0.99"}}', 'int8.cosine_min is "0.99"; it must be a number in [0, 1] or null'),
])
def test_validate_thresholds_file_shape(cli, onnx_model, tmp_path, content, message):
    np.save(tmp_path / "d.npy", np.zeros((4, 3, 32, 32), np.float32))
    (tmp_path / "t.json").write_text(content)
    rc, _, err = cli("validate", onnx_model, onnx_model, "--data", tmp_path / "d.npy", "--thresholds", tmp_path / "t.json")
    assert rc == 2 and message in _one_error(err)


def test_deploy_engines_always_without_tensorrt_writes_nothing(cli, tmp_path):
    rc, _, err = cli("deploy", "vit_tiny_test", "--engines", "always", "--out", tmp_path / "out")
    assert rc == 7 and "tensorrt" in _one_error(err)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # two whole deploys (~4 s)
def test_deploy_with_builtin_sample_resumes(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("VITDEPLOY_CACHE", str(tmp_path / "cache"))
    args = ("deploy", "vit_tiny_test", "--precisions", "fp32,int8", "--batch", "1", "--iterations", "2",
            "--out", tmp_path / "out", "--json")
    rc, _, err = cli(*args)
    assert rc == 0, err
    rc, out, err = cli(*args)
    assert rc == 0, err
    assert set(json.loads(out)["steps_skipped"]) == {"export", "quantize int8", "validate", "bench"}
