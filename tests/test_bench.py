"""vitdeploy bench: interleaved timing, conditions and warnings, the result schema, the reports, bad input."""

from __future__ import annotations

import copy
import json
import os
import struct

import numpy as np
import onnx
import pytest
import typer

from vitdeploy import bench as B
from vitdeploy.bench import artifacts as A
from vitdeploy.bench import plots as P
from vitdeploy.bench import report as R
from vitdeploy.core.errors import InputError, MissingDependencyError, UsageError
from vitdeploy.runners.base import BaseRunner, TensorMeta


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A dynamic-batch FP32 export (batches 1-8), its FP16 version, and a static batch-1 copy without manifest."""
    from vitdeploy.calib.quantize import QuantizeConfig, quantize
    from vitdeploy.export import ExportConfig, export

    d = tmp_path_factory.mktemp("bench")
    fp32 = d / "vit.onnx"
    export(ExportConfig("vit_tiny_test", output=fp32, targets=("ort",)))
    fp16 = d / "vit.fp16.onnx"
    quantize(QuantizeConfig(fp32, "fp16", output=fp16))
    m = onnx.load(str(fp32))
    for v in list(m.graph.input) + list(m.graph.output):
        dim = v.type.tensor_type.shape.dim[0]
        dim.Clear()
        dim.dim_value = 1
    static = d / "static.onnx"
    onnx.save(m, str(static))
    return {"fp32": fp32, "fp16": fp16, "static": static}


@pytest.fixture(scope="module")
def doc(models):
    config = B.BenchConfig((str(models["fp32"]), str(models["fp16"])), batches=(1, 4), warmup=2, iterations=6, threads=1)
    return B.run_bench(config)


@pytest.fixture
def bench_cli(capsys, monkeypatch):
    """The CLI with `bench` registered (the lead wires it into vitdeploy.cli; until then, onto a fresh app)."""
    import vitdeploy.cli as cli
    from vitdeploy.cli import bench_cmd

    if "bench" not in {c.name for c in cli.app.registered_commands}:
        app = typer.Typer(pretty_exceptions_enable=False, add_completion=False)

        @app.callback()
        def _root() -> None:
            pass

        bench_cmd.register(app)
        monkeypatch.setattr(cli, "app", app)

    def invoke(*args):
        code = cli.run([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return invoke


def _png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


# ---------------------------------------------------------------------------------------------
def test_interleaved_results_carry_conditions(doc, models):
    rs = doc["results"]
    assert [(r["artifact"], r["batch"]) for r in rs] == [
        ("vit.onnx", 1), ("vit.fp16.onnx", 1), ("vit.onnx", 4), ("vit.fp16.onnx", 4)]
    assert [r["precision"] for r in rs] == ["fp32", "fp16", "fp32", "fp16"]
    for r in rs:
        lat = r["latency_ms"]
        assert r["iterations"] == 6 and r["backend"] == "ort-cpu" and r["device"] is None
        assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"] and lat["std"] >= 0
        assert r["throughput_ips"] == pytest.approx(r["batch"] / (lat["mean"] / 1e3))
        assert r["input_shape"] == [r["batch"], 3, 32, 32] and r["memory"]["host_peak_rss_delta_mib"] >= 0
    assert rs[0]["speedup"] == 1.0 and rs[2]["speedup"] == 1.0
    assert rs[1]["speedup"] == pytest.approx(rs[0]["latency_ms"]["p50"] / rs[1]["latency_ms"]["p50"])
    c = doc["conditions"]
    assert c["cpu"]["model"] and c["cpu"]["cores"] >= 1 and c["threads"] == 1
    assert c["cpu"]["load_1min_start"] is not None and c["cpu"]["load_1min_end"] is not None
    assert c["packages"]["onnxruntime"] and "CPUExecutionProvider" in c["packages"]["onnxruntime_providers"]
    assert isinstance(c["gpus"], list) and "jetson" in c and c["started"] <= c["finished"]
    assert doc["config"]["interleave"] is True and doc["config"]["iterations"] == 6
    arts = {a["label"]: a for a in doc["artifacts"]}
    assert arts["vit.onnx"]["batch_range"] == {"min": 1, "max": 8} and arts["vit.fp16.onnx"]["precision"] == "fp16"
    assert any("timed iteration" in w for w in doc["warnings"])  # 6 < 20


def _jsonschema_errors(doc) -> list[str] | None:
    """The reference implementation's verdict (jsonschema, the dev extra) to cross-check fastjsonschema; None without it."""
    try:
        import jsonschema
    except ImportError:
        return None
    return [e.message for e in jsonschema.Draft202012Validator(B.load_schema()).iter_errors(doc)]


def test_schema_accepts_results_and_rejects_broken_ones(doc):
    B.validate_result(doc)
    assert B.validation_errors(doc) == [] and _jsonschema_errors(doc) in ([], None)
    broken = []
    d = copy.deepcopy(doc); del d["conditions"]; broken.append(d)  # noqa: E702
    d = copy.deepcopy(doc); d["results"][0]["latency_ms"]["p50"] = "fast"; broken.append(d)  # noqa: E702
    d = copy.deepcopy(doc); d["schema"] = "vitdeploy.bench/2"; broken.append(d)  # noqa: E702
    d = copy.deepcopy(doc); d["accuracy"] = {"vit.onnx": {"precision": "fp32"}}; broken.append(d)  # noqa: E702
    for d in broken:
        assert B.validation_errors(d) and _jsonschema_errors(d) != []
        with pytest.raises(InputError, match="not a valid vitdeploy.bench/1"):
            B.validate_result(d)
    # 'path: message', the path from the document's root
    assert B.validation_errors(broken[1]) == ["results/0/latency_ms/p50: must be number"]
    assert B.validation_errors(broken[0])[0].startswith("(root): must contain ")
    ok = copy.deepcopy(doc)
    ok["accuracy"] = {"vit.fp16.onnx": {"precision": "fp16", "cosine": 0.9999, "top1_agreement": 1.0, "top1": None,
                                        "top1_drop_points": None}}
    assert B.validation_errors(ok) == [] and _jsonschema_errors(ok) in ([], None)
    before = json.dumps(ok)
    B.validate_result(ok)
    assert json.dumps(ok) == before  # checked, not changed (no defaults filled in)


def test_high_load_and_jetson_mode_warn(models, monkeypatch):
    monkeypatch.setattr(os, "getloadavg", lambda: (64.0, 64.0, 64.0))
    d = B.run_bench(B.BenchConfig((str(models["fp32"]),), warmup=0, iterations=20, threads=1))
    assert any(w.startswith("machine loaded") for w in d["warnings"])
    assert not any("timed iteration" in w for w in d["warnings"])
    # the bench's own CPU use is discounted from the end-of-run load
    assert B.condition_warnings({"cpu": {"cores": 2, "load_1min_start": 0.4, "load_1min_end": 1.9, "bench_cpu_cores": 1.0}}, [50]) == []
    assert "at the end" in B.condition_warnings({"cpu": {"cores": 2, "load_1min_start": 0.4, "load_1min_end": 2.5,
                                                         "bench_cpu_cores": 1.0}}, [50])[0]
    cond = {"cpu": {"cores": 8, "load_1min_start": 0.1, "load_1min_end": 0.2},
            "jetson": {"l4t": "36.4.3", "power_mode": "mode 2", "clocks_locked": False}}
    ws = B.condition_warnings(cond, [100])
    assert len(ws) == 2 and "nvpmodel -m 0" in ws[0] and "jetson_clocks" in ws[1]
    cond["jetson"].update(power_mode="MAXN", clocks_locked=True)
    assert B.condition_warnings(cond, [100]) == []


class _FakeGpuRunner(BaseRunner):
    """A runner with the optional CUDA-event hooks; records the order of calls."""

    def __init__(self, name, calls):
        super().__init__()
        self.name, self.calls = name, calls

    def activate(self):
        self.is_active = True

    def input_metadata(self):
        return [TensorMeta("input", np.dtype(np.float16), (None, 3, 8, 8))]

    def infer(self, feed):
        self.calls.append(self.name)
        return {"y": feed["input"][:, :1]}

    def timed_infer(self, feed):
        return self.infer(feed), 0.5

    def infer_device_only(self, feed):
        assert feed["input"].dtype == np.float16
        return 0.25

    def device_memory_bytes(self):
        return 3 * 2**20


def test_gpu_hooks_and_interleaving(models, monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(A, "open_artifact", lambda art, backend, threads: _FakeGpuRunner(art.label, calls))
    config = B.BenchConfig((str(models["fp32"]), str(models["fp16"])), batches=(2,), warmup=0, iterations=4)
    d = B.run_bench(config)
    # one untimed first call each, then rounds with the starting artifact rotating
    assert calls == ["vit.onnx", "vit.fp16.onnx"] + ["vit.onnx", "vit.fp16.onnx", "vit.fp16.onnx", "vit.onnx"] * 2
    r = d["results"][1]
    assert r["device"]["end_to_end_ms"]["p50"] == 0.5 and r["device"]["device_only_ms"]["p50"] == 0.25
    assert r["device"]["throughput_ips_device_only"] == pytest.approx(2 / 0.25e-3)
    assert r["memory"]["device_mib"] == 3.0 and d["artifacts"][0]["hooks"]["infer_device_only"] is True
    B.validate_result(d)
    calls.clear()
    B.run_bench(B.BenchConfig(config.artifacts, batches=(2,), warmup=0, iterations=2, interleave=False))
    assert calls == ["vit.onnx", "vit.fp16.onnx", "vit.onnx", "vit.onnx", "vit.fp16.onnx", "vit.fp16.onnx"]
    assert "with copies" in R.markdown(d)


def test_zoo_model_in_torch_and_shape_mismatch_warning(models, monkeypatch):
    d = B.run_bench(B.BenchConfig(("vit_tiny_test", str(models["fp32"])), batches=(2,), warmup=1, iterations=3, threads=1))
    assert [(a["kind"], a["backend"]) for a in d["artifacts"]] == [("torch", "torch"), ("onnx", "ort-cpu")]
    assert d["artifacts"][0]["batch_range"] is None and not any("different input shapes" in w for w in d["warnings"])
    B.validate_result(d)
    real_open = A.open_artifact
    monkeypatch.setattr(A, "open_artifact", lambda art, backend, threads: _FakeGpuRunner(art.label, [])
                        if art.label == "vit.fp16.onnx" else real_open(art, backend, threads))
    d = B.run_bench(B.BenchConfig((str(models["fp32"]), str(models["fp16"])), warmup=0, iterations=2, threads=1))
    assert any("different input shapes" in w for w in d["warnings"])


def test_duration_mode(models):
    d = B.run_bench(B.BenchConfig((str(models["fp32"]),), warmup=0, duration=0.05, threads=1))
    assert d["config"]["duration"] == 0.05 and d["config"]["iterations"] is None
    assert d["results"][0]["iterations"] >= 1
    B.validate_result(d)


def test_report_files(doc, tmp_path):
    paths = R.write_report(doc, tmp_path / "rep")
    assert paths.json.name == "bench.json" and paths.markdown.name == "bench.md" and paths.plot.name == "bench.png"
    B.validate_result(json.loads(paths.json.read_text()))
    md = paths.markdown.read_text()
    assert "## Batch 1" in md and "## Batch 4" in md and "| vit.fp16.onnx | ort-cpu | fp16 |" in md
    assert "p50 ms" in md and "speedup" in md and "## Conditions" in md and "CPU:" in md and "Jetson:" in md
    assert "## Warnings" not in md and "**Warnings:**" in md and "![p50 latency vs batch](bench.png)" in md
    w, h = _png_size(paths.plot)
    assert 600 <= w <= 2500 and 300 <= h <= 1500
    with pytest.raises(Exception, match="exists"):
        R.write_report(doc, tmp_path / "rep")

    with_acc = copy.deepcopy(doc)
    with_acc["accuracy"] = {
        "vit.onnx": {"precision": "fp32", "cosine": 1.0, "top1_agreement": 1.0, "top1": 0.9, "top1_drop_points": 0.0},
        "vit.fp16.onnx": {"precision": "fp16", "cosine": 0.99991, "top1_agreement": 1.0, "top1": 0.895, "top1_drop_points": 0.5},
    }
    p2 = R.write_report(with_acc, tmp_path / "acc")
    w2, _ = _png_size(p2.plot)
    assert w2 > w  # a second panel: accuracy drop vs speedup
    assert "## Accuracy" in p2.markdown.read_text()
    points, ylabel, batch = P._accuracy_points(with_acc)
    assert {p["label"] for p in points} == {"vit.onnx", "vit.fp16.onnx"} and "top-1 drop" in ylabel and batch == 4


def test_report_without_matplotlib(doc, tmp_path, monkeypatch):
    def missing():
        raise MissingDependencyError("matplotlib is not installed for the PNG plot: pip install matplotlib")

    monkeypatch.setattr(P, "require_matplotlib", missing)
    paths = R.write_report(doc, tmp_path / "rep")
    assert paths.plot is None and "matplotlib" in paths.plot_skipped
    assert paths.json.exists() and "Plot skipped" in paths.markdown.read_text()
    assert not (tmp_path / "rep" / "bench.png").exists()


def test_cli_table_json_and_report(bench_cli, models, tmp_path):
    code, out, err = bench_cli("bench", models["fp32"], models["fp16"], "--batch", "1,2", "-n", "3", "--warmup", "1",
                               "--threads", "1")
    assert code == 0, err
    assert "batch 1" in out and "batch 2" in out and "speedup" in out and "vit.fp16.onnx" in out
    assert "warning:" in out and "timed iteration" in out
    rep = tmp_path / "rep"
    code, out, err = bench_cli("bench", models["fp32"], "-n", "3", "--warmup", "0", "--threads", "1", "--json",
                               "--report", rep)
    assert code == 0, err
    d = json.loads(out)
    B.validate_result(d)
    assert sorted(p.name for p in rep.iterdir()) == ["bench.json", "bench.md", "bench.png"]
    code, _, err = bench_cli("bench", models["fp32"], "-n", "3", "--report", rep)
    assert code == 5 and "--force" in err


@pytest.mark.parametrize("case, code, message", [
    ("unknown_type", 3, "unknown artifact type"),
    ("missing_file", 3, "not found"),
    ("engine_no_trt", 7, "tensorrt is not installed"),
    ("static_batch", 2, "static batch of 1"),
    ("manifest_range", 2, "serves batches 1 to 8"),
    ("iterations_and_duration", 2, "mutually exclusive"),
    ("bad_batch", 2, "invalid --batch"),
    ("onnx_on_trt", 2, "is an ONNX file"),
])
def test_bad_input(bench_cli, models, tmp_path, monkeypatch, case, code, message):
    args = []
    if case == "unknown_type":
        (tmp_path / "x.txt").write_text("not a model")
        args = [tmp_path / "x.txt"]
    elif case == "missing_file":
        args = [tmp_path / "nope.onnx"]
    elif case == "engine_no_trt":
        from vitdeploy.core import deps

        real = deps.is_available
        monkeypatch.setattr(deps, "is_available", lambda name: False if name == "tensorrt" else real(name))
        (tmp_path / "m.engine").write_bytes(b"\0" * 64)
        args = [tmp_path / "m.engine"]
    elif case == "static_batch":
        args = [models["static"], "--batch", "1,4"]
    elif case == "manifest_range":
        args = [models["fp32"], "--batch", "16"]
    elif case == "iterations_and_duration":
        args = [models["fp32"], "--iterations", "5", "--duration", "1"]
    elif case == "bad_batch":
        args = [models["fp32"], "--batch", "1,x"]
    elif case == "onnx_on_trt":
        args = [models["fp32"], "--backend", "trt"]
    rep = tmp_path / "report"
    rc, out, err = bench_cli("bench", *args, "-n", "2", "--report", rep)
    assert rc == code, err
    assert message in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert not rep.exists()


def test_config_checks():
    with pytest.raises(UsageError, match="at least one artifact"):
        B.BenchConfig(())
    with pytest.raises(UsageError, match="repeat"):
        B.BenchConfig(("a.onnx",), batches=(1, 1))
    with pytest.raises(UsageError, match="unknown backend"):
        B.BenchConfig(("a.onnx",), backend="cuda")
    assert B.parse_batches("1, 8,32") == (1, 8, 32)
    stats = B.latency_stats([1.0, 2.0, 3.0, 4.0])
    assert stats["p50"] == 2.5 and stats["mean"] == 2.5 and stats["min"] == 1.0


def test_bench_accuracy_from_validate(cli, tmp_path, models):
    """--accuracy takes validate's JSON and puts it into the document (and the plot's second panel)."""
    fp32, fp16 = models["fp32"], models["fp16"]
    data = tmp_path / "d.npy"
    np.save(data, np.random.default_rng(0).standard_normal((8, 3, 32, 32)).astype(np.float32))
    # random weights on 8 random inputs: validate measures FP16 through FP16 rounding, and one
    # near-tie flip is noise here (agreement is not what this test is about)
    (tmp_path / "t.json").write_text(json.dumps({"fp16": {"top1_agreement": 0.5}}))
    rc, _, err = cli("validate", fp32, fp16, "--data", data, "--samples", "8", "--report", tmp_path / "v",
                     "--thresholds", tmp_path / "t.json")
    assert rc == 0, err
    rc, out, err = cli("bench", fp32, fp16, "--iterations", "3", "--warmup", "1", "--accuracy", tmp_path / "v" / "validate.json",
                       "--json")
    assert rc == 0, err
    acc = json.loads(out)["accuracy"]
    assert set(acc) == {fp32.name, fp16.name} and acc[fp16.name]["precision"] == "fp16"
    (tmp_path / "bad.json").write_text("{}")
    rc, _, err = cli("bench", fp32, "--accuracy", tmp_path / "bad.json")
    assert rc == 3 and "not a `vitdeploy validate` result" in err


def test_a_gpu_provider_that_falls_back_to_the_cpu_is_refused(models, monkeypatch):
    """ONNX Runtime runs on the CPU when its CUDA provider fails to load: a CUDA figure must never be
    a CPU one. A real CPU-only ONNX Runtime told it has CUDA shows that fallback."""
    import onnxruntime as ort

    from vitdeploy.runners.ort import OnnxRuntimeRunner

    available = ort.get_available_providers()
    monkeypatch.setattr(ort, "get_available_providers", lambda: [*available, "CUDAExecutionProvider"])
    with pytest.raises(MissingDependencyError, match="could not start its CUDAExecutionProvider .*CPUExecutionProvider"):
        OnnxRuntimeRunner(models["fp32"], providers=("cuda", "cpu")).activate()


def test_torch_cuda_without_a_gpu_says_so(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(MissingDependencyError, match="sees no CUDA GPU.*--backend torch"):
        B.run_bench(B.BenchConfig(("vit_tiny_test",), backend="torch-cuda", warmup=0, iterations=2))


def test_precision_of_an_onnx_without_its_manifest_is_read_from_the_graph(models, tmp_path):
    """A copied or renamed FP16/INT8 file (its manifest left behind) is not judged or labelled as FP32."""
    import shutil

    from vitdeploy.calib.quantize import QuantizeConfig, quantize
    from vitdeploy.runners.factory import resolve_artifact

    from vitdeploy.calib.builtin import cached_sample

    int8 = quantize(QuantizeConfig(models["fp32"], "int8", calib=cached_sample(), output=tmp_path / "q.int8.onnx",
                                   gate=False)).onnx_path
    for src, want in ((models["fp16"], "fp16"), (int8, "int8"), (models["static"], "fp32")):
        bare = tmp_path / f"bare-{want}.onnx"
        shutil.copy(src, bare)  # no manifest beside it
        assert resolve_artifact(bare).manifest is None and resolve_artifact(bare).precision == want
