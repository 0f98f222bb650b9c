"""Every command's table read at 80 columns (a default terminal, or a pipe): no number cut (`5.7…`),
no artifact name cut until rows cannot be told apart, nothing wider than 80 columns."""

from __future__ import annotations

import re

import numpy as np
import pytest
from digits import digit_images, write_image_folder
from test_trt_cli import fake_trt, registered  # noqa: F401 - fixtures: a fake TensorRT, build-engine registered
from vitdeploy.cli import run

# a number or name cut at its end: "5.7…", "86.…", "deit_tiny_pat…"
CUT = re.compile(r"[\w.%]…")  # a name cut from the left ("…int8.onnx") keeps its end


@pytest.fixture(autouse=True)
def columns_80(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")


@pytest.fixture(scope="module")
def art(tmp_path_factory):
    """vit_tiny_test exported (long name, as the zoo's), quantized INT8 and FP16, and 40 digit images."""
    root = tmp_path_factory.mktemp("tables80")
    images, labels = digit_images(32)
    data = write_image_folder(root / "digits", images, labels, np.arange(40))
    onnx = root / "vit_tiny_test_patch8_32.onnx"
    assert run(["export", "vit_tiny_test", "-o", str(onnx), "--trt-version", "ort"]) == 0
    int8, fp16 = onnx.with_suffix(".int8.onnx"), onnx.with_suffix(".fp16.onnx")
    assert run(["quantize", str(onnx), "--int8", "--calib", str(data), "--samples", "24", "--no-gate", "-o", str(int8)]) == 0
    assert run(["quantize", str(onnx), "--fp16", "--calib", str(data), "--samples", "24", "--no-gate", "-o", str(fp16)]) == 0
    return {"root": root, "data": data, "onnx": onnx, "int8": int8, "fp16": fp16}


def assert_reads(out: str, names: tuple[str, ...] = ()) -> None:
    lines = out.splitlines()
    tables = [line for line in lines if not re.match(r"\w+: /", line)]  # "onnx: /path" lines are never wrapped
    assert max(map(len, tables), default=0) <= 80, out
    assert not CUT.search(out), out
    for name in names:  # the distinguishing end of each artifact name is on one line
        assert any(name[-24:] in line for line in lines), (name, out)


def test_models(cli):
    code, out, _ = cli("models")
    assert code == 0
    assert_reads(out, ("deit_small_distilled_patch16_224", "SReT_S_wo_slice_finetune_384"))


def test_env(cli):
    code, out, _ = cli("env")
    assert code == 0
    assert_reads(out)


def test_export(cli, art):
    onnx = art["root"] / "again" / "vit_tiny_test.onnx"
    code, out, _ = cli("export", "vit_tiny_test", "-o", onnx, "--trt-version", "trt10")
    assert code == 0
    assert_reads(out)
    assert f"onnx: {onnx}" in out.splitlines() and f"manifest: {onnx.with_suffix('.json')}" in out.splitlines()


def test_check(cli, art):
    code, out, _ = cli("check", art["int8"], "--trt-version", "trt8.5", "--trt-version", "trt10", "--trt-version", "ort")
    assert code == 0
    assert_reads(out)


def test_quantize(cli, art):
    output = art["root"] / "q" / "vit_tiny_test_patch8_32.int8.onnx"
    code, out, _ = cli("quantize", art["onnx"], "--int8", "--calib", art["data"], "--samples", "24", "--no-gate",
                       "-o", output)
    assert code == 0
    assert_reads(out)
    assert f"output: {output}" in out.splitlines()  # the path on one line, whatever its length


def test_validate(cli, art):
    code, out, _ = cli("validate", art["onnx"], art["fp16"], art["int8"], "--data", art["data"], "--samples", "16")
    assert code in (0, 6)
    assert_reads(out, (art["fp16"].name, art["int8"].name))


def test_bench(cli, art):
    code, out, err = cli("bench", art["onnx"], art["fp16"], art["int8"], "--iterations", "3", "--warmup", "1",
                         "--report", art["root"] / "bench-report")
    assert code == 0, err
    assert_reads(out, (art["onnx"].name, art["fp16"].name, art["int8"].name))
    report = [line for line in err.splitlines() if line.startswith("report:")]
    assert len(report) == 1 and "bench.json" in report[0]  # one line: not wrapped when stderr is not a TTY


def test_build_engine(cli, art, fake_trt):  # noqa: F811
    engine = art["root"] / "vit_tiny_test_patch8_32.int8.trt.engine"
    code, out, err = cli("build-engine", art["int8"], "-o", engine)
    assert code == 0, err
    assert_reads(out)
    assert f"engine: {engine}" in out.splitlines()


@pytest.mark.parametrize("command", ["models", "env", "export", "check", "quantize", "build-engine", "validate", "bench"])
def test_help_examples_are_whole(cli, command):
    code, out, _ = cli(command, "--help")
    assert code == 0
    lines = [line.strip(" │") for line in out.splitlines()] + [""]
    for i, text in enumerate(lines[:-1]):
        continued = text.endswith("\\")  # a shell line continuation, on purpose
        while continued:
            i += 1
            continued = lines[i].endswith("\\")
        if text.startswith("vitdeploy "):  # an example ends where its (continued) command ends: nothing wrapped
            assert lines[i + 1] == "", (command, text, lines[i + 1])
