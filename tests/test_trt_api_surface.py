"""API surface: every TensorRT attribute vitdeploy.trt touches exists in every version that code serves.

The symbol lists (tests/data/trt_api/<version>.txt) are read from the bindings wheels by
tools/trt_api_surface.py. The code is read statically (AST), so this runs without TensorRT:

* ``trt.X`` / ``trt.X.Y`` (``trt`` is always the tensorrt module's name), and base classes
  ``class M(trt.X)`` with the methods they override (``X.method``);
* methods/properties on TensorRT objects, recognised by the variable naming convention of
  vitdeploy.trt (RECEIVERS: ``cfg.set_flag`` -> ``IBuilderConfig.set_flag``).

Which versions a piece of code serves: all of SERVED_VERSIONS, narrowed by ``@requires("pred")``
on the enclosing function, by ``if <...>.pred`` / ``not`` / ``and`` / ``or`` tests on TrtVersion
predicates around it, and by early-exit guards (``if not version.pred: raise``).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

from test_trt_fakes import symbols
from vitdeploy.trt.version import PREDICATES, SERVED_VERSIONS, TrtVersion

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
# Every module that calls TensorRT's API: the TensorRT knowledge, the build stage, the runner.
TRT_FILES = sorted([*(DEPLOY / "trt").glob("*.py"), *(DEPLOY / "engine").glob("*.py"), DEPLOY / "runners" / "trt_runner.py"])
VERSIONS = {v: TrtVersion.parse(v) for v in SERVED_VERSIONS}

# variable name -> TensorRT class, the convention TRT_FILES follow
RECEIVERS = {
    "builder": "Builder", "network": "INetworkDefinition", "parser": "OnnxParser", "cfg": "IBuilderConfig",
    "profile": "IOptimizationProfile", "layer": "ILayer", "tensor": "ITensor", "runtime": "Runtime",
    "engine": "ICudaEngine", "context": "IExecutionContext", "inspector": "EngineInspector", "cache": "ITimingCache",
    "err": "ParserError",
}


@dataclass(frozen=True)
class Access:
    symbol: str  # "BuilderFlag.FP16", "IBuilderConfig.set_flag", "nptype"
    where: str  # file:line
    versions: frozenset[str]


def _predicate_truth(node: ast.expr) -> dict[str, bool | None]:
    """Three-valued truth of a test per served version (None: not decided by a TrtVersion predicate)."""
    if isinstance(node, ast.Attribute) and node.attr in PREDICATES:
        return {v: bool(getattr(tv, node.attr)) for v, tv in VERSIONS.items()}
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return {v: (None if t is None else not t) for v, t in _predicate_truth(node.operand).items()}
    if isinstance(node, ast.BoolOp):
        parts = [_predicate_truth(n) for n in node.values]
        out = {}
        for v in VERSIONS:
            vals = [p[v] for p in parts]
            if isinstance(node.op, ast.And):
                out[v] = False if False in vals else (True if all(x is True for x in vals) else None)
            else:
                out[v] = True if True in vals else (False if all(x is False for x in vals) else None)
        return out
    return {v: None for v in VERSIONS}


def _requires(fn: ast.FunctionDef) -> str | None:
    for d in fn.decorator_list:
        if isinstance(d, ast.Call) and getattr(d.func, "id", getattr(d.func, "attr", None)) == "requires":
            return d.args[0].value
    return None


def _terminates(body: list[ast.stmt]) -> bool:
    return bool(body) and isinstance(body[-1], (ast.Raise, ast.Return))


def _chain(node: ast.expr) -> list[str] | None:
    """trt.A.B -> ["A", "B"]; None when not rooted at the name ``trt``."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name) and node.id == "trt" and parts:
        return parts[::-1]
    return None


def analyse(source: str, filename: str = "<src>") -> list[Access]:
    accesses: list[Access] = []

    def record(symbol: str, node: ast.AST, versions: set[str]) -> None:
        if versions:
            accesses.append(Access(symbol, f"{filename}:{node.lineno}", frozenset(versions)))

    def scan(expr: ast.AST, versions: set[str]) -> None:
        for node in ast.walk(expr):
            if not isinstance(node, ast.Attribute) or node.attr.startswith("__"):
                continue
            chain = _chain(node)
            if chain:  # trt.A.B records "A.B"; its inner trt.A records "A"
                record(".".join(chain[:2]), node, versions)
            receiver = node.value
            name = receiver.id if isinstance(receiver, ast.Name) else receiver.attr if isinstance(receiver, ast.Attribute) else None
            if name in RECEIVERS:
                record(f"{RECEIVERS[name]}.{node.attr}", node, versions)

    def walk_body(stmts: list[ast.stmt], versions: set[str]) -> None:
        remaining = set(versions)
        for st in stmts:
            walk(st, remaining)
            if isinstance(st, ast.If) and not st.orelse and _terminates(st.body):
                truth = _predicate_truth(st.test)
                remaining = {v for v in remaining if truth[v] is not True}

    def walk(st: ast.AST, versions: set[str]) -> None:
        if isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef)):
            pred = _requires(st)
            vs = {v for v in versions if pred is None or getattr(VERSIONS[v], pred)}
            for d in st.decorator_list:
                scan(d, versions)
            walk_body(st.body, vs)
        elif isinstance(st, ast.ClassDef):
            for base in st.bases:
                scan(base, versions)
                chain = _chain(base)
                if chain and len(chain) == 1:  # a TensorRT interface implemented in Python: its methods must exist
                    for item in st.body:
                        if isinstance(item, ast.FunctionDef) and not item.name.startswith("_"):
                            record(f"{chain[0]}.{item.name}", item, versions)
            walk_body(st.body, versions)
        elif isinstance(st, ast.If):
            scan(st.test, versions)
            truth = _predicate_truth(st.test)
            walk_body(st.body, {v for v in versions if truth[v] is not False})
            walk_body(st.orelse, {v for v in versions if truth[v] is not True})
        else:
            for _, value in ast.iter_fields(st):
                items = value if isinstance(value, list) else [value]
                if items and all(isinstance(i, ast.stmt) for i in items):
                    walk_body(items, versions)
                    continue
                for item in items:
                    if isinstance(item, ast.ExceptHandler):
                        walk_body(item.body, versions)
                    elif isinstance(item, (ast.expr, ast.withitem, ast.comprehension, ast.keyword, ast.arguments)):
                        scan(item, versions)

    walk_body(ast.parse(source).body, set(VERSIONS))
    return accesses


def problems(accesses: list[Access]) -> list[str]:
    """'file:line: X.Y missing in TensorRT 11.4.0.106' for every access a served version lacks."""
    lists = {v: symbols(v) for v in VERSIONS}
    listed_classes = {s.split(".")[0] for syms in lists.values() for s in syms if "." in s}
    out = []
    for a in accesses:
        owner = a.symbol.split(".")[0]
        if "." in a.symbol and owner not in listed_classes:
            out.append(f"{a.where}: {a.symbol}: class {owner} is not in the API lists (add it to CLASSES in "
                       "tools/trt_api_surface.py and regenerate)")
            continue
        for v in sorted(a.versions, key=VERSIONS.get):
            if a.symbol not in lists[v] or owner not in lists[v]:
                out.append(f"{a.where}: {a.symbol} missing in TensorRT {v}")
    return out


def package_accesses() -> list[Access]:
    found = []
    for path in TRT_FILES:
        found += analyse(path.read_text(), str(path.relative_to(DEPLOY.parent)))
    return found


# --- the package ----------------------------------------------------------------------------

def test_every_touched_symbol_exists_in_every_version_its_path_serves():
    assert problems(package_accesses()) == []


def test_the_walk_sees_the_version_paths():
    """Guard against a vacuous pass: the known accesses are found, with the right version sets."""
    seen: dict[str, set[str]] = {}
    for a in package_accesses():
        seen.setdefault(a.symbol, set()).update(a.versions)
    every = set(SERVED_VERSIONS)
    assert len(seen) > 60
    assert seen["IBuilderConfig.set_memory_pool_limit"] == every
    assert seen["IExecutionContext.execute_async_v3"] == every
    assert seen["IExecutionContext.set_tensor_address"] == every and seen["IExecutionContext.set_input_shape"] == every
    assert seen["EngineInspector.get_engine_information"] == every
    assert seen["BuilderFlag.FP16"] == {"8.6.1", "10.3.0", "10.16.1.11"}  # never reached on 11.x
    assert seen["ILayer.precision"] == {"8.6.1", "10.3.0", "10.16.1.11"}
    assert seen["NetworkDefinitionCreationFlag.EXPLICIT_BATCH"] == {"8.6.1"}
    assert seen["NetworkDefinitionCreationFlag.STRONGLY_TYPED"] == {"10.3.0", "10.16.1.11"}
    assert seen["IInt8EntropyCalibrator2.read_calibration_cache"] == {"8.6.1", "10.3.0"}
    assert seen["IBuilderConfig.int8_calibrator"] == {"8.6.1", "10.3.0"}
    assert seen["IProgressMonitor.step_complete"] == {"10.3.0", "10.16.1.11", "11.4.0.106"}
    assert seen["ParserError.node_name"] == {"10.3.0", "10.16.1.11", "11.4.0.106"}
    assert seen["HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY"] == {"10.16.1.11", "11.4.0.106"}


def test_package_never_imports_tensorrt_or_cuda_at_module_level():
    for path in TRT_FILES:
        for node in ast.parse(path.read_text()).body:
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.split(".")[0] in ("tensorrt", "cuda", "torch") for n in names), (path.name, names)


# --- the check can fail -------------------------------------------------------------------------

@pytest.mark.parametrize("source,expected", [
    # FP16 builder flag on a path serving 11.x: removed there
    ("def f(trt, cfg):\n    cfg.set_flag(trt.BuilderFlag.FP16)\n", ["BuilderFlag.FP16 missing in TensorRT 11.4.0.106"]),
    # the implicit calibrator attribute on every version
    ("def f(trt, cfg, c):\n    cfg.int8_calibrator = c\n", ["IBuilderConfig.int8_calibrator missing in TensorRT 11.4.0.106"]),
    # progress monitor without the predicate: 8.6 lacks it (class and config attribute)
    ("def f(trt, cfg):\n    class M(trt.IProgressMonitor):\n        def step_complete(self, p, s):\n            return True\n"
     "    cfg.progress_monitor = M()\n",
     ["IProgressMonitor missing in TensorRT 8.6.1", "IProgressMonitor.step_complete missing in TensorRT 8.6.1",
      "IBuilderConfig.progress_monitor missing in TensorRT 8.6.1"]),
    # the removed bindings API on the runtime path
    ("def f(context, b, s):\n    context.execute_async_v2(b, s)\n", ["execute_async_v2 missing in TensorRT 10.3.0"]),
    # a guard on the wrong predicate does not help: STRONGLY_TYPED is absent in 8.6
    ("def f(trt, version):\n    if not version.strongly_typed_only:\n        return trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED\n",
     ["STRONGLY_TYPED missing in TensorRT 8.6.1"]),
    # a method the Python subclass overrides that the interface does not have
    ("def f(trt):\n    class L(trt.ILogger):\n        def log_v2(self, s, m):\n            pass\n", ["ILogger.log_v2 missing in TensorRT 8.6.1"]),
])
def test_removed_symbols_are_flagged(source, expected):
    found = problems(analyse(source))
    for e in expected:
        assert any(e in p for p in found), (e, found)


@pytest.mark.parametrize("source", [
    "def f(trt, cfg, version):\n    if version.has_builder_precision_flags:\n        cfg.set_flag(trt.BuilderFlag.FP16)\n",
    "from vitdeploy.trt.version import requires\n@requires('has_int8_calibrator')\ndef f(trt, cfg, c):\n    cfg.int8_calibrator = c\n",
    "def f(trt, cfg, version):\n    if not version.has_progress_monitor:\n        return\n    cfg.progress_monitor = 1\n",
    "def f(trt, version):\n    if version.has_strongly_typed and not version.strongly_typed_only:\n"
    "        return trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED\n",
    "def f(trt, version):\n    if version.needs_explicit_batch_flag:\n        return trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH\n"
    "    return 0\n",
])
def test_guarded_symbols_pass(source):
    assert problems(analyse(source)) == []


def test_unlisted_class_is_reported():
    assert "not in the API lists" in problems(analyse("def f(trt):\n    return trt.IRefitter.refit_cuda_engine\n"))[0]
