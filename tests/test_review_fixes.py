"""Review findings: restrictions derived once per target, one output check for files and report
folders, and one shape inference per FP16 pass."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from vitdeploy.bench.report import REPORT_FILES, check_report_dir
from vitdeploy.core.errors import InputError, OutputError, OutputExistsError, UsageError
from vitdeploy.core.io import check_output
from vitdeploy.trt import restrictions as R

onnx = pytest.importorskip("onnx")


# 1. parser restrictions: once per parser version --------------------------------------------------

def _einsum_chain(n: int):
    h, tp = onnx.helper, onnx.TensorProto
    nodes, prev = [], "x"
    for i in range(n):
        nodes.append(h.make_node("Einsum", [prev], [f"t{i}"], name=f"e{i}", equation="ii->i" if i == 0 else "i->i"))
        prev = f"t{i}"
    graph = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", tp.FLOAT, [4, 4])],
                         [h.make_tensor_value_info(prev, tp.FLOAT, [4])])
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])


def test_restrictions_are_derived_once_per_target(monkeypatch):
    from vitdeploy.trt import check as C

    derived = []
    real = R.Restriction.applies_to
    monkeypatch.setattr(R.Restriction, "applies_to", lambda self, v: derived.append(v) or real(self, v))
    results = C.check(_einsum_chain(50), ["trt8.5", "trt11"])
    assert len(derived) == 2 * len(R.RESTRICTIONS)  # once per target, not once per node
    assert any("diagonal" in f.message for f in results["trt8.5"])  # the findings are still there
    assert not any("diagonal" in f.message for f in results["trt11"])


def test_restrictions_for_returns_a_table_a_caller_may_change():
    table = R.restrictions_for("trt8.5")
    table.pop("Einsum")
    assert "Einsum" in R.restrictions_for("trt8.5")


# 2. one output check: files and report folders ---------------------------------------------------

def test_report_dir_refuses_an_existing_report_file_without_force(tmp_path):
    (tmp_path / REPORT_FILES["markdown"]).write_text("old")
    with pytest.raises(OutputExistsError, match="--force"):
        check_report_dir(tmp_path)
    check_report_dir(tmp_path, force=True)


def test_report_dir_check_creates_nothing(tmp_path):
    check_report_dir(tmp_path / "a" / "b")
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize("where", ["folder", "ancestor"])
def test_report_dir_that_is_a_file_is_refused(tmp_path, where):
    f = tmp_path / "taken"
    f.write_text("")
    d = f if where == "folder" else f / "sub"
    with pytest.raises(OutputError, match="not a"):
        check_report_dir(d, force=True)
    with pytest.raises(OutputError, match="not a"):
        check_output(d / "x.json", force=True, create=False)


def test_report_file_that_is_a_folder_is_refused(tmp_path):
    (tmp_path / REPORT_FILES["plot"]).mkdir()
    with pytest.raises(OutputError, match="is a directory"):
        check_report_dir(tmp_path, force=True)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes anywhere")
def test_report_dir_in_a_read_only_folder_is_refused(tmp_path):
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="not a writable folder"):
            check_report_dir(tmp_path / "r")
    finally:
        tmp_path.chmod(0o700)


# 4. FP16: one shape inference for islands and conversion ------------------------------------------

def _fp16_model():
    h, tp = onnx.helper, onnx.TensorProto
    nodes = [h.make_node("MatMul", ["x", "w"], ["a"], name="mm"),
             h.make_node("Softmax", ["a"], ["b"], name="sm", axis=-1),
             h.make_node("Relu", ["b"], ["y"], name="relu")]
    w = onnx.numpy_helper.from_array(__import__("numpy").eye(4, dtype="float32"), "w")
    graph = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", tp.FLOAT, [1, 4])],
                         [h.make_tensor_value_info("y", tp.FLOAT, [1, 4])], [w])
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])


def test_fp16_pass_infers_shapes_once(monkeypatch):
    from vitdeploy.calib import fp16 as F16
    from vitdeploy.calib import passes
    from vitdeploy.core import onnx_utils
    from vitdeploy.core.steps import Steps

    model = _fp16_model()
    expected = F16.convert(model)
    calls = []
    real = onnx_utils.elem_types
    monkeypatch.setattr(onnx_utils, "elem_types", lambda m: calls.append(1) or real(m))
    ctx = passes.QuantizeContext(model=model, model_bytes=b"", model_digest="", input_name="x", static_batch=1)
    result, info = passes.fp16_pass(ctx, SimpleNamespace(keep_fp32=()), Steps(), None)
    assert len(calls) == 1
    assert info["fp32_ops"] == ["Softmax"]
    assert result.graph.SerializeToString() == expected.graph.SerializeToString()


def test_float_tensor_names_takes_the_inferred_types():
    from vitdeploy.calib.graph import float_tensor_names
    from vitdeploy.core import onnx_utils

    model = _fp16_model()
    assert float_tensor_names(model, onnx_utils.elem_types(model)) == float_tensor_names(model) == ["a", "b", "y"]


def test_a_renamed_copy_keeps_its_manifest_and_another_files_manifest_is_not_taken(tmp_path):
    """A newcomer copied model.onnx + model.json to deit.onnx + deit.json: the manifest's digest
    matches the file, so it is this artifact's manifest; beside a different file it is refused."""
    import json
    import shutil

    from vitdeploy.core.io import read_manifest, sha256_file

    (tmp_path / "model.onnx").write_bytes(b"onnx bytes")
    manifest = {"schema": "vitdeploy.manifest/1", "kind": "onnx", "artifact": "model.onnx",
                "sha256": sha256_file(tmp_path / "model.onnx")}
    (tmp_path / "model.json").write_text(json.dumps(manifest))
    shutil.copy(tmp_path / "model.onnx", tmp_path / "deit.onnx")
    shutil.copy(tmp_path / "model.json", tmp_path / "deit.json")
    assert read_manifest(tmp_path / "deit.onnx")["artifact"] == "model.onnx"
    (tmp_path / "other.onnx").write_bytes(b"other bytes")
    shutil.copy(tmp_path / "model.json", tmp_path / "other.json")
    assert read_manifest(tmp_path / "other.onnx") is None
    with pytest.raises(InputError, match="describes 'model.onnx', not other.onnx"):
        read_manifest(tmp_path / "other.onnx", required=True)


def test_an_unknown_trt_version_is_refused_before_any_export_work():
    from vitdeploy.export import ExportConfig

    with pytest.raises(UsageError, match="unknown --trt-version 'trt9'; known: trt8.5"):
        ExportConfig("vit_tiny_test", targets=("trt10", "trt9"))


def test_an_onnx_runtime_integer_graph_without_a_manifest_reads_as_int8(tmp_path):
    """ONNX Runtime's dynamic/QOperator forms carry no Q/DQ; the one precision reading still says int8."""
    import onnx
    from onnx import TensorProto as tp
    from onnx import helper as h

    from vitdeploy.core.onnx_info import inspect_onnx

    graph = h.make_graph([h.make_node("DynamicQuantizeLinear", ["x"], ["q", "s", "z"])], "g",
                         [h.make_tensor_value_info("x", tp.FLOAT, [1, 4])], [h.make_tensor_value_info("q", tp.UINT8, [1, 4])])
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]), tmp_path / "dyn.onnx")
    info = inspect_onnx(tmp_path / "dyn.onnx")
    assert info.precision == "int8" and not info.has_qdq  # int8, but not the Q/DQ form TensorRT builds
