"""`vitdeploy deploy` end to end on the CPU: report contents, resumability, user models."""

from __future__ import annotations

import json

import pytest

import digits


@pytest.fixture(scope="module")
def digit_folders(tmp_path_factory, digits_vit_tiny):
    """Calibration and validation image folders of digits, and the session's trained vit_tiny_test
    as a timm-style {"model": state_dict} checkpoint (the wrapper deploy must unwrap)."""
    import torch

    d = digits_vit_tiny
    root = tmp_path_factory.mktemp("deploydata")
    torch.save({"model": torch.load(d["checkpoint"])}, root / "vit.pth")
    return (digits.write_image_folder(root / "calib", d["images"], d["labels"], d["train_idx"][:200]),
            digits.write_image_folder(root / "val", d["images"], d["labels"], d["test_idx"][:120]), root / "vit.pth")


@pytest.mark.slow  # trains a model once per session (~20 s), then deploys it twice
def test_deploy_registered_model_report_and_resume(cli, tmp_path, digit_folders, monkeypatch):
    monkeypatch.setenv("VITDEPLOY_CACHE", str(tmp_path / "cache"))
    calib, val, ckpt = digit_folders
    out = tmp_path / "out"
    args = ("deploy", "vit_tiny_test", "--checkpoint", ckpt, "--calib", calib, "--data", val, "--out", out,
            "--iterations", "5", "--json")
    rc, stdout, err = cli(*args)
    assert rc == 0, err
    report = json.loads(stdout)
    assert report == json.loads((out / "report.json").read_text())
    rows = {r["precision"]: r for r in report["precisions"]}
    assert list(rows) == ["fp32", "fp16", "int8"]
    assert report["validation_data"]["samples"] == 120 and report["validation_data"]["labels"]
    assert report["validation_data"]["judged_on"] == f"120 images of {val} (--data)"
    for precision, row in rows.items():
        assert set(row["latency"]) == {"1", "8"}
        assert all(v["p50_ms"] > 0 and v["throughput_ips"] > 0 for v in row["latency"].values())
        assert row["backend"] == "ort-cpu" and row["top1"] is not None
    assert rows["fp32"]["validation"] == "reference" and rows["fp16"]["validation"] == "pass"
    assert rows["fp16"]["cosine"] > 0.9999
    chain = [c["artifact"] for c in rows["int8"]["manifest_chain"]]
    assert chain == ["vit_tiny_test.int8-ort.onnx", "vit_tiny_test.onnx", "vit.pth"]
    assert rows["fp32"]["top1"] > 0.8 and abs(rows["int8"]["top1_drop_points"]) <= 1.5
    assert any("TensorRT not found" in n for n in report["notes"]) and report["gated"] is True
    assert not any("built-in" in n for n in report["notes"])
    md = (out / "report.md").read_text()
    assert "| int8 | vit_tiny_test.int8-ort.onnx | ort-cpu |" in md and "## Manifest chains" in md
    png = (out / "report.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    # resumable: nothing changed, so nothing is redone
    rc, stdout, err = cli(*args)
    assert rc == 0, err
    again = json.loads(stdout)
    assert set(again["steps_skipped"]) == {"export", "quantize fp16", "quantize int8", "validate", "bench"}


def test_deploy_user_model_with_builtin_calibration(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("VITDEPLOY_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "user"
    rc, stdout, err = cli("deploy", "usermodels:build_small_vit", "--input-size", "3,32,32", "--precisions", "fp32,int8",
                          "--batch", "1", "--out", out, "--iterations", "3", "--json")
    assert rc == 0, err  # no real data: verdicts are reported, not gating
    report = json.loads((out / "report.json").read_text())
    assert report["gated"] is False and any("do not fail the run" in n for n in report["notes"])
    assert report["notes"][0].startswith("INT8 was calibrated on vitdeploy's built-in synthetic sample")
    assert "> **Note:** INT8 was calibrated" in (out / "report.md").read_text()
    assert [r["precision"] for r in report["precisions"]] == ["fp32", "int8"]
    assert report["calibration"] == "built-in synthetic sample"
    # no --data: judged on the 32 of the 64 built-in images held out from calibration
    assert report["validation_data"]["judged_on"] == "32 held-out images of the built-in synthetic sample not used for calibration"


@pytest.mark.parametrize("args, code, message", [
    (("--precisions", "fp16,int8"), 2, "must include fp32"),
    (("--precisions", "fp32,int4"), 2, "--precisions"),
    (("--batch", "0"), 2, "positive"),
    (("--engines", "always"), 7, "tensorrt"),
])
def test_deploy_bad_input(cli, tmp_path, args, code, message):
    rc, _, err = cli("deploy", "vit_tiny_test", "--out", tmp_path / "o", *args)
    assert rc == code, err
    assert message.lower() in err.lower() and "Traceback" not in err
