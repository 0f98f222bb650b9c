#!/usr/bin/env python3
"""Write tests/data/trt_api/<version>.txt: the TensorRT Python API names of each served version.

For each bindings wheel in WHEELS (the TensorRT releases FACTS.md lists; they come from PyPI with
``pip download --no-deps``, while the libraries they link against do not), this script

1. downloads the wheel for this interpreter into a cache folder (reused when present),
2. extracts ``tensorrt_bindings/`` (the pybind11 module ``tensorrt.so`` and its ``__init__.py``),
3. links a stub library that defines the handful of C entry points the module imports from
   libnvinfer / libnvonnxparser / libnvinfer_plugin (``nm -D --undefined-only``: the
   ``create*_INTERNAL`` factories and friends) as functions returning NULL, so the module loads
   without TensorRT's libraries. Nothing is ever built or run through it: module init only
   registers classes, and the stub is only on the child process's LD_LIBRARY_PATH,
4. imports the bindings in a child process and lists module-level names plus, for the classes in
   CLASSES, their attributes (``Class.attr``), then cross-checks every listed name against
   the bytes of the shared object (what ``strings`` shows), so no name can come from anywhere but
   that binary or the wheel's ``__init__.py``.

Only classes vitdeploy may touch are listed (CLASSES), to keep the files small. Needs pip, gcc,
nm (binutils), network access to PyPI, and a Python matching a bindings wheel (3.8-3.12). Run:

    python tools/trt_api_surface.py                 # all versions -> tests/data/trt_api/
    python tools/trt_api_surface.py --cache /tmp/trtw --only 11.4.0.106
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "data" / "trt_api"

# trt.__version__ -> pip requirement of its bindings-only wheel
WHEELS: dict[str, str] = {
    "8.6.1": "tensorrt-bindings==8.6.1",
    "10.3.0": "tensorrt-cu12-bindings==10.3.0",
    "10.16.1.11": "tensorrt-cu12-bindings==10.16.1.11",
    "11.4.0.106": "tensorrt-cu13-bindings==11.4.0.106",
}

# Classes whose attributes are listed. Everything the builder, runner, calibrator and progress
# monitor can touch, plus the enums they read.
CLASSES: tuple[str, ...] = (
    "Builder", "BuilderFlag", "CalibrationAlgoType", "DataType", "DeviceType", "EngineInspector",
    "HardwareCompatibilityLevel", "IBuilderConfig", "ICudaEngine", "IExecutionContext", "IHostMemory",
    "IInt8Calibrator", "IInt8EntropyCalibrator2", "ILayer", "ILogger", "INetworkDefinition",
    "IOptimizationProfile", "IProgressMonitor", "ITensor", "ITimingCache", "LayerInformationFormat",
    "LayerType", "Logger", "MemoryPoolType", "NetworkDefinitionCreationFlag", "OnnxParser", "ParserError",
    "ProfilingVerbosity", "Runtime", "TensorIOMode",
)

_DUMP = r"""
import inspect, json, sys
sys.path.insert(0, sys.argv[1])
import tensorrt_bindings as trt
classes = json.loads(sys.argv[2])
out = {"version": trt.__version__,
       "module": sorted(n for n in dir(trt) if not n.startswith("_") or n == "__version__"),
       "classes": {}}
for name in classes:
    obj = getattr(trt, name, None)
    if inspect.isclass(obj):
        out["classes"][name] = sorted(a for a in dir(obj) if not a.startswith("_"))
print(json.dumps(out))
"""


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def download(spec: str, cache: Path) -> Path:
    name, _, version = spec.partition("==")
    pattern = f"{name.replace('-', '_')}-{version}-*.whl"
    found = sorted(cache.glob(pattern))
    if not found:
        _run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(cache), spec])
        found = sorted(cache.glob(pattern))
    if not found:
        raise SystemExit(f"pip downloaded no wheel matching {pattern} for {spec}")
    return found[0]


def extract(wheel: Path, dest: Path) -> Path:
    with zipfile.ZipFile(wheel) as z:
        for member in z.namelist():
            if member.startswith("tensorrt_bindings/") and member.count("/") == 1:
                z.extract(member, dest)
    so = dest / "tensorrt_bindings" / "tensorrt.so"
    if not so.exists():
        raise SystemExit(f"{wheel.name} has no tensorrt_bindings/tensorrt.so")
    return so


def stub_libraries(so: Path, folder: Path) -> None:
    """A library defining the module's undefined non-libc symbols, under each NEEDED nv* name."""
    undefined = _run(["nm", "-D", "--undefined-only", str(so)]).stdout.split("\n")
    symbols = sorted({ln.split()[-1] for ln in undefined if ln.strip().startswith("U ")
                      and "@" not in ln and not re.match(r"U _?Py", ln.strip())})
    symbols = [s for s in symbols if not s.startswith(("dl", "pthread"))]
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(libnv[^\]]+)\]", _run(["readelf", "-d", str(so)]).stdout)
    folder.mkdir(parents=True, exist_ok=True)
    src = folder / "stub.c"
    src.write_text("".join(f"void *{s}(void) {{ return 0; }}\n" for s in symbols))
    lib = folder / "libstub.so"
    _run(["gcc", "-shared", "-fPIC", "-o", str(lib), str(src)])
    for name in needed:
        shutil.copy(lib, folder / name)


def introspect(root: Path, stubs: Path) -> dict:
    env = {**os.environ, "LD_LIBRARY_PATH": f"{stubs}:{os.environ.get('LD_LIBRARY_PATH', '')}"}
    proc = _run([sys.executable, "-c", _DUMP, str(root), json.dumps(CLASSES)], env=env)
    return json.loads(proc.stdout)


def render(spec: str, wheel: Path, api: dict, so: Path) -> str:
    binary = so.read_bytes()  # names may share storage with longer strings (linker tail merging)
    init_py = (so.parent / "__init__.py").read_text()
    lines = []
    for name in api["module"]:
        lines.append(name)
    for cls, attrs in sorted(api["classes"].items()):
        lines += [f"{cls}.{a}" for a in attrs]
    unexplained = [ln for ln in lines if ln.split(".")[-1].encode() not in binary and ln.split(".")[-1] not in init_py]
    if unexplained:
        raise SystemExit(f"{spec}: names found neither in the binary nor in __init__.py: {unexplained[:10]}")
    header = [
        f"# TensorRT {api['version']} Python API: {spec} ({wheel.name})",
        "# Generated by tools/trt_api_surface.py: module-level names, then Class.attr for its CLASSES.",
    ]
    return "\n".join(header + lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "vitdeploy-trt-wheels")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--only", action="append", help="version(s) to regenerate (default: all)")
    args = ap.parse_args(argv)
    for tool in ("gcc", "nm", "readelf"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is needed (binutils / gcc)")
    args.cache.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    for version, spec in WHEELS.items():
        if args.only and version not in args.only:
            continue
        wheel = download(spec, args.cache)
        root = args.cache / wheel.stem
        so = extract(wheel, root)
        stub_libraries(so, root / "stub")
        api = introspect(root, root / "stub")
        if api["version"] != version:
            raise SystemExit(f"{wheel.name} reports TensorRT {api['version']}, expected {version}")
        missing = [c for c in CLASSES if c not in api["classes"]]
        text = render(spec, wheel, api, so)
        (args.out / f"{version}.txt").write_text(text)
        print(f"{version}: {text.count(chr(10)) - 2} names ({len(api['module'])} module-level, "
              f"{len(api['classes'])} classes; absent: {', '.join(missing) or 'none'}) -> {args.out / (version + '.txt')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
