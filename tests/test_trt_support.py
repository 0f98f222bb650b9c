"""The TensorRT parser-support data: documented facts per target, and the shape of the tables.

Stdlib + pytest only (onnx is used where installed, to cross-check names); no torch, no TensorRT.
"""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path

import pytest

from vitdeploy.trt import support as trt_support
from vitdeploy.trt.support import ONNX_DTYPES, TARGETS, ParserSupport, parser_support

ALL = tuple(TARGETS)

# What a plain ViT/DeiT export (Conv patch embed, attention as MatMul/Softmax, Erf GELU,
# LayerNorm decomposed below opset 17) and its Q/DQ-quantized variant are made of.
VIT_OPS = ("MatMul", "Gemm", "Softmax", "Conv", "Add", "Mul", "Div", "Sub", "Erf", "Reshape",
           "Transpose", "Concat", "Gather", "Slice", "ReduceMean", "Sqrt", "Pow", "Cast", "Shape",
           "Unsqueeze", "Expand", "Flatten", "QuantizeLinear", "DequantizeLinear")

# Op counts: the rows marked "Y" in each operators.md (11.4 = the 11.1 table + DFT).
EXPECTED_COUNTS = {"trt8.5": 142, "trt10": 150, "trt10.16": 158, "trt11": 160}


def test_targets_are_the_four_jetpack_versions_in_order():
    assert ALL == ("trt8.5", "trt10", "trt10.16", "trt11")
    assert [TARGETS[t].version for t in ALL] == ["8.5", "10.3", "10.16", "11.4"]
    for t in ALL:
        assert isinstance(TARGETS[t], ParserSupport)
        assert TARGETS[t].name == f"TensorRT {TARGETS[t].version}"
        assert TARGETS[t].source.startswith("onnx/onnx-tensorrt docs/operators.md @ ")


def test_parser_support_returns_the_target_and_rejects_unknown_ones():
    for t in ALL:
        assert parser_support(t) is TARGETS[t]
    with pytest.raises(KeyError) as exc:
        parser_support("trt9")
    message = str(exc.value)
    assert "trt9" in message
    for t in ALL:
        assert t in message


def test_op_tables_are_sorted_and_unique():
    tables = {name: value for name, value in vars(trt_support).items() if name.startswith("_OPS_")}
    assert {"_OPS_8_5", "_OPS_10_1_DOC", "_OPS_10_16", "_OPS_11_1_DOC", "_OPS_11_4"} <= set(tables)
    for name, ops in tables.items():
        assert isinstance(ops, tuple), name
        assert list(ops) == sorted(ops), f"{name} is not sorted"
        assert len(ops) == len(set(ops)), f"{name} has duplicates"
        assert all(isinstance(op, str) and op and op == op.strip() for op in ops), name


def test_op_counts_match_the_documented_tables():
    assert {t: len(TARGETS[t].supported_ops) for t in ALL} == EXPECTED_COUNTS
    assert TARGETS["trt8.5"].supported_ops == frozenset(trt_support._OPS_8_5)
    assert TARGETS["trt10"].supported_ops == frozenset(trt_support._OPS_10_1_DOC)
    assert TARGETS["trt10.16"].supported_ops == frozenset(trt_support._OPS_10_16)
    assert TARGETS["trt11"].supported_ops == frozenset(trt_support._OPS_11_4)


def test_later_versions_only_add_ops():
    for older, newer in zip(ALL, ALL[1:]):
        dropped = TARGETS[older].supported_ops - TARGETS[newer].supported_ops
        assert not dropped, f"{newer} lost {sorted(dropped)}"


@pytest.mark.parametrize("target", ALL)
def test_every_target_has_the_ops_a_vit_needs(target):
    missing = [op for op in VIT_OPS if op not in parser_support(target).supported_ops]
    assert not missing, f"{target} lacks {missing}"


def test_opset_ranges_are_the_documented_ones():
    ranges = {t: (TARGETS[t].min_opset, TARGETS[t].max_opset) for t in ALL}
    # 8.5: "up to Opset 17"; 10.x/11.x: "inclusive range of opset 9 to opset N"; 11.4 stays at 24
    # (opset 25 arrives in 11.5); 10.3 uses the 10.1 table's 20.
    assert ranges == {"trt8.5": (7, 17), "trt10": (9, 20), "trt10.16": (9, 24), "trt11": (9, 24)}


def test_layernormalization_arrives_after_8_5():
    # Marked N in the 8.5 table; added in 8.6 EA (onnx-tensorrt changelog), so every 10.x/11.x has it.
    assert "LayerNormalization" not in TARGETS["trt8.5"].supported_ops
    assert "opset <= 16" in TARGETS["trt8.5"].notes["LayerNormalization"]
    for t in ("trt10", "trt10.16", "trt11"):
        assert "LayerNormalization" in TARGETS[t].supported_ops
        assert "first output" in TARGETS[t].notes["LayerNormalization"]


def test_col2im_is_supported_nowhere():
    for t in ALL:
        assert "Col2Im" not in TARGETS[t].supported_ops
        assert "Col2Im" in TARGETS[t].notes


def test_einsum_and_gathernd_are_supported_with_einsum_restrictions_until_10_12():
    for t in ALL:
        assert {"Einsum", "GatherND"} <= TARGETS[t].supported_ops
    assert "Ellipsis and diagonal operations are not supported" in TARGETS["trt8.5"].notes["Einsum"]
    assert "10.12" in TARGETS["trt10"].notes["Einsum"]
    assert "since 10.12" in TARGETS["trt10.16"].notes["Einsum"]


def test_onnx_attention_only_from_10_14_on():
    assert "Attention" not in TARGETS["trt8.5"].supported_ops
    assert "Attention" not in TARGETS["trt10"].supported_ops
    for t in ("trt10.16", "trt11"):
        assert "Attention" in TARGETS[t].supported_ops
        assert "must be 4D" in TARGETS[t].notes["Attention"]


def test_version_specific_ops():
    assert "Gelu" not in TARGETS["trt8.5"].supported_ops  # ONNX Gelu is opset 20 > 17
    assert "Gelu" in TARGETS["trt10"].supported_ops
    assert {"RMSNormalization", "RotaryEmbedding"} & TARGETS["trt10"].supported_ops == set()
    assert {"RMSNormalization", "RotaryEmbedding"} <= TARGETS["trt10.16"].supported_ops
    assert "Swish" not in TARGETS["trt10.16"].supported_ops and "Swish" in TARGETS["trt11"].supported_ops
    assert "DFT" not in TARGETS["trt10.16"].supported_ops and "DFT" in TARGETS["trt11"].supported_ops
    # Fixed in the 8.5-GA branch doc (the GA tag wrongly marked them N).
    assert {"HardSwish", "Mod", "OneHot"} <= TARGETS["trt8.5"].supported_ops


def test_slice_axes_restriction_is_lifted_in_10_3():
    assert "`axes` must be an initializer" in TARGETS["trt8.5"].notes["Slice"]
    assert "no restriction" in TARGETS["trt10"].notes["Slice"]
    assert "Slice" not in TARGETS["trt10.16"].notes


def test_notes_cover_only_known_op_names():
    known = set().union(*(TARGETS[t].supported_ops for t in ALL)) | {"Col2Im"}
    for t in ALL:
        for op, note in TARGETS[t].notes.items():
            assert op in known, f"{t}: note for unknown op {op}"
            assert isinstance(note, str) and len(note) > 10


def test_unsupported_dtypes_per_version():
    unsupported = {t: TARGETS[t].unsupported_dtypes for t in ALL}
    for t in ALL:
        assert unsupported[t] <= ONNX_DTYPES
        # Never rejected: the types a ViT graph is made of; DOUBLE is cast down, not rejected.
        assert not {"FLOAT", "FLOAT16", "INT32", "INT64", "BOOL", "INT8", "UINT8", "DOUBLE"} & unsupported[t]
        assert {"STRING", "COMPLEX64", "FLOAT8E5M2", "UINT4"} <= unsupported[t]
    assert {"BFLOAT16", "FLOAT8E4M3FN", "INT4", "FLOAT4E2M1"} <= unsupported["trt8.5"]
    assert "BFLOAT16" not in unsupported["trt10"] and "FLOAT8E4M3FN" not in unsupported["trt10"]
    assert "FLOAT4E2M1" in unsupported["trt10"]
    for t in ("trt10.16", "trt11"):
        assert not {"BFLOAT16", "FLOAT8E4M3FN", "INT4", "FLOAT4E2M1"} & unsupported[t]


def test_int64_is_cast_to_int32_only_on_8_5():
    assert TARGETS["trt8.5"].cast_dtypes == {"DOUBLE", "INT64"}
    assert "INT32" in TARGETS["trt8.5"].dtype_notes["INT64"]
    for t in ("trt10", "trt10.16", "trt11"):
        assert TARGETS[t].cast_dtypes == {"DOUBLE"}
        assert "Native" in TARGETS[t].dtype_notes["INT64"]


def test_precision_modes():
    for t in ALL:
        assert TARGETS[t].supports_int8_qdq
        assert TARGETS[t].supports_fp16
        assert {"QuantizeLinear", "DequantizeLinear"} <= TARGETS[t].supported_ops
    legacy = ("trt8.5", "trt10", "trt10.16")
    # TensorRT 11: strongly typed networks, no FP16/INT8 builder flags, no IInt8Calibrator.
    assert [TARGETS[t].strongly_typed_only for t in ALL] == [False, False, False, True]
    assert all(TARGETS[t].fp16_int8_builder_flags and TARGETS[t].int8_calibrator for t in legacy)
    assert not TARGETS["trt11"].fp16_int8_builder_flags
    assert not TARGETS["trt11"].int8_calibrator


def test_derived_targets_say_so():
    assert TARGETS["trt8.5"].derived == "" and TARGETS["trt10.16"].derived == ""
    for t in ("trt10", "trt11"):
        assert "not found" in TARGETS[t].derived
        assert "derived" in TARGETS[t].source


def test_targets_are_frozen_hashable_and_serialisable():
    ps = TARGETS["trt10"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        ps.max_opset = 99  # type: ignore[misc]
    assert len({hash(TARGETS[t]) for t in ALL}) == len(ALL)
    data = json.loads(json.dumps(dataclasses.asdict(TARGETS["trt11"]), default=sorted))
    assert data["max_opset"] == 24 and "MatMul" in data["supported_ops"]


@pytest.mark.parametrize("module", ["support", "restrictions"])
def test_module_imports_only_the_standard_library(module):
    import importlib

    tree = ast.parse(Path(importlib.import_module(f"vitdeploy.trt.{module}").__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
    assert {m.split(".")[0] for m in imported} <= {"__future__", "collections", "dataclasses", "vitdeploy"}, imported
    assert {m for m in imported if m.startswith("vitdeploy")} <= {"vitdeploy.trt.support"}, imported


def test_dtype_names_cover_the_installed_onnx():
    onnx = pytest.importorskip("onnx")
    names = set(onnx.TensorProto.DataType.keys()) - {"UNDEFINED"}
    assert names <= ONNX_DTYPES, f"classify these new ONNX dtypes per target: {sorted(names - ONNX_DTYPES)}"


def test_op_names_are_onnx_op_types():
    onnx = pytest.importorskip("onnx")
    if onnx.defs.onnx_opset_version() < 24:
        pytest.skip("needs an onnx with opset-24 schemas (Swish, Attention, RMSNormalization...)")
    schemas = {s.name for s in onnx.defs.get_all_schemas_with_history() if s.domain in ("", "ai.onnx")}
    legacy = {"ImageScaler", "ParametricSoftplus", "ScaledTanh"}  # experimental ops the tables still list
    for t in ALL:
        unknown = TARGETS[t].supported_ops - schemas - legacy
        assert not unknown, f"{t}: not ai.onnx op types: {sorted(unknown)}"
