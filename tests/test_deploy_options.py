"""`vitdeploy deploy` has the options of its steps (same names, defaults and definitions), they reach
the steps and the resume digests; without --data its verdicts are judged on held-out calibration
images; its summary keeps every figure and the verdict column at 80 columns."""

from __future__ import annotations

import json

import numpy as np
import pytest

# deploy's option -> the step command it comes from
STEP_OPTIONS = {"--input-size": "export", "--mean": "export", "--std": "export", "--dynamic-batch": "export",
                "--num-classes": "export", "--non-strict": "export", "--samples": "quantize", "--method": "quantize", "--holdout": "quantize",
                "--on-error": "quantize", "--thresholds": "validate"}


@pytest.fixture(scope="module")
def calib(tmp_path_factory):
    """40 small random images (20 calibrate, 20 are held out) and a thresholds file INT8 fails."""
    from PIL import Image

    root = tmp_path_factory.mktemp("deployopts")
    rng = np.random.default_rng(0)
    (root / "calib").mkdir()
    for i in range(40):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(root / "calib" / f"{i:02d}.png")
    (root / "th.json").write_text(json.dumps({"int8": {"cosine_min": 1.0, "max_abs": 0.0}}))
    return root


def _options(command: str) -> dict:
    import typer.main
    from vitdeploy.cli import app

    params = typer.main.get_command(app).commands[command].params  # type: ignore[attr-defined]
    return {p.opts[0]: p for p in params if p.opts[0].startswith("--")}


def test_deploy_has_its_steps_options_defined_once():
    deploy = _options("deploy")
    for option, step in STEP_OPTIONS.items():
        mine, theirs = deploy[option], _options(step)[option]
        assert (mine.help, mine.default, mine.type.name) == (theirs.help, theirs.default, theirs.type.name), option
    assert deploy["--samples"].default == 512


def test_validation_split_is_quantizes_held_out_split():
    """deploy validates on validate's seeded subset of the held-out size: quantize's held-out images."""
    from vitdeploy.data.sampling import sample_indices
    from vitdeploy.data.sampling import holdout_split
    from vitdeploy.pipeline.run import SEED

    for n, samples, holdout in [(3, 512, None), (40, 512, None), (40, 512, 10), (1000, 512, None), (5000, 64, 300)]:
        calibrated, held = holdout_split(n, samples, holdout, SEED)
        assert len(held) and np.array_equal(sample_indices(n, len(held), SEED), held)
        assert not set(calibrated) & set(held)


@pytest.mark.parametrize("args, message", [
    (("--batch", "1,8,32", "--dynamic-batch", "1:4:16"), "--batch 32 outside --dynamic-batch 1:4:16"),
    (("--dynamic-batch", "8:1:4"), "invalid batch range"),
    (("--thresholds", "no-such.json"), "--thresholds"),
    (("--holdout", "30"), "invalid --holdout 30"),
    (("--samples", "0"), "--samples"),
    (("--on-error", "ignore"), "--on-error"),
    (("--mean", "0.5,0.5"), "--mean"),
])
def test_deploy_refuses_bad_step_options(cli, tmp_path, calib, args, message):
    out = tmp_path / "o"
    rc, _, err = cli("deploy", "vit_tiny_test", "--calib", calib / "calib", "--out", out, *args)
    assert rc == 2, err
    assert message in err and len(err.strip().splitlines()) == 1 and not out.exists()


def _deploy(cli, calib, out, *args):
    return cli("deploy", "vit_tiny_test", "--calib", calib / "calib", "--batch", "1,8,32", "--iterations", "2",
               "--out", out, *args)


def test_deploy_summary_at_80_columns(cli, tmp_path, calib, monkeypatch):
    monkeypatch.setenv("VITDEPLOY_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("COLUMNS", "80")
    out = tmp_path / "out"
    rc, stdout, err = _deploy(cli, calib, out, "--thresholds", calib / "th.json", "--mean", "0.5,0.5,0.5",
                              "--std", "0.5,0.5,0.5")
    assert rc == 6 and "int8 failed validation" in err, err  # the summary first, then exit 6 as validate
    lines = stdout.splitlines()
    assert "…" not in stdout
    assert all(len(line) <= 80 for line in lines if not line.startswith("report:"))
    header = next(line for line in lines if line.split()[:1] == ["prec"])
    assert header.split() == ["prec", "top-1", "cosine", "ms", "@1", "ms", "@8", "ms", "@32", "verdict"]
    int8 = next(line for line in lines if line.lstrip().startswith("int8"))
    assert int8.rstrip().endswith("FAIL max abs +1")  # one short reason; the figures are in the reports
    assert "warning: int8 quantize: only 20 calibration images" in stdout  # quantize's tiny-set warning
    report = json.loads((out / "report.json").read_text())
    row = {r["precision"]: r for r in report["precisions"]}["int8"]
    assert row["validation"].startswith("FAIL: max_abs") and "cosine" in row["validation"]
    assert report["validation_data"]["judged_on"] == f"20 held-out images of {calib / 'calib'} not used for calibration"
    int8_manifest = json.loads((out / row["artifact"]).with_suffix(".json").read_text())
    assert int8_manifest["calibration_data"]["calibration_samples"] == 20
    assert int8_manifest["calibration_data"]["holdout_samples"] == 20
    assert "verdicts judged on 20 held-out images" in (out / "report.md").read_text()
    manifest = json.loads((out / "vit_tiny_test.json").read_text())
    assert manifest["preprocessing"]["mean"] == [0.5] * 3 and manifest["batch"]["max"] == 32
    # the README's bench example on an export that does not serve the batch: the fix is in the message
    rc, _, err = cli("bench", out / "vit_tiny_test.onnx", "--batch", "1,8,64", "--iterations", "1")
    assert rc == 2 and "re-export with --dynamic-batch 1:8:64" in err


@pytest.mark.slow  # a whole deploy, then five resumed ones (~5 s)
def test_deploy_resumes_only_what_a_changed_option_touches(cli, tmp_path, calib, monkeypatch):
    monkeypatch.setenv("VITDEPLOY_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"

    def skipped(*args):
        rc, stdout, err = _deploy(cli, calib, out, "--precisions", "fp32,int8", "--json", *args)
        assert rc == 0, err
        return set(json.loads(stdout)["steps_skipped"]), json.loads(stdout)

    skipped()
    assert skipped("--holdout", "10")[0] == {"export"}
    steps, report = skipped("--holdout", "10", "--thresholds", "strict")
    assert steps == {"export", "quantize int8", "bench"} and report["validation_data"]["samples"] == 10
    assert not skipped("--holdout", "10", "--thresholds", "strict", "--mean", "0.4,0.5,0.5")[0]


def test_deploy_redoes_the_export_when_the_users_model_code_changes(cli, tmp_path, calib, monkeypatch):
    """A `package.module:function` model: its module's source is part of the export step's digest, so
    editing the model (a third encoder layer) re-exports instead of reusing the old ONNX."""
    monkeypatch.setenv("VITDEPLOY_CACHE", str(tmp_path / "cache"))
    monkeypatch.syspath_prepend(str(tmp_path))
    source = tmp_path / "mynets.py"

    def write(depth: int) -> None:
        source.write_text(
            "import torch\nfrom torch import nn\n\n\n"
            "class Net(nn.Module):\n"
            "    def __init__(self):\n"
            "        super().__init__()\n"
            "        self.embed = nn.Conv2d(3, 16, 8, 8)\n"
            f"        self.blocks = nn.Sequential(*[nn.Linear(16, 16) for _ in range({depth})])\n"
            "        self.head = nn.Linear(16, 10)\n\n"
            "    def forward(self, x):\n"
            "        return self.head(self.blocks(self.embed(x).flatten(2).mean(2)))\n\n\n"
            "def build():\n"
            "    torch.manual_seed(0)\n"
            "    return Net()\n")

    def deploy() -> set[str]:
        rc, stdout, err = cli("deploy", "mynets:build", "--input-size", "3,32,32", "--calib", calib / "calib",
                              "--precisions", "fp32,fp16", "--batch", "1", "--iterations", "2", "--out", tmp_path / "out", "--json")
        assert rc == 0, err
        return set(json.loads(stdout)["steps_skipped"])

    write(2)
    deploy()
    assert "export" in deploy()  # unchanged: reused
    import sys

    sys.modules.pop("mynets", None)
    write(3)
    assert "export" not in deploy()  # edited: exported again
    import onnx

    gemms = [n for n in onnx.load(str(tmp_path / "out" / "build.onnx")).graph.node if n.op_type in ("Gemm", "MatMul")]
    assert len(gemms) == 4, [n.op_type for n in gemms]  # three blocks and the head
