"""vitdeploy.trt's Python-side TensorRT code against the real bindings of each served version.

tools/trt_api_surface.py leaves each bindings wheel extracted in its cache folder with a stub of
the few libnvinfer entry points, so the real pybind11 module imports (nothing can be built or run
through it). Here the pieces that need no GPU run against it: the ILogger / IProgressMonitor /
IInt8EntropyCalibrator2 subclasses, the network-creation flags from the real enum values, and
the enums the builder reads. Skipped when the cache is absent (run the tool, or set
VITDEPLOY_TRT_WHEELS to its --cache folder).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from vitdeploy.trt.version import SERVED_VERSIONS

CACHE = Path(os.environ.get("VITDEPLOY_TRT_WHEELS", Path(tempfile.gettempdir()) / "vitdeploy-trt-wheels"))

CHECK = r"""
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import tensorrt_bindings as trt
from vitdeploy.trt import build as B
from vitdeploy.engine.config import BatchRange, EngineConfig, Request, plan
from vitdeploy.trt.version import version_of

v = version_of(trt)
out = {"version": str(v)}
logger = B.make_logger(trt)
logger.log(trt.ILogger.WARNING, "w")
out["logger"] = [isinstance(logger, trt.ILogger), logger.warnings]
out["flags"] = {}
for prec, src in (("fp32", "onnx"), ("fp16", "fp16-pass")):
    cfg = EngineConfig(model=Path("m.onnx"), fp16=prec == "fp16")
    out["flags"][prec] = B.network_flags(trt, plan(cfg, Request(prec, src, BatchRange(1, 1, 8)), v), v)
if v.has_progress_monitor:
    seen = []
    class Callbacks:
        def phase_start(self, name, parent, steps): seen.append((name, steps))
        def step(self, name, step): seen.append(step)
        def phase_finish(self, name): seen.append(name)
    m = B.make_progress_monitor(trt, Callbacks())
    m.phase_start("p", None, 2)
    out["monitor"] = [isinstance(m, trt.IProgressMonitor), m.step_complete("p", 0), seen]
if v.legacy_calibrator_allowed:
    from vitdeploy.trt.calibrator import make_calibrator
    c = make_calibrator(trt, b"TRT-8601-EntropyCalibration2\n")
    out["calibrator"] = [isinstance(c, trt.IInt8EntropyCalibrator2), c.get_batch(["input"]), c.read_calibration_cache().decode()]
out["nptype"] = trt.nptype(trt.float32).__name__
print(json.dumps(out))
"""


def _extracted(version: str) -> Path | None:
    for folder in sorted(CACHE.glob(f"*-{version}-*")):
        if folder.is_dir() and (folder / "stub").is_dir() and (folder / "tensorrt_bindings" / "tensorrt.so").exists():
            return folder
    return None


@pytest.mark.parametrize("version", SERVED_VERSIONS)
def test_python_side_against_the_real_bindings(version):
    folder = _extracted(version)
    if folder is None:
        pytest.skip(f"no extracted bindings for {version} in {CACHE} (run tools/trt_api_surface.py)")
    env = {**os.environ, "LD_LIBRARY_PATH": f"{folder / 'stub'}:{os.environ.get('LD_LIBRARY_PATH', '')}"}
    proc = subprocess.run([sys.executable, "-c", CHECK, str(folder)], capture_output=True, text=True, env=env, timeout=60)
    if proc.returncode != 0 and "undefined symbol" in proc.stderr:
        pytest.skip(f"the stub no longer covers these bindings: {proc.stderr.strip().splitlines()[-1]}")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    major = int(version.split(".")[0])
    assert out["version"] == version and out["nptype"] == "float32"
    assert out["logger"] == [True, ["w"]]
    # 8.x: EXPLICIT_BATCH (bit 0); 10.x: STRONGLY_TYPED (bit 1); 11.x: nothing (always strongly typed)
    assert out["flags"] == {"8": {"fp32": 1, "fp16": 1}, "10": {"fp32": 2, "fp16": 2}, "11": {"fp32": 0, "fp16": 0}}[str(major)]
    assert ("monitor" in out) == (major >= 10)
    if major >= 10:
        assert out["monitor"] == [True, True, [["p", 2], 0]]
    assert ("calibrator" in out) == (version in ("8.6.1", "10.3.0"))
    if "calibrator" in out:
        assert out["calibrator"] == [True, None, "TRT-8601-EntropyCalibration2\n"]
