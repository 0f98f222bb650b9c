"""build-engine without TensorRT: version predicates, option validation, the build plan per version,
engine/GPU compatibility from the manifest, inspector parsing, the calibration-cache header."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from test_trt_fakes import VERSIONS, symbols, tiny_onnx
from vitdeploy.core.errors import CompatibilityError, EngineBuildError, InputError, UsageError
from vitdeploy.trt import compat, layers
from vitdeploy.trt.calibrator import cache_for_version, cache_header
from vitdeploy.core.onnx_info import inspect_onnx
from vitdeploy.engine.config import (BatchRange, EngineConfig, check_output_name, default_output, parse_size,
                                  plan, resolve)
from vitdeploy.trt.version import PREDICATES, SERVED_VERSIONS, TrtVersion, requires, version_of

V = {v: TrtVersion.parse(v) for v in VERSIONS}


# --- versions ---------------------------------------------------------------------------------

def test_served_versions_are_the_symbol_lists():
    assert SERVED_VERSIONS == VERSIONS
    assert sorted(p.name for p in Path(__file__).parent.joinpath("data", "trt_api").glob("*.txt")) == sorted(
        f"{v}.txt" for v in VERSIONS)


def test_parse_and_order():
    assert TrtVersion.parse("10.3.0.30") == TrtVersion(10, 3, 0, 30)
    assert TrtVersion.parse("8.6.1") < TrtVersion.parse("10.3.0") < TrtVersion.parse("10.16.1.11") < TrtVersion.parse("11.4.0.106")
    assert str(TrtVersion.parse("11.4.0.106")) == "11.4.0.106"
    with pytest.raises(CompatibilityError):
        TrtVersion.parse("unknown")
    with pytest.raises(CompatibilityError, match="too old"):
        version_of(type("M", (), {"__version__": "8.4.3"}))


# predicate -> the bindings symbol whose presence it stands for (checked on every served version)
PREDICATE_SYMBOL = {
    "has_strongly_typed": "NetworkDefinitionCreationFlag.STRONGLY_TYPED",
    "has_builder_precision_flags": "BuilderFlag.FP16",
    "has_int8_calibrator": "IInt8EntropyCalibrator2",
    "has_progress_monitor": "IProgressMonitor",
    "has_platform_fast_fp16": "Builder.platform_has_fast_fp16",
    "has_hardware_compat": "HardwareCompatibilityLevel.AMPERE_PLUS",
    "has_same_cc_compat": "HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY",
    "has_version_compat": "BuilderFlag.VERSION_COMPATIBLE",
    "has_builder_optimization_level": "IBuilderConfig.builder_optimization_level",
    "has_parser_node_name": "ParserError.node_name",
    "has_device_memory_v2": "ICudaEngine.device_memory_size_v2",
}


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("predicate", sorted(PREDICATE_SYMBOL))
def test_predicates_match_the_bindings(predicate, version):
    """A predicate says yes exactly where the wheel of that version has the symbol it guards."""
    assert getattr(V[version], predicate) == (PREDICATE_SYMBOL[predicate] in symbols(version))


def test_predicate_table():
    row = {p: tuple(getattr(V[v], p) for v in VERSIONS) for p in PREDICATES}
    assert row["needs_explicit_batch_flag"] == (True, False, False, False)
    assert row["strongly_typed_only"] == (False, False, False, True)
    assert row["legacy_calibrator_allowed"] == (True, True, False, False)  # 10.16 >= 10.12: deprecated
    assert row["int8_calibrator_deprecated"] == (False, False, True, True)
    # EXPLICIT_BATCH is removed in 11 (and a no-op in 10): the flag exists where it is needed
    assert all("NetworkDefinitionCreationFlag.EXPLICIT_BATCH" in symbols(v) for v in VERSIONS if V[v].needs_explicit_batch_flag)
    assert "NetworkDefinitionCreationFlag.EXPLICIT_BATCH" not in symbols("11.4.0.106")
    assert TrtVersion(8, 5, 2).has_hardware_compat is False  # JetPack 5.1


def test_requires_refuses_unknown_predicates():
    with pytest.raises(ValueError):
        requires("has_everything")


# --- options ----------------------------------------------------------------------------------

@pytest.mark.parametrize("text,value", [("1GiB", 1 << 30), ("512MiB", 512 << 20), ("2GB", 2_000_000_000), ("4096", 4096),
                                        ("1.5GiB", 3 << 29)])
def test_parse_size(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["1Gx", "", "-1GiB", "0", "GiB"])
def test_parse_size_refuses(text):
    with pytest.raises(UsageError):
        parse_size(text)


@pytest.mark.parametrize("kwargs,match", [
    ({"fp16": True, "int8": True, "high_precision": "fp32"}, "choose one"),
    ({"high_precision": "fp32"}, "--int8 option"),
    ({"int8": True, "calib": Path("x.npy"), "high_precision": "bf16"}, "unknown --high-precision"),
    ({"calib": Path("x.npy")}, "--calib"),
    ({"int8": True, "calib": Path("x.npy"), "method": "magic"}, "unknown --method"),
    ({"legacy_calibrator": True}, "--int8 option"),
    ({"int8": True, "legacy_calibrator": True}, "needs --calib"),
    ({"fp16": True, "dla_core": -1}, "DLA core index"),
    ({"gpu_fallback": False}, "--no-gpu-fallback"),
    ({"hardware_compat": "turing+"}, "unknown --hardware-compat"),
    ({"fp16": True, "dla_core": 0, "hardware_compat": "ampere+"}, "cannot be combined with --dla"),
    ({"builder_opt_level": 6}, "0-5"),
    ({"samples": 0}, "--samples"),
])
def test_option_validation(kwargs, match):
    with pytest.raises(UsageError, match=match):
        EngineConfig(model=Path("m.onnx"), **kwargs)


@pytest.fixture
def onnx_file(tmp_path):
    return tiny_onnx(tmp_path)


def test_inspect_onnx(onnx_file, tmp_path):
    info = inspect_onnx(onnx_file)
    assert not info.has_qdq and not info.has_fp16 and info.precision == "fp32"
    assert info.inputs == (("input", ("batch", 3, 4, 4)),)
    assert info.node_names[2] == "/norm/LayerNormalization"
    assert info.fp32_keep_names(("LayerNormalization", "Softmax")) == {"/norm/LayerNormalization", "/softmax/Softmax"}
    with pytest.raises(InputError):
        inspect_onnx(tmp_path / "missing.onnx")


def test_resolve_precision_sources(onnx_file):
    info = inspect_onnx(onnx_file)
    cfg = EngineConfig(model=onnx_file)
    assert resolve(cfg, info).precision == "fp32"
    r = resolve(replace(cfg, fp16=True), info)
    assert (r.precision, r.source, r.batch) == ("fp16", "fp16-pass", BatchRange(1, 1, 8))
    r = resolve(replace(cfg, int8=True, calib=Path("c.npy")), info)
    assert (r.precision, r.source) == ("int8", "qdq-pass")
    r = resolve(replace(cfg, int8=True, calib=Path("c.npy"), legacy_calibrator=True), info)
    assert r.source == "legacy-calibrator" and r.calib_cache is None
    assert resolve(replace(cfg, batch=BatchRange.parse("2:4:16")), info).batch == BatchRange(2, 4, 16)


def test_int8_without_calibration_or_qdq_is_refused(onnx_file):
    with pytest.raises(UsageError, match="no Q/DQ nodes; give --calib"):
        resolve(EngineConfig(model=onnx_file, int8=True), inspect_onnx(onnx_file))


def test_dla_with_fp32_is_refused(onnx_file):
    with pytest.raises(UsageError, match="--dla needs --fp16 or --int8"):
        resolve(EngineConfig(model=onnx_file, dla_core=0), inspect_onnx(onnx_file))
    assert resolve(EngineConfig(model=onnx_file, dla_core=0, fp16=True), inspect_onnx(onnx_file)).precision == "fp16"


def test_qdq_onnx(onnx_file):
    import dataclasses

    base = inspect_onnx(onnx_file)
    info = dataclasses.replace(base, has_qdq=True, manifest={**base.manifest.to_json(), "precision": "int8", "quantization": {"target": "trt"}})
    r = resolve(EngineConfig(model=onnx_file), info)
    assert (r.precision, r.source) == ("int8", "onnx")  # Q/DQ: INT8 without asking
    assert resolve(EngineConfig(model=onnx_file, int8=True), info).source == "onnx"
    r = resolve(EngineConfig(model=onnx_file, int8=True, fp16=True), info)  # trtexec --int8 --fp16
    assert (r.precision, r.float_parts, r.onnx_has_fp16) == ("int8", "fp16", False)
    p8 = plan(EngineConfig(model=onnx_file, int8=True, fp16=True), r, V["8.6.1"])
    assert {"INT8", "FP16", "OBEY_PRECISION_CONSTRAINTS"} <= set(p8.builder_flags) and p8.fp32_islands
    with pytest.raises(UsageError, match="builds it strongly typed"):  # the FP32-typed file cannot become FP16 there
        plan(EngineConfig(model=onnx_file, int8=True, fp16=True), r, V["10.3.0"])
    typed16 = dataclasses.replace(info, has_fp16=True)  # the INT8+FP16 file of vitdeploy quantize
    r16 = resolve(EngineConfig(model=onnx_file), typed16)
    assert r16.float_parts == "fp16" and plan(EngineConfig(model=onnx_file), r16, V["10.3.0"]).builder_flags == ()
    assert set(plan(EngineConfig(model=onnx_file), r16, V["8.6.1"]).builder_flags) >= {"INT8", "FP16"}
    with pytest.raises(UsageError, match="requantize"):
        resolve(EngineConfig(model=onnx_file, int8=True, high_precision="fp32"), typed16)
    with pytest.raises(UsageError, match="already INT8"):
        resolve(EngineConfig(model=onnx_file, int8=True, calib=Path("c.npy")), info)
    ort = dataclasses.replace(info, manifest={**info.manifest.to_json(), "quantization": {"target": "ort-cpu"}})
    with pytest.raises(UsageError, match="--qdq-form trt"):
        resolve(EngineConfig(model=onnx_file), ort)


def test_static_batch(tmp_path):
    path = tiny_onnx(tmp_path, batch=None)
    info = inspect_onnx(path)
    assert resolve(EngineConfig(model=path), info).batch is None
    with pytest.raises(UsageError, match="static batch"):
        resolve(EngineConfig(model=path, batch=BatchRange.parse("1:4:8")), info)


def test_dynamic_batch_without_manifest(onnx_file):
    onnx_file.with_suffix(".json").unlink()
    with pytest.raises(UsageError, match="--dynamic-batch"):
        resolve(EngineConfig(model=onnx_file), inspect_onnx(onnx_file))


def test_output_names(tmp_path):
    m = tmp_path / "v.onnx"
    assert default_output(m, "fp32").name == "v.trt.engine"
    assert default_output(m, "fp16").name == "v.fp16.trt.engine"
    assert default_output(tmp_path / "v.int8.onnx", "int8").name == "v.int8.trt.engine"
    for bad in ("v.engine", "v.fp16.engine", "v.int8.plan", "x.onnx"):
        with pytest.raises(UsageError):
            check_output_name(tmp_path / bad, m)  # its manifest would overwrite an ONNX manifest
    check_output_name(tmp_path / "v.fp16.trt.engine", m)


# --- the plan per version -----------------------------------------------------------------------

def _plan(version, **kwargs):
    cfg = EngineConfig(model=Path("m.onnx"), **kwargs)
    precision = "int8" if cfg.int8 else "fp16" if cfg.fp16 else "fp32"
    source = {"int8": "legacy-calibrator" if cfg.legacy_calibrator else "qdq-pass", "fp16": "fp16-pass", "fp32": "onnx"}[precision]
    from vitdeploy.engine.config import Request

    float_parts = cfg.high_precision if precision == "int8" else "fp32"
    return plan(cfg, Request(precision, source, BatchRange(1, 1, 8), float_parts=float_parts), V[version])


def test_fp16_plan_per_version():
    p8, p10, p16, p11 = (_plan(v, fp16=True) for v in VERSIONS)
    assert (p8.strongly_typed, p8.network_flags, p8.precision_pass, p8.fp32_islands) == (False, ("EXPLICIT_BATCH",), None, True)
    assert set(p8.builder_flags) == {"FP16", "OBEY_PRECISION_CONSTRAINTS"}
    for p in (p10, p16):
        assert (p.strongly_typed, p.network_flags, p.builder_flags, p.precision_pass) == (True, ("STRONGLY_TYPED",), (), "fp16")
    assert (p11.strongly_typed, p11.network_flags, p11.builder_flags, p11.precision_pass) == (True, (), (), "fp16")
    assert [p.progress_monitor for p in (p8, p10, p16, p11)] == [False, True, True, True]


def test_int8_plan_per_version():
    p8, p10, p16, p11 = (_plan(v, int8=True, calib=Path("c.npy")) for v in VERSIONS)
    assert all(p.precision_pass == "int8" for p in (p8, p10, p16, p11))  # Q/DQ everywhere
    # INT8+FP16 by default: the flags of `trtexec --int8 --fp16` on 8.x, with LayerNorm/Softmax kept FP32
    assert set(p8.builder_flags) == {"INT8", "FP16", "OBEY_PRECISION_CONSTRAINTS"} and p8.fp32_islands
    assert not p8.strongly_typed
    assert all(p.builder_flags == () and p.strongly_typed for p in (p10, p16, p11))
    fp32_parts = _plan("8.6.1", int8=True, calib=Path("c.npy"), high_precision="fp32")
    assert fp32_parts.builder_flags == ("INT8",) and not fp32_parts.fp32_islands


def test_legacy_calibrator_only_before_10_12():
    p8 = _plan("8.6.1", int8=True, calib=Path("c.npy"), legacy_calibrator=True)
    p10 = _plan("10.3.0", int8=True, calib=Path("c.npy"), legacy_calibrator=True)
    for p in (p8, p10):
        assert p.use_calibrator and not p.strongly_typed and p.precision_pass == "int8-cache"
        assert set(p.builder_flags) == {"INT8", "FP16", "OBEY_PRECISION_CONSTRAINTS"}
    for v in ("10.16.1.11", "11.4.0.106"):
        with pytest.raises(UsageError, match="--legacy-calibrator"):
            _plan(v, int8=True, calib=Path("c.npy"), legacy_calibrator=True)


def test_compatibility_options_per_version():
    assert _plan("10.16.1.11", hardware_compat="same-cc").hardware_level == "SAME_COMPUTE_CAPABILITY"
    assert _plan("8.6.1", hardware_compat="ampere+").hardware_level == "AMPERE_PLUS"
    with pytest.raises(UsageError, match="does not have this level"):
        _plan("10.3.0", hardware_compat="same-cc")
    with pytest.raises(UsageError, match="8.6 and newer"):
        plan(EngineConfig(model=Path("m"), version_compatible=True), _request(), TrtVersion(8, 5, 2))
    with pytest.raises(UsageError, match="8.6 and newer"):
        plan(EngineConfig(model=Path("m"), builder_opt_level=2), _request(), TrtVersion(8, 5, 2))
    with pytest.raises(CompatibilityError, match="JetPack"):
        plan(EngineConfig(model=Path("m"), hardware_compat="ampere+"), _request(), V["10.3.0"], on_jetson=True)
    assert "VERSION_COMPATIBLE" in _plan("11.4.0.106", version_compatible=True).builder_flags
    assert "GPU_FALLBACK" in _plan("10.3.0", fp16=True, dla_core=0).builder_flags
    assert "GPU_FALLBACK" not in _plan("10.3.0", fp16=True, dla_core=0, gpu_fallback=False).builder_flags


def _request():
    from vitdeploy.engine.config import Request

    return Request("fp32", "onnx", None)


# --- engine / GPU compatibility ----------------------------------------------------------------

MANIFEST = {"tensorrt": {"version": "10.3.0.30"}, "gpu": {"name": "Orin", "compute_capability": "8.7"},
            "build_options": {"version_compatible": False, "hardware_compat": "none"}}
ORIN = {"name": "Orin", "compute_capability": "8.7"}


def test_compat_same_version_and_gpu():
    assert compat.check_engine(MANIFEST, TrtVersion.parse("10.3.0.30"), ORIN) == []


def test_compat_other_tensorrt_refused():
    with pytest.raises(CompatibilityError, match="built with TensorRT 10.3.0.30 but this machine has TensorRT 10.3.0.26"):
        compat.check_engine(MANIFEST, TrtVersion.parse("10.3.0.26"), ORIN)
    with pytest.raises(CompatibilityError):
        compat.check_engine(MANIFEST, TrtVersion.parse("11.4.0.106"), ORIN)


def test_compat_version_compatible_engines_run_on_newer_only():
    m = {**MANIFEST, "build_options": {"version_compatible": True}}
    assert compat.check_engine(m, TrtVersion.parse("10.16.1.11"), ORIN) == []
    with pytest.raises(CompatibilityError, match="older"):
        compat.check_engine(m, TrtVersion.parse("10.2.0"), ORIN)


def test_compat_other_gpu_refused():
    with pytest.raises(CompatibilityError, match=r"compute capability 8\.7.*\(8\.9\)"):
        compat.check_engine(MANIFEST, TrtVersion.parse("10.3.0.30"), {"name": "RTX 4090", "compute_capability": "8.9"})
    amp = {**MANIFEST, "build_options": {"hardware_compat": "ampere+"}, "gpu": {"compute_capability": "8.6"}}
    assert compat.check_engine(amp, TrtVersion.parse("10.3.0.30"), {"compute_capability": "9.0"}) == []
    with pytest.raises(CompatibilityError):
        compat.check_engine(amp, TrtVersion.parse("10.3.0.30"), {"compute_capability": "7.5"})


def test_compat_without_manifest_is_a_note():
    assert "no manifest" in compat.check_engine(None, TrtVersion(10, 3), ORIN)[0]


# --- inspector JSON -----------------------------------------------------------------------------

def _layer(name, *formats):
    return {"Name": name, "LayerType": "x", "Inputs": [{"Format/Datatype": formats[0]}],
            "Outputs": [{"Format/Datatype": f} for f in formats[1:]]}


def test_layer_precisions():
    info = {"Layers": [_layer("conv", "Thirty-two wide channel vectorized row major Int8 format", "Row major linear FP32"),
                       _layer("mm", "Half", "Half"), _layer("ln", "Row major linear FP32", "Row major linear FP32"),
                       _layer("bf", "Row major linear BFloat16", "Float"), _layer("shape", "Row major linear Int32")]}
    s = layers.summarize(json.dumps(info))
    assert [x["precision"] for x in s.layers] == ["int8", "fp16", "fp32", "bf16", None]
    assert s.counts == {"int8": 1, "fp16": 1, "fp32": 1, "bf16": 1, "other": 1}
    assert s.has("fp16") and s.has("int8") and layers.check_precision_present(s, "fp16") is None


def test_requested_precision_absent_fails():
    s = layers.summarize({"Layers": [_layer("a", "Row major linear FP32", "Row major linear FP32")] * 3})
    with pytest.raises(EngineBuildError, match="FP16 was requested but no layer") as e:
        layers.check_precision_present(s, "fp16")
    assert e.value.exit_code == 9
    with pytest.raises(EngineBuildError, match="INT8"):
        layers.check_precision_present(s, "int8")
    assert layers.check_precision_present(s, "fp32") is None


def test_names_only_inspector_output_is_a_note_not_a_failure():
    s = layers.summarize({"Layers": ["a", "b"]})
    assert not s.detailed
    assert "could not verify" in layers.check_precision_present(s, "fp16")


# --- legacy calibration cache -------------------------------------------------------------------

def test_cache_header_per_version(tmp_path):
    assert cache_header(TrtVersion(8, 6, 1)) == "TRT-8601-EntropyCalibration2"
    assert cache_header(TrtVersion(8, 5, 2)) == "TRT-8502-EntropyCalibration2"
    assert cache_header(TrtVersion(10, 3, 0)) == "TRT-100300-EntropyCalibration2"
    from vitdeploy.trt import calibration_cache as trtcache

    path = tmp_path / "m.calib"
    trtcache.write(path, {"input": 2.0, "/fc1/MatMul_output_0": 5.0})
    data = cache_for_version(path, TrtVersion(10, 3, 0, 30)).decode()
    assert data.splitlines()[0] == "TRT-100300-EntropyCalibration2"
    header, scales = trtcache.decode(data)
    assert set(scales) == {"input", "/fc1/MatMul_output_0"}
    path.write_text("garbage")
    with pytest.raises(InputError):
        cache_for_version(path, TrtVersion(8, 6, 1))
