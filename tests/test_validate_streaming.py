"""Streaming validation (issue 16): the same document as the in-memory path, bounded memory,
ordered threaded decoding with the skip/fail semantics, and resuming an interrupted run."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from vitdeploy.data import batches
from vitdeploy.data.batches import iter_batches, load_samples
from vitdeploy.data.decode import ImageDecodeError
from vitdeploy.core.preprocessing import Preprocessing
from vitdeploy.data.preprocess import resolve_preprocess
from vitdeploy.data.sampling import sample_indices
from vitdeploy.data.sources import open_dataset
from vitdeploy.core.compare import StreamingComparison, compare


def _write_images(folder, n: int, size: tuple[int, int] = (40, 48), bad: bool = False, classes: int = 1):
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(n):
        sub = folder / str(i % classes) if classes > 1 else folder
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(sub / f"{i:05d}.jpg", quality=90)
    if bad:
        (folder / "0" if classes > 1 else folder).joinpath("00003_bad.jpg").write_bytes(b"not an image")
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """vit_tiny_test exported with random weights (32 px, 10 classes) and its FP16 quantization."""
    import os

    from vitdeploy.calib.quantize import QuantizeConfig, quantize
    from vitdeploy.export import ExportConfig, export

    root = tmp_path_factory.mktemp("stream")
    os.environ["VITDEPLOY_CACHE"] = str(root / "cache")
    fp32 = export(ExportConfig("vit_tiny_test", output=root / "vit.onnx")).onnx_path
    fp16 = quantize(QuantizeConfig(model=fp32, precision="fp16")).onnx_path
    images = _write_images(root / "imgs", 90, bad=True, classes=3)
    return {"root": root, "fp32": fp32, "fp16": fp16, "images": images}


def _in_memory(ref_path, cand_paths, data, samples, batch):
    """The path validate took before streaming: every sample in one array, all outputs kept, compared at once
    with compare()'s formulas of that time (numpy means, argsort of all cosines)."""
    from vitdeploy.runners.factory import open_runner, resolve_artifact
    from helpers import run_batched

    ds = open_dataset(data)
    pre = resolve_preprocess(resolve_artifact(str(ref_path)).manifest.preprocessing, ds)
    s = load_samples(ds, pre, sample_indices(len(ds), samples, 0))
    x, kept = s[:], s.indices
    outs = []
    for path in (ref_path, *cand_paths):
        with open_runner(resolve_artifact(str(path)), None, None, fp16_rounding=path != ref_path) as r:
            outs.append(run_batched(r, x, batch))
    ref = outs[0].astype(np.float64)
    figures = []
    for cand in outs[1:]:
        c = cand.astype(np.float64)
        diff = np.abs(c - ref)
        denom = np.linalg.norm(ref, axis=1) * np.linalg.norm(c, axis=1)
        cos = np.where(denom > 0, (ref * c).sum(axis=1) / np.where(denom > 0, denom, 1.0), 1.0)
        top5 = np.argsort(-c, axis=1)[:, :5]
        figures.append({"samples": len(x), "max_abs": float(diff.max()), "max_rel": float(diff.max() / np.abs(ref).max()),
                        "mean_abs": float(diff.mean()), "cosine_min": float(cos.min()), "cosine_mean": float(cos.mean()),
                        "top1_agreement": float((ref.argmax(1) == c.argmax(1)).mean()),
                        "top5_agreement": float((top5 == ref.argmax(1)[:, None]).any(axis=1).mean()),
                        "worst": [str(ds.files[kept[i]]) for i in np.argsort(cos, kind="stable")[:5]]})
    return figures, [f for f, _ in ds.skipped]


@pytest.mark.parametrize("batch", [8, 7])
def test_streaming_document_equals_in_memory_path(models, tmp_path, batch):
    from vitdeploy.validate import ValidateConfig, validate

    cands = (models["fp16"], models["fp32"])
    doc = validate(ValidateConfig(str(models["fp32"]), tuple(map(str, cands)), models["images"], samples=60,
                                  batch_size=batch, decode_workers=3, cache_dir=tmp_path / "cache"))
    expected, skipped = _in_memory(models["fp32"], cands, models["images"], 60, batch)
    assert doc["data"]["samples"] == expected[0]["samples"] and doc["data"]["skipped"] == len(skipped) == 1
    for entry, exp in zip(doc["candidates"], expected):
        got = dict(entry["comparison"])
        assert entry["worst_samples"] == exp.pop("worst")
        for key in ("mean_abs", "cosine_mean"):  # sums: exactly rounded now, numpy's pairwise order before
            assert got.pop(key) == pytest.approx(exp.pop(key), rel=1e-12, abs=1e-15)
        got.pop("worst")
        assert got == exp  # samples, maxima, minimum, agreements: bit for bit
    cache = tmp_path / "cache"  # the run's folder and its lock file are removed once done
    assert not cache.exists() or not list(cache.iterdir())


def test_chunked_reduction_equals_one_shot():
    """Any batching gives the very same Comparison as compare() on everything, ties in the worst samples included."""
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(203, 10)).astype(np.float32)
    cand = ref + rng.normal(scale=1e-3, size=ref.shape).astype(np.float32)
    cand[7] = -ref[7]
    ref[70], cand[70] = ref[7], cand[7]  # the same (worst) cosine twice: a tie, lower index first
    whole = compare(ref, cand, worst=6)
    for step in (1, 3, 64, 203):
        red = StreamingComparison(worst=6)
        for i in range(0, len(ref), step):
            red.update(ref[i:i + step], cand[i:i + step])
        assert red.result() == whole
    assert whole.worst[:2] == [7, 70]


def test_threaded_decoding_keeps_order_and_skip_semantics(models):
    ds = open_dataset(models["images"])
    pre = resolve_preprocess(Preprocessing.from_manifest(json.loads(models["fp32"].with_suffix(".json").read_text())), ds)
    idx = np.arange(len(ds))
    serial = list(iter_batches(ds, pre, idx, 8, "skip", None, 0))  # in this thread
    skipped_serial = list(ds.skipped)
    ds.skipped.clear()
    threaded = list(iter_batches(ds, pre, idx, 8, "skip", None, 4))
    assert ds.skipped == skipped_serial and len(skipped_serial) == 1
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(serial, threaded))
    assert len(serial) == len(threaded)
    with pytest.raises(ImageDecodeError, match="00003_bad.jpg"):
        list(iter_batches(ds, pre, idx, 8, "fail", None, 4))


def test_one_worker_decodes_the_next_batch_during_inference(models, monkeypatch):
    """One decoder thread (validate's default on 2 cores with --threads 1) is a thread beside the consumer,
    not decoding in its thread: while the consumer holds a batch, the whole next batch gets decoded."""
    ds = open_dataset(models["images"])
    pre = resolve_preprocess(Preprocessing.from_manifest(json.loads(models["fp32"].with_suffix(".json").read_text())), ds)
    real, where = batches._load_one, []
    monkeypatch.setattr(batches, "_load_one", lambda *a: (where.append(threading.current_thread().name), real(*a))[1])
    it = iter_batches(ds, pre, np.arange(40), 8, "skip", None, 1)
    next(it)  # the consumer now "runs" its first batch
    deadline = time.monotonic() + 5
    while len(where) < 16 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(where) >= 16 and all(name.startswith("vitdeploy-decode") for name in where)
    it.close()


def test_stopping_early_leaves_no_decoder_threads(models):
    """An error or Ctrl-C in the consumer closes the iterator: queued decodes are cancelled, the threads end."""
    ds = open_dataset(models["images"])
    pre = resolve_preprocess(Preprocessing.from_manifest(json.loads(models["fp32"].with_suffix(".json").read_text())), ds)
    it = iter_batches(ds, pre, np.arange(len(ds)), 4, "skip", None, 4)
    next(it)
    with pytest.raises(KeyboardInterrupt):
        it.throw(KeyboardInterrupt)
    deadline = time.monotonic() + 5
    while any(t.name.startswith("vitdeploy-decode") for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not any(t.name.startswith("vitdeploy-decode") for t in threading.enumerate())


def test_interrupted_run_resumes_finished_artifacts(models, tmp_path, monkeypatch):
    import vitdeploy.validate as V

    config = V.ValidateConfig(str(models["fp32"]), (str(models["fp16"]), str(models["fp32"])), models["images"],
                              samples=40, cache_dir=tmp_path / "cache")
    real = V.candidate_pass
    calls = []

    def interrupted(runner, art, *args):
        calls.append(art.label)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(runner, art, *args)

    monkeypatch.setattr(V, "candidate_pass", interrupted)
    with pytest.raises(KeyboardInterrupt):
        V.validate(config)
    monkeypatch.setattr(V, "candidate_pass", real)
    doc = V.validate(config)
    assert doc["reference"]["resumed"] and [c["resumed"] for c in doc["candidates"]] == [True, False]
    assert doc["data"]["skipped"] == 1 and doc["warnings"][0].startswith("1 undecodable image(s) skipped")
    fresh = V.validate(config)
    assert not fresh["reference"]["resumed"]
    for a, b in zip(doc["candidates"], fresh["candidates"]):
        assert a["comparison"] == b["comparison"] and a["worst_samples"] == b["worst_samples"]
    assert list((tmp_path / "cache").iterdir()) == []  # the run's folder and lock file are gone


def test_two_validates_of_the_same_run_at_once_do_not_collide(models, tmp_path):
    """Two processes (here threads) validating the same run share its cache key: the second waits
    for the first's lock instead of writing and deleting the same files (both get the same figures)."""
    from vitdeploy.validate import ValidateConfig, validate

    config = ValidateConfig(str(models["fp32"]), (str(models["fp16"]),), models["images"], samples=40,
                            cache_dir=tmp_path / "cache")
    docs, errors = [], []

    def run() -> None:
        try:
            docs.append(validate(config))
        except Exception as exc:  # collected: a thread's exception would not fail the test
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and len(docs) == 2, errors
    assert docs[0]["candidates"][0]["comparison"] == docs[1]["candidates"][0]["comparison"]
    assert list((tmp_path / "cache").iterdir()) == []  # no lock file left behind either


RSS_SCRIPT = """
import resource, sys
from pathlib import Path
from vitdeploy.validate import ValidateConfig, validate
model, data, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
doc = validate(ValidateConfig(model, (model,), Path(data), samples=n, batch_size=16, threads=1,
                              cache_dir=Path(sys.argv[4])))
assert doc["data"]["samples"] == n, doc["data"]
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def test_memory_does_not_grow_with_samples(models, tmp_path):
    """2,000 tiny images: peak RSS (a fresh process each) within 12 MB of 100 images'; the in-memory path
    held 2 x 12 KB of inputs per image here (+47 MB at 2,000). The baseline itself (~400 MB: torch-free
    imports, ONNX Runtime) varies with the environment, so the ceiling is set relative to it."""
    images = _write_images(tmp_path / "many", 2000, size=(36, 36))

    def peak(n: int) -> int:
        out = subprocess.run([sys.executable, "-c", RSS_SCRIPT, str(models["fp32"]), str(images), str(n),
                              str(tmp_path / "cache")], check=False, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return int(out.stdout.split()[-1])

    small, large = peak(100), peak(2000)
    print(f"peak RSS: {small} MB at 100 images, {large} MB at 2000")
    assert large <= small + 12, (small, large)


def test_a_tensorrt_engine_runs_the_same_streaming_path(tmp_path, monkeypatch):
    """An engine candidate goes through validate's streaming passes with the TensorRT runner (fake
    TensorRT and CUDA memory on this CPU: the fake engine computes sum(x) * (1..10)): batches clamped to
    its profile (1..8), and the figures are compare()'s on all outputs at once."""
    from test_trt_fakes import FakeCuda, make_fake_trt, tiny_onnx

    from vitdeploy.engine.config import EngineConfig
    from vitdeploy.pipeline.engine import build as build_engine
    from vitdeploy.runners import trt_runner
    from vitdeploy.validate import ValidateConfig, validate

    gpu = {"index": 0, "name": "Orin (fake)", "compute_capability": "8.7"}
    onnx_path = tiny_onnx(tmp_path)  # batch 1..8, 3x4x4 inputs
    engine = build_engine(EngineConfig(model=onnx_path), trt=make_fake_trt("10.3.0"), gpu=gpu, jetson=None).engine_path
    cuda, batches = FakeCuda(), []
    real_init, real_infer = trt_runner.TensorRTRunner.__init__, trt_runner.TensorRTRunner.infer
    monkeypatch.setattr(trt_runner.TensorRTRunner, "__init__",
                        lambda self, path: real_init(self, path, trt=make_fake_trt("10.3.0", cuda=cuda), cuda=cuda))
    monkeypatch.setattr(trt_runner.TensorRTRunner, "infer",
                        lambda self, feeds: (batches.append(len(feeds["input"])), real_infer(self, feeds))[1])
    images = _write_images(tmp_path / "imgs", 30, bad=True)
    doc = validate(ValidateConfig(str(onnx_path), (str(engine),), images, samples=None, batch_size=16, decode_workers=2,
                                  cache_dir=tmp_path / "cache"))
    assert batches == [8, 8, 8, 6] and doc["candidates"][0]["backend"] == "trt"

    from vitdeploy.runners.ort import OnnxRuntimeRunner

    ds = open_dataset(images)
    pre = resolve_preprocess(Preprocessing.from_manifest(json.loads(onnx_path.with_suffix(".json").read_text())), ds)
    x = load_samples(ds, pre, sample_indices(len(ds), None, 0))[:]
    with OnnxRuntimeRunner(onnx_path) as r:
        ref = r.infer_one(x)
    engine_out = x.reshape(len(x), -1).sum(1, keepdims=True) * np.arange(1, 11, dtype=np.float32)
    whole = compare(ref, engine_out).to_dict()
    got = doc["candidates"][0]["comparison"]
    assert got["samples"] == whole["samples"] == 30
    for key in ("max_abs", "cosine_min", "top1_agreement", "top5_agreement"):
        assert got[key] == pytest.approx(whole[key], rel=1e-6), key


def test_the_cli_logs_each_artifact_and_says_when_it_resumed(models, cli, monkeypatch, tmp_path):
    """Where no bar is drawn (a log), a line per finished artifact; a run started again after an interrupt
    says what it reused; --samples beyond the data is a warning."""
    import vitdeploy.validate as V

    monkeypatch.setenv("VITDEPLOY_CACHE", str(tmp_path / "cache"))
    args = ("validate", models["fp32"], models["fp16"], "--data", models["images"], "--samples", "500")
    real = V.candidate_pass

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(V, "candidate_pass", interrupted)
    code, _, err = cli(*args)
    assert code == 130 and f"reference {models['fp32'].name}: 91 in" in err  # 90 images and a broken file
    monkeypatch.setattr(V, "candidate_pass", real)
    code, out, err = cli(*args)
    assert code == 0 and "resumed an interrupted run: reused the reference's outputs" in err
    assert f"{models['fp16'].name}: 90 in" in err and f"reference {models['fp32'].name}" not in err
    assert "--samples 500 but" in err and "holds 91: validated on all of them" in " ".join(err.split())
