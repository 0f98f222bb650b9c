"""Typed manifests (vitdeploy.core.manifest): every manifest the writers produce conforms to the
schema of its kind and survives the typed round trip; reading is tolerant and goes through one place."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping

import numpy as np
import pytest

from test_trt_fakes import make_fake_trt, tiny_onnx
from vitdeploy.core import manifest as manifests
from vitdeploy.core.errors import InputError
from vitdeploy.core.io import manifest_path, new_manifest, write_manifest
from vitdeploy.core.manifest import KINDS, Manifest, ParentRef, schema_path, validation_errors
from vitdeploy.core.precision import QuantHints

GPU = {"index": 0, "name": "NVIDIA Jetson AGX Orin (fake)", "compute_capability": "8.7"}


@pytest.fixture(autouse=True)
def _cache(isolated_cache):
    return isolated_cache


def check(artifact, kind: str, precision: str) -> Manifest:
    """The manifest beside ``artifact``: schema-valid, typed, and the typed round trip is exact."""
    raw = json.loads(manifest_path(artifact).read_text())
    assert validation_errors(raw) == [], (artifact, validation_errors(raw))
    m = manifests.read(artifact, required=True)
    assert m.kind == kind and m.precision == precision and m.artifact == artifact.name
    assert m.to_json() == raw and json.dumps(m.to_json()) == json.dumps(raw)  # order too
    assert Manifest.from_json(m.to_json()) == m and m == raw
    assert validation_errors(m) == []
    return m


def test_schemas_exist_and_compile():
    for kind in KINDS:
        assert schema_path(kind).is_file()
        assert validation_errors({"kind": kind}) != []  # required fields missing
    assert validation_errors({"kind": "bench"}) != []


def test_every_written_manifest_validates_and_round_trips(tmp_path):
    from vitdeploy.calib.quantize import QuantizeConfig, quantize
    from vitdeploy.export import ExportConfig, export

    fp32 = export(ExportConfig("vit_tiny_test", output=tmp_path / "m.onnx")).onnx_path
    m32 = check(fp32, "onnx", "fp32")
    assert m32.parent is None and m32.batch.complete and m32.preprocessing.input_size == (3, 32, 32)
    assert isinstance(m32.quantization_hints, QuantHints) and m32.model.name == "vit_tiny_test"
    assert m32.random_weights

    np.save(tmp_path / "d.npy", np.random.default_rng(0).standard_normal((30, 3, 32, 32)).astype(np.float32))
    for precision in ("fp16", "int8"):
        out = quantize(QuantizeConfig(model=fp32, precision=precision, calib=tmp_path / "d.npy", samples=18,
                                      holdout=7, output=tmp_path / f"m.{precision}.onnx")).onnx_path
        m = check(out, "onnx", precision)
        assert m.parent.sha256 == m32.sha256 and m.parent.precision == "fp32"
        assert m.calibration_data.requested_samples == 18 and m.calibration_data.seed == 0
        assert m.calibration_data.fingerprint and m.calibration_data.hash
        assert m.preprocessing == m32.preprocessing and m.accuracy.vs_fp32["cosine_min"] > 0.5
        if precision == "int8":
            assert m.quantization.target == "trt" and m.quantization.high_precision == "fp16"
            assert m.fp16 is None and m.fp16_islands is m.quantization.fp16
        else:
            assert m.quantization is None and m.fp16_islands is m.fp16 and m.fp16.io == "float32"


@pytest.mark.parametrize("version", ["8.6.1", "11.4.0.106"])
def test_engine_manifest_validates_and_round_trips(tmp_path, version):
    from vitdeploy.engine.config import EngineConfig
    from vitdeploy.pipeline.engine import build

    model = tiny_onnx(tmp_path)
    np.save(tmp_path / "c.npy", np.random.default_rng(1).standard_normal((24, 3, 4, 4)).astype(np.float32))
    res = build(EngineConfig(model=model, int8=True, calib=tmp_path / "c.npy", method="minmax", samples=16),
                trt=make_fake_trt(version), gpu=GPU, jetson=None)
    qdq = check(model.with_name("tiny.int8.onnx"), "onnx", "int8")
    m = check(res.engine_path, "engine", "int8")
    assert m.tensorrt.version.startswith(version.rsplit(".", 1)[0]) and m.gpu.compute_capability == "8.7"
    assert m.calibration.hash == qdq.calibration_data.hash and m.calibration.method == "minmax"
    assert m.parent.sha256 == qdq.sha256 and m.build_options.version_compatible is False
    fp16 = build(EngineConfig(model=model, fp16=True, output=tmp_path / "f.engine"), trt=make_fake_trt(version),
                 gpu=GPU, jetson=None)
    check(fp16.engine_path, "engine", "fp16")


def test_tolerant_of_absent_sections_and_unknown_keys():
    m = Manifest.from_json({"kind": "onnx", "future": {"x": [1, 2]}, "quantization": "not an object"})
    assert m.parent is None and m.batch is None and m.quantization is None and m.warnings == ()
    assert m.fp16_islands is None and m.quantization_hints is None
    assert m.to_json() == {"kind": "onnx", "future": {"x": [1, 2]}, "quantization": "not an object"}
    with pytest.raises(TypeError):
        m.raw["kind"] = "engine"  # read-only
    with pytest.raises(TypeError):
        m.raw["future"]["x"] = 3
    assert m.to_json()["future"] == {"x": [1, 2]} and not isinstance(m, Mapping)  # typed only: no dict-style reads


def test_replace_writes_over_raw_and_direct_construction():
    m = Manifest.from_json({"kind": "onnx", "precision": "fp32", "parent": {"artifact": "a", "sha256": "s", "x": 1}})
    changed = dataclasses.replace(m, precision="int8", parent=dataclasses.replace(m.parent, artifact="b"))
    assert changed.to_json() == {"kind": "onnx", "precision": "int8", "parent": {"artifact": "b", "sha256": "s", "x": 1}}
    assert Manifest(kind="engine", parent=ParentRef(artifact="a", sha256="s")).to_json() == {
        "kind": "engine", "parent": {"artifact": "a", "sha256": "s"}}


def test_read_one_place(tmp_path):
    art = tmp_path / "x.onnx"
    art.write_bytes(b"onnx")
    assert manifests.read(art) is None
    with pytest.raises(InputError, match="no manifest"):
        manifests.read(art, required=True)
    write_manifest(art, new_manifest("onnx", art, precision="fp16", batch={"min": 1, "opt": 2, "max": 4}))
    m = manifests.read(art)
    assert m.precision == "fp16" and m.batch.max == 4 and len(m.sha256) == 64
    manifest_path(art).write_text('{"batch": "big"}')
    with pytest.raises(InputError, match="malformed"):
        manifests.read(art)
