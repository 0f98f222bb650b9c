"""`vitdeploy validate`: passes a good INT8 model, catches a planted regression, rejects bad input."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

import digits


@pytest.fixture(scope="module")
def trained(tmp_path_factory, digits_vit_tiny):
    """vit_tiny_test trained briefly on digits (conftest), exported, quantized INT8 (entropy) and FP16."""
    import os

    from vitdeploy.calib.quantize import QuantizeConfig, quantize
    from vitdeploy.export import ExportConfig, export

    root = tmp_path_factory.mktemp("validate")
    os.environ["VITDEPLOY_CACHE"] = str(root / "cache")
    d = digits_vit_tiny
    images, labels, ckpt = d["images"], d["labels"], d["checkpoint"]
    fp32 = export(ExportConfig("vit_tiny_test", checkpoint=ckpt, output=root / "vit.onnx")).onnx_path
    calib = digits.write_image_folder(root / "train", images, labels, d["train_idx"])
    val = digits.write_image_folder(root / "val", images, labels, d["test_idx"])
    int8 = quantize(QuantizeConfig(model=fp32, precision="int8", calib=calib, samples=256)).onnx_path
    fp16 = quantize(QuantizeConfig(model=fp32, precision="fp16")).onnx_path
    return {"root": root, "fp32": fp32, "int8": int8, "fp16": fp16, "val": val, "ckpt": ckpt}


@pytest.mark.slow  # uses the session's digits-trained model (conftest: ~20 s of training)
def test_good_candidates_pass_with_figures(cli, trained, tmp_path):
    rc, out, err = cli("validate", trained["fp32"], trained["int8"], trained["fp16"], "--data", trained["val"],
                       "--samples", "300", "--report", tmp_path / "rep", "--json")
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["passed"] and doc["data"]["labels"] and doc["data"]["samples"] == 300
    assert doc["reference"]["top1"] > 0.8
    by = {c["precision"]: c for c in doc["candidates"]}
    assert by["int8"]["comparison"]["cosine_mean"] > 0.98 and abs(by["int8"]["top1_drop_points"]) <= 1.5
    assert by["fp16"]["comparison"]["top1_agreement"] >= 0.99
    assert len(by["int8"]["worst_samples"]) == 5 and by["int8"]["worst_samples"][0].endswith(".png")
    md = (tmp_path / "rep" / "validate.md").read_text()
    assert "| vit.int8.onnx | int8 |" in md and "pass" in md


@pytest.mark.slow  # uses the session's digits-trained model (conftest: ~20 s of training)
def test_torch_reference_with_checkpoint(cli, trained):
    rc, out, err = cli("validate", "vit_tiny_test", "--checkpoint", trained["ckpt"], trained["fp32"],
                       "--data", trained["val"], "--samples", "40", "--json")
    assert rc == 0, err
    c = json.loads(out)["candidates"][0]
    assert c["comparison"]["max_abs"] < 1e-4 and json.loads(out)["reference"]["backend"] == "torch"


@pytest.mark.slow  # uses the session's digits-trained model (conftest: ~20 s of training)
def test_planted_regression_is_caught(cli, trained, tmp_path):
    """The patch embedding's input scale of the INT8 model shrunk 20x (the image saturates): validate must exit 6."""
    model = onnx.load(str(trained["int8"]))
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    producer = {o: n for n in model.graph.node for o in n.output}
    dq = producer[conv.input[0]]
    while dq.op_type != "DequantizeLinear":  # INT8+FP16: a Cast to FP16 sits between the DQ and the Conv
        dq = producer[dq.input[0]]
    target = next(i for i in model.graph.initializer if i.name == dq.input[1])
    value = onnx.numpy_helper.to_array(target) * 0.05
    target.CopyFrom(onnx.numpy_helper.from_array(value.astype(np.float32), target.name))
    bad = tmp_path / "vit.int8.onnx"
    onnx.save(model, str(bad))
    (tmp_path / "vit.int8.json").write_text(json.dumps({"artifact": "vit.int8.onnx", "precision": "int8"}))
    rc, out, err = cli("validate", trained["fp32"], bad, "--data", trained["val"], "--samples", "200")
    assert rc == 6
    assert "failed" in err and "vit.int8.onnx" in err


@pytest.mark.slow  # uses the session's digits-trained model (conftest: ~20 s of training)
def test_thresholds_file(cli, trained, tmp_path):
    f = tmp_path / "t.json"
    f.write_text(json.dumps({"fp16": {"max_abs": 0}}))  # no FP16 file is bit-exact: must fail
    rc, _, err = cli("validate", trained["fp32"], trained["fp16"], "--data", trained["val"], "--samples", "20", "--thresholds", f)
    assert rc == 6 and "max_abs" in err
    f.write_text(json.dumps({"fp16": {"cosine_min": 1.01}}))  # out of range: refused before any work
    rc, _, err = cli("validate", trained["fp32"], trained["fp16"], "--data", trained["val"], "--thresholds", f)
    assert rc == 2 and "cosine_min" in err
    f.write_text(json.dumps({"fp99": {}}))
    rc, _, err = cli("validate", trained["fp32"], trained["fp16"], "--data", trained["val"], "--thresholds", f)
    assert rc == 2


@pytest.mark.slow  # uses the session's digits-trained model (conftest: ~20 s of training)
def test_bad_input(cli, trained, tmp_path):
    from vitdeploy.export import ExportConfig, Preprocessing, export

    other = export(ExportConfig("usermodels:build_reflect_pad", output=tmp_path / "wide.onnx", targets=("ort",),
                                preprocessing=Preprocessing(input_size=(3, 48, 48)))).onnx_path
    (tmp_path / "empty").mkdir()
    (tmp_path / "x.txt").write_text("hello")
    (tmp_path / "fake.engine").write_bytes(b"\0" * 16)
    cases = [
        ((trained["fp32"], other, "--data", trained["val"]), 6, "takes input (3, 48, 48)"),
        ((trained["fp32"], tmp_path / "x.txt", "--data", trained["val"]), 3, "unknown artifact type"),
        ((trained["fp32"], tmp_path / "fake.engine", "--data", trained["val"]), 7, "tensorrt"),
        ((trained["fp32"], trained["int8"], "--data", tmp_path / "empty"), 3, "no images"),
    ]
    for args, code, message in cases:
        rc, _, err = cli("validate", *args, "--samples", "8")
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert rc == code, (args, err)
        assert len(errors) == 1 and message in errors[0].lower() if message == "tensorrt" else message in errors[0], err


def test_batch_plan_respects_profile_minimum():
    from vitdeploy.runners.factory import Artifact
    from helpers import run_batched
    from vitdeploy.validate import batch_plan

    engine = Artifact("e.engine", "engine", None, {"batch": {"min": 4, "opt": 8, "max": 16}})
    assert batch_plan(engine, None, 2) == (4, 4)
    assert batch_plan(engine, None, 64) == (16, 4)
    assert batch_plan(engine, 8, 64) == (8, 8)

    class Runner:
        seen = []

        def infer_one(self, x):
            self.seen.append(len(x))
            return x.reshape(len(x), -1)[:, :3]

    x = np.arange(10 * 2, dtype=np.float32).reshape(10, 2)
    out = run_batched(Runner(), x, 8, 4)
    assert Runner.seen == [8, 4] and out.shape == (10, 2) and np.array_equal(out, x)
