"""Every family's smallest official variant and tiny variant: export, parity, TensorRT readiness,
and INT8/FP16 fidelity (slow: builds 224 px models)."""

from __future__ import annotations

import pytest

import digits

pytestmark = pytest.mark.slow

SMALLEST_OFFICIAL = ["deit_tiny_patch16_224", "t2t_vit_7", "convit_tiny", "SReT_T", "ceit_tiny_patch16_224"]
TINY = ["vit_tiny_test", "t2t_vit_tiny_test", "t2t_vit_t_tiny_test", "convit_tiny_test", "sret_tiny_test", "ceit_tiny_test"]
TRT_TARGETS = ("trt8.5", "trt10", "trt11")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from vitdeploy.export import BatchRange, ExportConfig, export

    folder = tmp_path_factory.mktemp("exports")
    cache = {}

    def get(name):
        if name not in cache:
            out = folder / f"{name}.onnx"
            cache[name] = export(ExportConfig(name, output=out, batch=BatchRange(1, 1, 8), targets=TRT_TARGETS,
                                              strict_check=True))
        return cache[name]

    return get


@pytest.mark.parametrize("name", SMALLEST_OFFICIAL + TINY)
def test_exports_at_opset17_with_parity_and_no_trt_findings(exported, name):
    m = exported(name).manifest
    assert m["export"]["opset"] == 17
    assert set(m["parity"]["final"]) == {"1", "8"}
    for fig in m["parity"]["final"].values():
        assert fig["max_abs"] <= 1e-4 and fig["cosine_min"] >= 0.99999 and fig["top1_agreement"] == 1.0
    for target in TRT_TARGETS:  # "info": LayerNormalization on 8.5, which build-engine decomposes there
        blocking = [f for f in m["trt_readiness"][target]["findings"] if f["severity"] != "info"]
        assert blocking == [], (target, m["trt_readiness"][target])
    assert {f["subject"] for f in m["trt_readiness"]["trt8.5"]["findings"]} <= {"LayerNormalization"}
    forbidden = {"Einsum", "Col2Im", "GatherND", "TopK", "Loop", "If", "RandomUniform", "RandomNormal"}
    assert not forbidden & set(m["graph"]["ops"])
    if name.startswith("SReT") or name.startswith("sret"):
        assert m["deploy_form"]["permutations"], "the fixed permutation must be recorded in the manifest"


@pytest.fixture(scope="module")
def calib_224(tmp_path_factory):
    images, labels = digits.digit_images(224)
    root = tmp_path_factory.mktemp("calib224")
    return digits.write_image_folder(root, images, labels, digits.split(len(images))[0][:96])


@pytest.mark.parametrize("name", SMALLEST_OFFICIAL)
def test_smallest_official_int8_and_fp16_fidelity(exported, calib_224, name, tmp_path, monkeypatch, capsys):
    from vitdeploy.calib.quantize import QuantizeConfig, quantize

    monkeypatch.setenv("VITDEPLOY_CACHE", str(tmp_path / "cache"))
    src = exported(name).onnx_path
    int8 = quantize(QuantizeConfig(model=src, precision="int8", calib=calib_224, samples=32, holdout=12,
                                   output=tmp_path / "i8.onnx"))
    fp16 = quantize(QuantizeConfig(model=src, precision="fp16", calib=calib_224, samples=32, holdout=12,
                                   output=tmp_path / "h.onnx"))
    c8, c16 = int8.manifest["accuracy"]["vs_fp32"], fp16.manifest["accuracy"]["vs_fp32"]
    with capsys.disabled():
        print(f"\n[official] {name}: INT8 cosine min {c8['cosine_min']:.5f} mean {c8['cosine_mean']:.5f}; "
              f"FP16 cosine min {c16['cosine_min']:.7f}")
    assert c8["cosine_min"] >= 0.99
    assert c16["cosine_min"] >= 0.9999
