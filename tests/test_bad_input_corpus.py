"""A corpus of bad inputs across every command (issue 15).

Each case runs the CLI in-process in a fresh working directory and asserts: the documented exit
code (never 1), at most 3 lines of error on stderr (the steps that went well before it print their
own one-line ticks there, as progress), no traceback, and no new or changed file anywhere the case
can see (its own folder and the shared fixtures).
"""

from __future__ import annotations

import errno
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

N = 16  # samples in the shared data


@dataclass(frozen=True)
class Shared:
    dir: Path
    onnx: Path  # vit_tiny_test, dynamic batch 1:1:8, with its manifest
    ckpt: Path  # a good state dict of vit_tiny_test
    data: Path  # (N, 3, 32, 32) normalised float32


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> Shared:
    from vitdeploy.export import ExportConfig, export
    from vitdeploy.models import create_model

    d = tmp_path_factory.mktemp("corpus")
    onnx_path = export(ExportConfig("vit_tiny_test", output=d / "v.onnx", targets=("ort",))).onnx_path
    torch.manual_seed(0)
    torch.save(create_model("vit_tiny_test").state_dict(), d / "good.pth")
    np.save(d / "data.npy", np.random.default_rng(0).standard_normal((N, 3, 32, 32)).astype(np.float32) * 0.5)
    return Shared(d, onnx_path, d / "good.pth", d / "data.npy")


@dataclass(frozen=True)
class Case:
    id: str
    setup: Callable[[Path, Shared], list]  # builds the bad input in the case folder, returns argv
    codes: tuple[int, ...]  # documented exit codes accepted (the first is the expected one)
    patch: Callable[[pytest.MonkeyPatch], None] | None = None
    says: str = ""  # a fragment the error line must contain


def _write(path: Path, content: bytes | str) -> Path:
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def _copy_onnx(d: Path, s: Shared, manifest: str | None = None) -> Path:
    """The shared ONNX copied into the case folder, with a given manifest text (None: none)."""
    out = Path(shutil.copy(s.onnx, d / "m.onnx"))
    if manifest is not None:
        _write(d / "m.json", manifest)
    return out


def _no_input_onnx(d: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper

    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])
    const = helper.make_node("Constant", [], ["y"], value=helper.make_tensor("c", TensorProto.FLOAT, [1, 10], [0.0] * 10))
    model = helper.make_model(helper.make_graph([const], "g", [], [out]), opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(d / "noin.onnx"))
    return d / "noin.onnx"


def _ckpt(d: Path, s: Shared, edit: Callable[[dict], object]) -> Path:
    sd = torch.load(s.ckpt, weights_only=True)
    torch.save(edit(sd), d / "c.pth")
    return d / "c.pth"


def _nan(sd: dict) -> dict:
    sd[next(iter(sd))].fill_(float("nan"))
    return sd


def _wrong_head(sd: dict) -> dict:
    return {k: (v[:7] if k.startswith("head.") else v) for k, v in sd.items()}


def _whole_module(sd: dict) -> torch.nn.Module:
    from vitdeploy.models import create_model

    return create_model("vit_tiny_test")


def _images_folder(d: Path, kind: str) -> Path:
    folder = d / "imgs"
    (folder / "a").mkdir(parents=True)
    if kind == "text":
        for i in range(3):
            _write(folder / "a" / f"{i}.txt", "not an image")
    elif kind == "broken":
        for i in range(3):
            _write(folder / "a" / f"{i}.jpg", b"\xff\xd8 not really a jpeg")
    return folder


def _thresholds(d: Path, body: str) -> Path:
    return _write(d / "t.json", body)


def _export(d: Path, *args) -> list:
    return ["export", "vit_tiny_test", "-o", d / "out.onnx", "--trt-version", "ort", *args]


def _quantize(d: Path, s: Shared, *args, model: Path | None = None) -> list:
    return ["quantize", model or s.onnx, "-o", d / "q.onnx", *args]


def _validate(d: Path, s: Shared, *args, data: Path | None = None, cand: Path | None = None) -> list:
    return ["validate", s.onnx, cand or s.onnx, "--data", data or s.data, *args]


def _bench(d: Path, s: Shared, *args, artifact: Path | None = None) -> list:
    return ["bench", artifact or s.onnx, "--iterations", "2", "--warmup", "0", *args]


def _raise(exc: BaseException) -> Callable:
    def raiser(*_a, **_k):
        raise exc

    return raiser


def _enospc() -> OSError:
    return OSError(errno.ENOSPC, "No space left on device")


def _patch(target: str, exc: BaseException) -> Callable[[pytest.MonkeyPatch], None]:
    return lambda mp: mp.setattr(target, _raise(exc))


def _ort_run(exc: BaseException) -> Callable[[pytest.MonkeyPatch], None]:
    import onnxruntime

    return lambda mp: mp.setattr(onnxruntime.InferenceSession, "run", _raise(exc))


CASES = [
    # ---- checkpoints
    Case("ckpt-empty", lambda d, s: _export(d, "-c", _write(d / "c.pth", b"")), (4,)),
    Case("ckpt-truncated", lambda d, s: _export(d, "-c", _write(d / "c.pth", s.ckpt.read_bytes()[:5000])), (4,)),
    Case("ckpt-text-file", lambda d, s: _export(d, "-c", _write(d / "c.pth", "hello, not torch\n")), (4,)),
    Case("ckpt-whole-module", lambda d, s: _export(d, "-c", _ckpt(d, s, _whole_module)), (4,)),
    Case("ckpt-nan-weights", lambda d, s: _export(d, "-c", _ckpt(d, s, _nan)), (4,)),
    Case("ckpt-wrong-head", lambda d, s: _export(d, "-c", _ckpt(d, s, _wrong_head)), (4,), says="--num-classes"),
    Case("ckpt-missing", lambda d, s: _export(d, "-c", d / "nope.pth"), (3,)),
    Case("ckpt-is-a-folder", lambda d, s: _export(d, "-c", d), (3,)),
    Case("ckpt-safetensors-garbage", lambda d, s: _export(d, "-c", _write(d / "c.safetensors", b"\x00" * 64)), (4,)),
    # ---- data
    Case("calib-empty-folder", lambda d, s: _quantize(d, s, "--int8", "--calib", _images_folder(d, "empty")), (3,)),
    Case("calib-non-image-files", lambda d, s: _quantize(d, s, "--int8", "--calib", _images_folder(d, "text")), (3,)),
    Case("calib-undecodable-images-fail", lambda d, s: _quantize(
        d, s, "--int8", "--calib", _images_folder(d, "broken"), "--on-error", "fail"), (3,)),
    Case("calib-wrong-shape-npy", lambda d, s: _quantize(
        d, s, "--int8", "--calib", _save(d / "x.npy", np.zeros((4, 3, 16, 16), np.float32))), (3,)),
    Case("calib-raw-pixels-npz", lambda d, s: _quantize(d, s, "--int8", "--calib", _savez(
        d / "x.npz", np.random.default_rng(0).integers(0, 256, (8, 3, 32, 32)).astype(np.float32))), (3,)),
    Case("calib-garbage-npy", lambda d, s: _quantize(d, s, "--int8", "--calib", _write(d / "x.npy", b"garbage")), (3,)),
    Case("calib-list-of-missing-files", lambda d, s: _quantize(
        d, s, "--int8", "--calib", _write(d / "l.txt", "nope1.jpg\nnope2.jpg\n")), (3,)),
    Case("validate-data-empty-folder", lambda d, s: _validate(d, s, data=_images_folder(d, "empty")), (3,)),
    Case("validate-data-wrong-shape", lambda d, s: _validate(
        d, s, data=_save(d / "x.npy", np.zeros((4, 32, 32, 3), np.float32))), (3,)),
    Case("validate-data-missing", lambda d, s: _validate(d, s, data=d / "nope"), (3,)),
    # ---- ONNX files
    Case("check-empty-onnx", lambda d, s: ["check", _write(d / "e.onnx", b"")], (3,)),
    Case("check-truncated-onnx", lambda d, s: ["check", _write(d / "t.onnx", s.onnx.read_bytes()[:3000])], (3,)),
    Case("check-text-named-onnx", lambda d, s: ["check", _write(d / "t.onnx", "this is text\n")], (3,)),
    Case("check-missing-onnx", lambda d, s: ["check", d / "nope.onnx"], (3,)),
    Case("quantize-truncated-onnx", lambda d, s: _quantize(
        d, s, "--fp16", model=_write(d / "t.onnx", s.onnx.read_bytes()[:3000])), (3,)),
    Case("quantize-no-input-onnx", lambda d, s: _quantize(
        d, s, "--fp16", "--input-size", "3,32,32", "--mean", "0,0,0", "--std", "1,1,1", model=_no_input_onnx(d)), (3,)),
    Case("validate-text-onnx-reference", lambda d, s: ["validate", _write(d / "t.onnx", "text"), s.onnx,
                                                       "--data", s.data], (3,)),
    Case("validate-empty-onnx-candidate", lambda d, s: _validate(d, s, cand=_write(d / "e.onnx", b"")), (3,)),
    Case("bench-empty-onnx", lambda d, s: _bench(d, s, artifact=_write(d / "e.onnx", b"")), (3,)),
    Case("bench-no-input-onnx", lambda d, s: _bench(d, s, artifact=_no_input_onnx(d)), (3,)),
    Case("build-engine-text-onnx", lambda d, s: ["build-engine", _write(d / "t.onnx", "text"), "-o", d / "e.engine"],
         (3, 7)),
    # ---- engines
    Case("bench-garbage-engine", lambda d, s: _bench(d, s, artifact=_write(d / "g.engine", b"\x00garbage" * 10)), (3, 7)),
    Case("validate-garbage-engine", lambda d, s: _validate(d, s, cand=_write(d / "g.engine", b"garbage")), (3, 7)),
    # ---- manifests beside an ONNX
    Case("manifest-corrupt-json-quantize", lambda d, s: _quantize(
        d, s, "--fp16", model=_copy_onnx(d, s, "{not json")), (3,)),
    Case("manifest-wrong-schema-quantize", lambda d, s: _quantize(
        d, s, "--fp16", model=_copy_onnx(d, s, json.dumps({"artifact": "m.onnx", "preprocessing": [1, 2]}))), (3,)),
    Case("manifest-list-validate", lambda d, s: _validate(d, s, cand=_copy_onnx(d, s, "[1, 2, 3]")), (3,)),
    Case("manifest-bad-batch-bench", lambda d, s: _bench(d, s, artifact=_copy_onnx(
        d, s, json.dumps({"artifact": "m.onnx", "batch": {"min": "a"}}))), (3,)),
    # ---- options
    Case("export-batch-zero", lambda d, s: _export(d, "--batch", "0"), (2,)),
    Case("export-dynamic-batch-reversed", lambda d, s: _export(d, "--dynamic-batch", "8:4:1"), (2,)),
    Case("export-output-is-checkpoint", lambda d, s: ["export", "vit_tiny_test", "-c", shutil.copy(s.ckpt, d / "c.pth"),
                                                      "-o", d / "c.pth", "--force"], (2, 5)),
    Case("export-atol-negative", lambda d, s: _export(d, "--atol", "-1"), (2,)),
    Case("quantize-holdout-negative", lambda d, s: _quantize(d, s, "--int8", "--calib", s.data, "--holdout", "-1"), (2,)),
    Case("quantize-holdout-all-data", lambda d, s: _quantize(d, s, "--int8", "--calib", s.data, "--holdout", str(N)),
         (2,), says="--holdout"),
    Case("quantize-samples-zero", lambda d, s: _quantize(d, s, "--int8", "--calib", s.data, "--samples", "0"), (2,)),
    Case("quantize-threads-zero", lambda d, s: _quantize(d, s, "--fp16", "--threads", "0"), (2,)),
    Case("quantize-percentile-out-of-range", lambda d, s: _quantize(
        d, s, "--int8", "--calib", s.data, "--percentile", "150"), (2,)),
    Case("quantize-output-is-input", lambda d, s: ["quantize", _copy_onnx(d, s, s.onnx.with_suffix(".json").read_text()),
                                                   "--fp16", "-o", d / "m.onnx", "--force"], (2, 5)),
    Case("validate-batch-zero", lambda d, s: _validate(d, s, "--batch", "0"), (2,)),
    Case("validate-batch-negative", lambda d, s: _validate(d, s, "--batch", "-3"), (2,)),
    Case("validate-threads-zero", lambda d, s: _validate(d, s, "--threads", "0"), (2,)),
    Case("validate-samples-zero", lambda d, s: _validate(d, s, "--samples", "0"), (2,)),
    Case("thresholds-cosine-above-one", lambda d, s: _validate(
        d, s, "--thresholds", _thresholds(d, '{"fp32": {"cosine_min": 1.5}}')), (2,), says="cosine_min"),
    Case("thresholds-negative-drop", lambda d, s: _validate(
        d, s, "--thresholds", _thresholds(d, '{"int8": {"max_top1_drop": -1}}')), (2,), says="max_top1_drop"),
    Case("thresholds-nan", lambda d, s: _validate(
        d, s, "--thresholds", _thresholds(d, '{"fp16": {"max_abs": NaN}}')), (2,), says="max_abs"),
    Case("thresholds-unknown-key", lambda d, s: _validate(
        d, s, "--thresholds", _thresholds(d, '{"fp16": {"cosine": 0.9}}')), (2,), says="cosine"),
    Case("thresholds-corrupt-json", lambda d, s: _validate(d, s, "--thresholds", _thresholds(d, "{oops")), (3,)),
    Case("bench-batch-zero", lambda d, s: _bench(d, s, "--batch", "0"), (2,)),
    Case("bench-batch-not-a-number", lambda d, s: _bench(d, s, "--batch", "1,x"), (2,)),
    Case("bench-batch-above-onnx-range", lambda d, s: _bench(d, s, "--batch", "64"), (2,), says="outside that range"),
    Case("bench-iterations-zero", lambda d, s: ["bench", s.onnx, "--iterations", "0"], (2,)),
    Case("bench-warmup-negative", lambda d, s: ["bench", s.onnx, "--warmup", "-1"], (2,)),
    Case("bench-threads-zero", lambda d, s: _bench(d, s, "--threads", "0"), (2,)),
    Case("deploy-batch-zero", lambda d, s: ["deploy", "vit_tiny_test", "--batch", "0", "--out", d / "o"], (2,)),
    Case("deploy-threads-zero", lambda d, s: ["deploy", "vit_tiny_test", "--threads", "0", "--out", d / "o"], (2,)),
    Case("deploy-iterations-zero", lambda d, s: ["deploy", "vit_tiny_test", "--iterations", "0", "--out", d / "o"], (2,)),
    Case("build-engine-samples-zero", lambda d, s: ["build-engine", s.onnx, "--samples", "0", "-o", d / "e.engine"], (2,)),
    Case("build-engine-batch-range-zero", lambda d, s: ["build-engine", s.onnx, "--dynamic-batch", "0:1:2",
                                                        "-o", d / "e.engine"], (2,)),
    Case("build-engine-output-is-input", lambda d, s: ["build-engine", _copy_onnx(d, s), "-o", d / "m.onnx", "--force"],
         (2, 5)),
    # ---- interruption (Ctrl-C)
    Case("interrupt-export-in-exporter", lambda d, s: _export(d), (130,), _patch("torch.onnx.export", KeyboardInterrupt())),
    Case("interrupt-export-at-write", lambda d, s: _export(d), (130,), _patch("os.replace", KeyboardInterrupt())),
    Case("interrupt-checkpoint-load", lambda d, s: _export(d, "-c", s.ckpt), (130,), _patch("torch.load", KeyboardInterrupt())),
    Case("interrupt-quantize-in-progress-bar", lambda d, s: _quantize(d, s, "--int8", "--calib", s.data), (130,),
         _patch("rich.progress.Progress.advance", KeyboardInterrupt())),
    Case("interrupt-validate-in-onnxruntime", lambda d, s: _validate(d, s), (130,), _ort_run(KeyboardInterrupt())),
    Case("interrupt-bench-in-onnxruntime", lambda d, s: _bench(d, s), (130,), _ort_run(KeyboardInterrupt())),
    # ---- full disk
    Case("disk-full-export-raw", lambda d, s: _export(d), (5,), _patch("torch.onnx.export", _enospc()), "no space left"),
    Case("disk-full-export-write", lambda d, s: _export(d), (5,), _patch("os.fsync", _enospc()), "no space left"),
    Case("disk-full-quantize-write", lambda d, s: _quantize(d, s, "--fp16", "--calib", s.data), (5,),
         _patch("os.fsync", _enospc()), "no space left"),
    Case("disk-full-validate-report", lambda d, s: _validate(d, s, "--samples", "4", "--report", d / "r"), (5,),
         _patch("os.fsync", _enospc()), "no space left"),
    Case("disk-full-in-onnxruntime", lambda d, s: _validate(d, s), (5,), _ort_run(_enospc()), "no space left"),
]


def _save(path: Path, arr: np.ndarray) -> Path:
    np.save(path, arr)
    return path


def _savez(path: Path, arr: np.ndarray) -> Path:
    np.savez(path, images=arr)
    return path


def _snapshot(*dirs: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for d in dirs for p in sorted(d.rglob("*"))}


def test_corpus_is_large_enough():
    assert len(CASES) >= 40 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, shared: Shared, cli, tmp_path, tmp_path_factory, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VITDEPLOY_CACHE", str(tmp_path_factory.mktemp("cache")))  # a cache is not the working folder
    argv = case.setup(tmp_path, shared)
    before = _snapshot(tmp_path, shared.dir)
    if case.patch is not None:
        case.patch(monkeypatch)
    code, out, err = cli(*argv)
    monkeypatch.undo()
    lines = [line for line in err.splitlines() if line.strip() and not line.lstrip().startswith("✓")]
    assert code in case.codes, f"exit {code}, expected {case.codes}: {err}"
    assert len(lines) <= 3, err
    assert "Traceback" not in out + err
    assert case.says in err, err
    if code == 130:
        assert "interrupted" in err
    assert _snapshot(tmp_path, shared.dir) == before
