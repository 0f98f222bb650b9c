"""build_engine end to end on the CPU with a fake TensorRT per served version (see test_trt_fakes).

The assertions are about what the builder is told on each version: network flags, builder flags,
precision constraints, the ONNX actually parsed, DLA / timing cache / profile / compatibility, and
what lands in the engine file and its manifest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from test_trt_fakes import make_fake_trt, tiny_onnx
from vitdeploy.core.errors import CompatibilityError, EngineBuildError, UsageError
from vitdeploy.core.io import read_manifest
from vitdeploy.pipeline.engine import build as build_engine
from vitdeploy.engine.config import BatchRange, EngineConfig

GPU = {"index": 0, "name": "NVIDIA Jetson AGX Orin (fake)", "compute_capability": "8.7"}
JETSON = {"l4t": "36.4.3", "jetpack": "6.1/6.2", "module": "NVIDIA Jetson AGX Orin Developer Kit"}


def build(trt, model: Path, **options):
    jetson = options.pop("jetson", JETSON)
    callbacks = options.pop("callbacks", None)
    return build_engine(EngineConfig(model=model, **options), trt=trt, gpu=GPU, jetson=jetson, callbacks=callbacks)


def calls(trt, cls: str, method: str) -> list:
    return [c[2] for c in trt.calls if c[0] == cls and c[1] == method]


def flags_set(trt) -> set[str]:
    return {args[0].name for args in calls(trt, "IBuilderConfig", "set_flag")}


def created_network_flags(trt) -> int:
    return calls(trt, "Builder", "create_network")[-1][0]


@pytest.fixture
def model(tmp_path):
    return tiny_onnx(tmp_path)


@pytest.fixture
def calib_data(tmp_path):
    path = tmp_path / "calib.npy"
    np.save(path, np.random.default_rng(1).standard_normal((24, 3, 4, 4)).astype(np.float32))
    return path


# --- FP16 -------------------------------------------------------------------------------------

def test_fp16_on_8_6_sets_the_flag_and_keeps_layernorm_fp32(model):
    trt = make_fake_trt("8.6.1")
    result = build(trt, model, fp16=True)
    assert created_network_flags(trt) == 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    assert flags_set(trt) == {"FP16", "OBEY_PRECISION_CONSTRAINTS"}
    constrained = {layer.name for layer in trt.builders[0]._network._layers if layer.__dict__.get("precision") == trt.float32}
    assert constrained == {"/norm/LayerNormalization", "/softmax/Softmax"}
    m = result.manifest
    assert calls(trt, "OnnxParser", "parse_from_file")[0][0] == str(model)  # no FP16 ONNX pass on 8.x
    assert m["precision_pass"] is None and m["tensorrt"]["strongly_typed"] is False
    assert m["build_options"]["fp32_layers"] == ["/norm/LayerNormalization", "/softmax/Softmax"]
    assert m["layers"]["precisions"] == {"fp16": 3, "fp32": 2}


def test_tensorrt_8_5_parses_layernorm_decomposed(model):
    """8.5 has no LayerNormalization importer: build-engine parses a decomposed copy (faked with 8.6.1's names)."""
    trt = make_fake_trt("8.5.2", reject_ops=("LayerNormalization",), symbols_of="8.6.1")
    result = build(trt, model, fp16=True)
    parsed = calls(trt, "OnnxParser", "parse_from_file")[0][0]
    assert parsed != str(model) and not Path(parsed).exists()  # a scratch copy, removed after parsing
    ops = {layer.__dict__["_op"] for layer in trt.builders[0]._network._layers}
    assert "LayerNormalization" not in ops and {"ReduceMean", "Pow", "Sqrt"} <= ops
    constrained = {la.__dict__["_op"] for la in trt.builders[0]._network._layers if la.__dict__.get("precision") == trt.float32}
    assert constrained == {"ReduceMean", "Pow", "Sqrt", "Softmax"}  # the statistics stay FP32 under the FP16 flag
    m = result.manifest
    assert m["parent"]["artifact"] == str(model) and m["build_options"]["graph_rewrites"][0].startswith("decompose_layernorm")
    trt86 = make_fake_trt("8.6.1")
    again = build(trt86, model, fp16=True, output=model.with_name("x.fp16.trt.engine"))
    assert calls(trt86, "OnnxParser", "parse_from_file")[0][0] == str(model)  # 8.6 imports the fused op
    assert again.manifest["build_options"]["graph_rewrites"] == []


@pytest.mark.parametrize("version", ["10.3.0", "10.16.1.11", "11.4.0.106"])
def test_fp16_on_10_and_11_builds_the_fp16_onnx_strongly_typed(model, version):
    trt = make_fake_trt(version)
    result = build(trt, model, fp16=True)
    flags = created_network_flags(trt)
    if version.startswith("11."):
        assert flags == 0  # always strongly typed; the flag is not passed
    else:
        assert flags == 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    assert "FP16" not in flags_set(trt) and not calls(trt, "ILayer", "precision=")
    parsed = calls(trt, "OnnxParser", "parse_from_file")[0][0]
    assert parsed == str(model.with_name("tiny.fp16.onnx"))
    m = result.manifest
    assert m["parent"]["artifact"] == parsed and m["parent"]["precision"] == "fp16" and m["source_onnx"] == str(model)
    assert m["precision_pass"]["pass"] == "fp16" and m["tensorrt"]["strongly_typed"] is True
    assert m["layers"]["precisions"]["fp16"] >= 1


def test_fp16_pass_output_is_reused(model):
    build(make_fake_trt("10.3.0"), model, fp16=True)
    result = build(make_fake_trt("10.16.1.11"), model, fp16=True, output=model.with_name("other.trt.engine"))
    assert result.manifest["precision_pass"]["reused"] is True


def test_fp16_ignored_by_tensorrt_fails_and_writes_nothing(model):
    trt = make_fake_trt("8.6.1", ignore_fp16=True)  # every layer comes out FP32
    with pytest.raises(EngineBuildError, match="FP16 was requested but no layer") as e:
        build(trt, model, fp16=True)
    assert e.value.exit_code == 9
    assert not list(model.parent.glob("*.engine")) and not model.with_name("tiny.fp16.trt.json").exists()


# --- INT8 -------------------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["8.6.1", "11.4.0.106"])
def test_int8_with_calib_runs_the_qdq_pass(model, calib_data, version):
    trt = make_fake_trt(version)
    result = build(trt, model, int8=True, calib=calib_data, method="minmax", samples=16)
    qdq = model.with_name("tiny.int8.onnx")
    assert calls(trt, "OnnxParser", "parse_from_file")[0][0] == str(qdq)
    # INT8+FP16: the Q/DQ file types its float parts FP16; 8.x adds both flags (trtexec --int8 --fp16)
    assert read_manifest(qdq)["quantization"]["high_precision"] == "fp16"
    if version.startswith("8."):
        assert flags_set(trt) == {"INT8", "FP16", "OBEY_PRECISION_CONSTRAINTS"}
        constrained = {la.name for la in trt.builders[0]._network._layers if la.__dict__.get("precision") == trt.float32}
        assert {"/norm/LayerNormalization", "/softmax/Softmax"} <= constrained
    else:
        assert flags_set(trt) == set()
    m = result.manifest
    assert m["precision"] == "int8" and m["layers"]["precisions"].get("int8", 0) >= 1
    assert m["calibration"]["hash"] == read_manifest(qdq)["calibration_data"]["hash"]
    assert m["calibration"]["method"] == "minmax"
    # the Q/DQ ONNX then builds as is, without --calib
    trt2 = make_fake_trt(version)
    again = build(trt2, qdq, force=True)
    assert again.engine_path.name == "tiny.int8.trt.engine" and again.manifest["precision_pass"] is None


def test_legacy_calibrator_on_8_6_uses_the_cache(model, calib_data):
    trt = make_fake_trt("8.6.1")
    result = build(trt, model, int8=True, calib=calib_data, method="minmax", samples=16, legacy_calibrator=True)
    (calibrator,) = calls(trt, "IBuilderConfig", "int8_calibrator=")
    assert calibrator.read_calibration_cache().decode().startswith("TRT-8601-EntropyCalibration2\n")
    assert calibrator.get_batch(["input"]) is None
    assert calls(trt, "OnnxParser", "parse_from_file")[0][0] == str(model)  # the FP32 ONNX, implicit INT8
    assert flags_set(trt) == {"INT8", "FP16", "OBEY_PRECISION_CONSTRAINTS"}  # INT8+FP16 by default
    assert created_network_flags(trt) == 1  # EXPLICIT_BATCH only
    assert len(calls(trt, "IBuilderConfig", "set_calibration_profile")) == 1  # dynamic batch
    assert result.manifest["calibration"]["path"] == "legacy-calibrator"


def test_int8_with_fp32_float_parts_on_8_6(model, calib_data):
    trt = make_fake_trt("8.6.1")
    build(trt, model, int8=True, calib=calib_data, method="minmax", samples=16, high_precision="fp32")
    assert flags_set(trt) == {"INT8"}
    assert read_manifest(model.with_name("tiny.int8.onnx"))["quantization"]["high_precision"] == "fp32"


@pytest.mark.parametrize("version", ["10.16.1.11", "11.4.0.106"])
def test_legacy_calibrator_refused_from_10_12(model, calib_data, version):
    with pytest.raises(UsageError, match="--legacy-calibrator"):
        build(make_fake_trt(version), model, int8=True, calib=calib_data, legacy_calibrator=True)


# --- options ----------------------------------------------------------------------------------

def test_dla(model):
    with pytest.raises(CompatibilityError, match="no DLA cores"):
        build(make_fake_trt("10.3.0", dla_cores=0), model, fp16=True, dla_core=0)
    with pytest.raises(CompatibilityError, match="2 DLA core"):
        build(make_fake_trt("10.3.0", dla_cores=2), model, fp16=True, dla_core=2)
    trt = make_fake_trt("10.3.0", dla_cores=2)
    result = build(trt, model, fp16=True, dla_core=1)
    assert calls(trt, "IBuilderConfig", "DLA_core=") == [1]
    assert calls(trt, "IBuilderConfig", "default_device_type=") == [trt.DeviceType.DLA]
    assert "GPU_FALLBACK" in flags_set(trt) and result.manifest["build_options"]["gpu_fallback"] is True


def test_workspace_profile_timing_cache(model, tmp_path):
    cache = tmp_path / "timing.cache"
    trt = make_fake_trt("10.16.1.11")
    result = build(trt, model, workspace=512 << 20, batch=BatchRange.parse("2:4:16"), timing_cache=cache)
    assert calls(trt, "IBuilderConfig", "set_memory_pool_limit") == [(trt.MemoryPoolType.WORKSPACE, 512 << 20)]
    assert calls(trt, "IOptimizationProfile", "set_shape") == [("input", (2, 3, 4, 4), (4, 3, 4, 4), (16, 3, 4, 4))]
    assert result.manifest["profile"] == {"input": {"min": [2, 3, 4, 4], "opt": [4, 3, 4, 4], "max": [16, 3, 4, 4]}}
    assert result.manifest["batch"] == {"min": 2, "opt": 4, "max": 16}
    assert cache.read_bytes() == b"fresh-cache+tuned"  # saved after the build
    trt2 = make_fake_trt("10.16.1.11")
    build(trt2, model, timing_cache=cache, force=True)
    assert calls(trt2, "IBuilderConfig", "create_timing_cache")[0] == (b"fresh-cache+tuned",)  # loaded
    cache.write_bytes(b"other-gpu")
    trt3 = make_fake_trt("10.16.1.11")
    r3 = build(trt3, model, timing_cache=cache, force=True)
    assert any("another GPU" in n for n in r3.manifest["notes"])


def test_static_onnx_gets_no_profile(tmp_path):
    trt = make_fake_trt("10.3.0")
    result = build(trt, tiny_onnx(tmp_path, batch=None))
    assert not calls(trt, "IConfig", "add_optimization_profile") and not calls(trt, "IBuilderConfig", "add_optimization_profile")
    assert result.manifest["batch"] is None


def test_compatibility_and_optimisation_level(model):
    trt = make_fake_trt("10.16.1.11")
    result = build(trt, model, hardware_compat="same-cc", version_compatible=True, builder_opt_level=5, jetson=None)
    assert calls(trt, "IBuilderConfig", "hardware_compatibility_level=") == [trt.HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY]
    assert calls(trt, "IBuilderConfig", "builder_optimization_level=") == [5]
    assert "VERSION_COMPATIBLE" in flags_set(trt)
    assert calls(trt, "Runtime", "engine_host_code_allowed=") == [True]  # inspecting a plan with a lean runtime
    assert result.manifest["build_options"]["version_compatible"] is True
    with pytest.raises(CompatibilityError, match="JetPack"):
        build(make_fake_trt("10.16.1.11"), model, hardware_compat="ampere+", force=True)


@pytest.mark.parametrize("version,monitored", [("8.6.1", False), ("10.3.0", True), ("11.4.0.106", True)])
def test_progress_monitor_where_the_version_has_one(model, version, monitored):
    seen = []

    class Callbacks:
        def phase_start(self, name, parent, steps):
            seen.append(("start", name, steps))

        def step(self, name, step):
            seen.append(("step", step))

        def phase_finish(self, name):
            seen.append(("finish", name))

    trt = make_fake_trt(version)
    build(trt, model, callbacks=Callbacks())
    assert bool(calls(trt, "IBuilderConfig", "progress_monitor=")) == monitored
    assert (seen == [("start", "Building engine", 2), ("step", 0), ("step", 1), ("finish", "Building engine")]) == monitored


@pytest.mark.parametrize("version", ["8.6.1", "10.3.0"])
def test_parser_errors_name_the_node(model, version):
    # 8.x errors carry only the node index: the name comes from the ONNX graph
    with pytest.raises(EngineBuildError, match=r"node /softmax/Softmax \(Softmax\): No importer registered"):
        build(make_fake_trt(version, reject_ops=("Softmax",)), model)


def test_build_failure_reports_tensorrt_error(model):
    with pytest.raises(EngineBuildError, match="fake: out of memory"):
        build(make_fake_trt("10.3.0", build_fails=True), model)
    assert not list(model.parent.glob("*.engine"))


def test_existing_output_refused_before_tensorrt(model):
    from vitdeploy.core.errors import OutputExistsError

    model.with_name("tiny.trt.engine").write_bytes(b"old")
    with pytest.raises(OutputExistsError):
        build_engine(EngineConfig(model=model), trt=None)  # refused before importing tensorrt


# --- what is written ----------------------------------------------------------------------------

def test_engine_is_plain_bytes_and_manifest_is_complete(model):
    trt = make_fake_trt("10.3.0")
    result = build(trt, model, fp16=True)
    built = calls(trt, "Runtime", "deserialize_cuda_engine")[0][0]
    assert result.engine_path.stat().st_size == built  # nothing glued in front
    json.loads(result.engine_path.read_bytes())  # the fake's plan, byte for byte
    m = read_manifest(result.engine_path, required=True)
    assert result.manifest_path == model.with_name("tiny.fp16.trt.json")
    assert m["kind"] == "engine" and m["artifact"] == "tiny.fp16.trt.engine"
    assert m["tensorrt"]["version"] == "10.3.0" and m["gpu"] == GPU and m["jetson"] == JETSON
    assert m["precision"] == "fp16" and m["engine_bytes"] == built and m["build_seconds"] >= 0
    assert m["model"]["name"] == "tiny_test" and m["preprocessing"]["input_size"] == [3, 4, 4]
    assert m["io"][0] == {"name": "input", "mode": "input", "dtype": "float32", "shape": [-1, 3, 4, 4],
                          "profile": [[1, 3, 4, 4], [1, 3, 4, 4], [8, 3, 4, 4]]}
    assert set(m["build_options"]) >= {"workspace_bytes", "timing_cache", "dla_core", "hardware_compat", "version_compatible",
                                       "builder_opt_level", "strongly_typed", "flags"}
    assert m["layers"]["count"] == len(m["layers"]["layers"]) >= 5 and m["sha256"]
    names = [s["name"] for s in m["steps"]]
    assert names[0] == "read ONNX" and {"fp16 pass", "convert FP16", "parse ONNX", "build", "inspect layers"} <= set(names)


def test_build_for_deploy(model, monkeypatch):
    import vitdeploy.engine.build
    from vitdeploy.pipeline.engine import build_for_deploy

    trt = make_fake_trt("11.4.0.106")
    monkeypatch.setattr(vitdeploy.engine.build, "require", lambda name, purpose=None: trt)
    monkeypatch.setattr("vitdeploy.trt.cuda.gpu_info", lambda: GPU)
    result = build_for_deploy(model, precision="fp32")
    assert result.engine_path.name == "tiny.trt.engine" and result.manifest["precision"] == "fp32"
    with pytest.raises(UsageError, match="would overwrite"):
        build_for_deploy(model, model.with_suffix(".engine"), "fp32")  # tiny.json is the ONNX's manifest
    with pytest.raises(EngineBuildError, match="expected fp16"):
        build_for_deploy(model, precision="fp16")
