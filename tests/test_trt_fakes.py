"""Fake ``tensorrt`` modules, one per served version, generated from tests/data/trt_api/<version>.txt.

The fake has exactly the module-level names, enum members and class attributes that version's
bindings have: touching anything else raises AttributeError, as the real module would. Its
builder records every call (``trt.calls``) and emulates just enough of TensorRT to test the
version branching on the CPU: the network comes from the ONNX graph (one layer per node), and the
"engine" reports per-layer precisions the way the real inspector would for the flags, types and
precision constraints it was given. ``FakeCuda`` stands in for vitdeploy.trt.cuda.Cuda (the libcudart
wrapper) with host memory; the fake context also runs on the real wrapper over the fake libcudart of
test_cuda_ctypes, whose "device" pointers are host memory.

This file is also collected by pytest: the tests at the bottom check the fake itself.
"""

from __future__ import annotations

import ctypes
import json
import types
from pathlib import Path

import numpy as np
import pytest

API_DIR = Path(__file__).parent / "data" / "trt_api"
VERSIONS = ("8.6.1", "10.3.0", "10.16.1.11", "11.4.0.106")

ENUMS = ("BuilderFlag", "NetworkDefinitionCreationFlag", "MemoryPoolType", "HardwareCompatibilityLevel",
         "LayerInformationFormat", "LayerType", "DataType", "DeviceType", "ProfilingVerbosity", "TensorIOMode",
         "CalibrationAlgoType")
BASES = ("ILogger", "IProgressMonitor", "IInt8EntropyCalibrator2", "IInt8Calibrator")

# ONNX op -> LayerType member of the layer the fake parser makes for it
OP_LAYER = {"LayerNormalization": "NORMALIZATION", "Softmax": "SOFTMAX", "ReduceMean": "REDUCE", "MatMul": "MATRIX_MULTIPLY",
            "Gemm": "MATRIX_MULTIPLY", "Conv": "CONVOLUTION", "QuantizeLinear": "QUANTIZE", "DequantizeLinear": "DEQUANTIZE",
            "Cast": "CAST", "Shape": "SHAPE", "Reshape": "SHUFFLE", "Transpose": "SHUFFLE", "Flatten": "SHUFFLE",
            "Sqrt": "UNARY", "Erf": "UNARY"}


def symbols(version: str) -> frozenset[str]:
    lines = (API_DIR / f"{version}.txt").read_text().splitlines()
    return frozenset(ln.strip() for ln in lines if ln.strip() and not ln.startswith("#"))


class EnumMember:
    def __init__(self, enum: str, name: str, value: int) -> None:
        self.enum, self.name, self.value = enum, name, value

    def __int__(self) -> int:
        return self.value

    def __eq__(self, other) -> bool:
        return isinstance(other, EnumMember) and (self.enum, self.name) == (other.enum, other.name)

    def __hash__(self) -> int:
        return hash((self.enum, self.name))

    def __repr__(self) -> str:
        return f"{self.enum}.{self.name}"


def _members(syms: frozenset[str], cls: str) -> list[str]:
    return sorted(s.split(".", 1)[1] for s in syms if s.startswith(cls + ".") and s.split(".", 1)[1].isupper())


class Strict:
    """A fake TensorRT object: attributes outside the version's ``Class.attr`` list raise AttributeError."""

    _cls = "?"

    def __init__(self, trt) -> None:
        object.__setattr__(self, "_trt", trt)

    def _allowed(self, name: str) -> bool:
        return name.startswith("_") or f"{type(self)._cls}.{name}" in object.__getattribute__(self, "_trt")._symbols

    def __getattribute__(self, name: str):
        if not object.__getattribute__(self, "_allowed")(name):
            trt = object.__getattribute__(self, "_trt")
            raise AttributeError(f"TensorRT {trt.__version__}: {type(self)._cls} has no attribute {name!r}")
        return object.__getattribute__(self, name)

    def __setattr__(self, name: str, value) -> None:
        if not self._allowed(name):
            raise AttributeError(f"TensorRT {self._trt.__version__}: cannot set {type(self)._cls}.{name}")
        self._trt.calls.append((type(self)._cls, f"{name}=", value))
        object.__setattr__(self, name, value)

    def _rec(self, method: str, *args) -> None:
        self._trt.calls.append((type(self)._cls, method, args))


class FakeTensor(Strict):
    _cls = "ITensor"

    def __init__(self, trt, name: str, shape, dtype) -> None:
        super().__init__(trt)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "shape", tuple(shape))
        object.__setattr__(self, "dtype", dtype)


class FakeLayer(Strict):
    _cls = "ILayer"

    def __init__(self, trt, name: str, op: str, outputs) -> None:
        super().__init__(trt)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "_op", op)
        object.__setattr__(self, "type", getattr(trt.LayerType, OP_LAYER.get(op, "ELEMENTWISE")))
        object.__setattr__(self, "_outputs", outputs)
        object.__setattr__(self, "num_outputs", len(outputs))
        object.__setattr__(self, "_output_types", {})

    def get_output(self, i):
        return self._outputs[i]

    def set_output_type(self, i, dtype) -> None:
        self._rec("set_output_type", i, dtype)
        self._output_types[i] = dtype


class FakeNetwork(Strict):
    _cls = "INetworkDefinition"

    def __init__(self, trt, flags: int) -> None:
        super().__init__(trt)
        object.__setattr__(self, "_flags", flags)
        object.__setattr__(self, "_inputs", [])
        object.__setattr__(self, "_layers", [])
        object.__setattr__(self, "_has_fp16", False)
        object.__setattr__(self, "_has_qdq", False)

    @property
    def num_inputs(self) -> int:
        return len(self._inputs)

    @property
    def num_layers(self) -> int:
        return len(self._layers)

    def get_input(self, i):
        return self._inputs[i]

    def get_layer(self, i):
        return self._layers[i]


class FakeParserError(Strict):
    _cls = "ParserError"

    def __init__(self, trt, index: int, name: str, op: str, desc: str) -> None:
        super().__init__(trt)
        object.__setattr__(self, "_v", (index, name, op, desc))

    def node(self):
        return self._v[0]

    def node_name(self):
        return self._v[1]

    def node_operator(self):
        return self._v[2]

    def desc(self):
        return self._v[3]

    def code(self):
        return 8


class FakeParser(Strict):
    _cls = "OnnxParser"

    def __init__(self, trt, network, logger) -> None:
        super().__init__(trt)
        object.__setattr__(self, "_net", network)
        object.__setattr__(self, "_errors", [])

    def parse_from_file(self, path: str) -> bool:
        import onnx

        self._rec("parse_from_file", path)
        model = onnx.load(path, load_external_data=False)
        trt, net = self._trt, self._net
        inits = {t.name for t in model.graph.initializer}
        for vi in model.graph.input:
            if vi.name not in inits:
                dims = [d.dim_value if d.HasField("dim_value") else -1 for d in vi.type.tensor_type.shape.dim]
                net._inputs.append(FakeTensor(trt, vi.name, dims, trt.float32))
        for i, node in enumerate(model.graph.node):
            if node.op_type in trt._reject_ops:
                self._errors.append(FakeParserError(trt, i, node.name, node.op_type, f"No importer registered for op: {node.op_type}"))
                continue
            dtype = trt.int32 if node.op_type == "Shape" else trt.float32
            outs = [FakeTensor(trt, o, (), dtype) for o in node.output]
            net._layers.append(FakeLayer(trt, node.name, node.op_type, outs))
        object.__setattr__(net, "_has_fp16", any(t.data_type == 10 for t in model.graph.initializer))
        object.__setattr__(net, "_has_qdq", any(n.op_type == "QuantizeLinear" for n in model.graph.node))
        return not self._errors

    @property
    def num_errors(self) -> int:
        return len(self._errors)

    def get_error(self, i):
        return self._errors[i]


class FakeProfile(Strict):
    _cls = "IOptimizationProfile"

    def __init__(self, trt) -> None:
        super().__init__(trt)
        object.__setattr__(self, "_shapes", {})

    def set_shape(self, name, mn, opt, mx) -> None:
        self._rec("set_shape", name, tuple(mn), tuple(opt), tuple(mx))
        self._shapes[name] = (tuple(mn), tuple(opt), tuple(mx))


class FakeTimingCache(Strict):
    _cls = "ITimingCache"

    def __init__(self, trt, data: bytes) -> None:
        super().__init__(trt)
        object.__setattr__(self, "_data", bytes(data) or b"fresh-cache")

    def serialize(self):
        return self._data + b"+tuned"


class FakeConfig(Strict):
    _cls = "IBuilderConfig"

    def __init__(self, trt) -> None:
        super().__init__(trt)
        object.__setattr__(self, "_flags", set())
        object.__setattr__(self, "_pools", {})
        object.__setattr__(self, "_profiles", [])
        object.__setattr__(self, "_cache", None)

    def set_flag(self, flag) -> None:
        self._rec("set_flag", flag)
        self._flags.add(flag.name)

    def set_memory_pool_limit(self, pool, size) -> None:
        self._rec("set_memory_pool_limit", pool, size)
        self._pools[pool.name] = size

    def add_optimization_profile(self, profile) -> int:
        self._rec("add_optimization_profile", profile)
        self._profiles.append(profile)
        return len(self._profiles) - 1

    def create_timing_cache(self, data):
        self._rec("create_timing_cache", bytes(data))
        return FakeTimingCache(self._trt, data)

    def set_timing_cache(self, cache, ignore_mismatch) -> bool:
        self._rec("set_timing_cache", cache, ignore_mismatch)
        if cache._data.startswith(b"other-gpu"):
            return False
        object.__setattr__(self, "_cache", cache)
        return True

    def get_timing_cache(self):
        return self._cache

    def set_calibration_profile(self, profile) -> bool:
        self._rec("set_calibration_profile", profile)
        return True


class FakeBuilder(Strict):
    _cls = "Builder"

    def __init__(self, trt, logger) -> None:
        super().__init__(trt)
        object.__setattr__(self, "num_DLA_cores", trt._dla_cores)
        object.__setattr__(self, "platform_has_fast_fp16", True)
        object.__setattr__(self, "platform_has_fast_int8", True)
        trt.builders.append(self)

    def create_network(self, flags: int = 0):
        self._rec("create_network", flags)
        net = FakeNetwork(self._trt, flags)
        object.__setattr__(self, "_network", net)
        return net

    def create_builder_config(self):
        cfg = FakeConfig(self._trt)
        object.__setattr__(self, "_config", cfg)
        return cfg

    def create_optimization_profile(self):
        return FakeProfile(self._trt)

    def build_serialized_network(self, network, cfg):
        self._rec("build_serialized_network", network, cfg)
        trt = self._trt
        if trt._build_fails:
            trt.loggers[-1].log(trt.ILogger.ERROR, "fake: out of memory")
            return None
        monitor = cfg.__dict__.get("progress_monitor")
        if monitor is not None:
            monitor.phase_start("Building engine", None, 2)
            monitor.step_complete("Building engine", 0)
            monitor.step_complete("Building engine", 1)
            monitor.phase_finish("Building engine")
        return json.dumps({"layers": emulate_precisions(trt, network, cfg), "io": [
            [t.name, list(t.shape)] for t in network._inputs]}).encode()


def emulate_precisions(trt, network, cfg) -> list[dict]:
    """What TensorRT would pick per layer: types when strongly typed, flags (minus FP32 constraints) otherwise."""
    strongly = bool(network._flags & (1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))) \
        if hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED") else False
    strongly = strongly or trt.__version__.startswith("11.")
    out = []
    for layer in network._layers:
        fmt = "Row major linear FP32"
        if layer._op in ("Shape",):
            fmt = "Row major linear Int32"
        elif network._has_qdq and layer._op in ("MatMul", "Gemm", "Conv", "DequantizeLinear") and (strongly or "INT8" in cfg._flags):
            fmt = "Row major linear Int8"
        elif "int8_calibrator" in cfg.__dict__ and "INT8" in cfg._flags and layer._op in ("MatMul", "Gemm", "Conv"):
            fmt = "Row major linear Int8"  # implicit INT8 from the calibrator's scales
        elif strongly and network._has_fp16 and layer._op not in ("LayerNormalization", "Softmax", "ReduceMean", "Pow", "Sqrt"):
            fmt = "Half"
        elif not strongly and "FP16" in cfg._flags and not trt._ignore_fp16:
            constrained = "precision" in layer.__dict__ and layer.__dict__["precision"] == trt.float32
            fmt = "Row major linear FP32" if constrained else "Row major linear FP16 format"
        out.append({"Name": layer.name, "LayerType": layer.type.name,
                    "Inputs": [{"Name": "x", "Format/Datatype": fmt}], "Outputs": [{"Name": "y", "Format/Datatype": fmt}]})
    return out


class FakeInspector(Strict):
    _cls = "EngineInspector"

    def __init__(self, trt, layers) -> None:
        super().__init__(trt)
        object.__setattr__(self, "_layers", layers)

    def get_engine_information(self, fmt) -> str:
        assert fmt == self._trt.LayerInformationFormat.JSON
        return json.dumps({"Layers": self._layers, "Bindings": []})


class FakeEngine(Strict):
    _cls = "ICudaEngine"

    def __init__(self, trt, plan: dict) -> None:
        super().__init__(trt)
        object.__setattr__(self, "_plan", plan)
        # I/O: the inputs from the plan, one output "logits" [batch, 10]
        io = [(name, shape, True) for name, shape in plan["io"]] + [("logits", [plan["io"][0][1][0], 10], False)]
        object.__setattr__(self, "_io", io)
        object.__setattr__(self, "num_io_tensors", len(io))

    @property
    def device_memory_size(self):
        return 1 << 20

    @property
    def device_memory_size_v2(self):
        return 1 << 20

    def create_engine_inspector(self):
        return FakeInspector(self._trt, self._plan["layers"])

    def create_execution_context(self):
        return FakeContext(self._trt, self)

    def get_tensor_name(self, i):
        return self._io[i][0]

    def _entry(self, name):
        return next(e for e in self._io if e[0] == name)

    def get_tensor_mode(self, name):
        return self._trt.TensorIOMode.INPUT if self._entry(name)[2] else self._trt.TensorIOMode.OUTPUT

    def get_tensor_dtype(self, name):
        return self._trt.float32

    def get_tensor_shape(self, name):
        return tuple(self._entry(name)[1])

    def get_tensor_profile_shape(self, name, index):
        shape = self._entry(name)[1]
        lo, opt, hi = self._trt._profile
        return [(b, *shape[1:]) for b in (lo, opt, hi)]


class FakeContext(Strict):
    """'Runs' the engine on FakeCuda memory: logits[b, k] = sum(input[b]) * (k + 1)."""

    _cls = "IExecutionContext"

    def __init__(self, trt, engine) -> None:
        super().__init__(trt)
        object.__setattr__(self, "_engine", engine)
        object.__setattr__(self, "_shapes", {})
        object.__setattr__(self, "_addr", {})

    def set_input_shape(self, name, shape) -> bool:
        self._shapes[name] = tuple(int(d) for d in shape)
        return True

    def set_tensor_address(self, name, ptr) -> bool:
        self._addr[name] = ptr
        return True

    def get_tensor_shape(self, name):
        if name in self._shapes:
            return self._shapes[name]
        batch = next(iter(self._shapes.values()))[0]
        return (batch, 10)

    def execute_async_v3(self, stream) -> bool:
        cuda = self._trt._cuda
        name = next(iter(self._shapes))
        shape = self._shapes[name]
        count = int(np.prod(shape))
        x = np.frombuffer(_device_read(cuda, self._addr[name], count * 4), dtype=np.float32, count=count).reshape(shape)
        y = x.reshape(shape[0], -1).sum(1, keepdims=True) * np.arange(1, 11, dtype=np.float32)
        _device_write(cuda, self._addr["logits"], y.astype(np.float32).tobytes())
        return True


def _device_read(cuda, ptr: int, nbytes: int) -> bytes:
    """Bytes at a 'device' pointer: FakeCuda's bytearrays, or host memory behind the fake libcudart."""
    if isinstance(cuda, FakeCuda):
        return bytes(cuda.mem[ptr][:nbytes])
    return ctypes.string_at(ptr, nbytes)


def _device_write(cuda, ptr: int, data: bytes) -> None:
    if isinstance(cuda, FakeCuda):
        cuda.mem[ptr][: len(data)] = data
    else:
        ctypes.memmove(ptr, data, len(data))


class FakeRuntime(Strict):
    _cls = "Runtime"

    def __init__(self, trt, logger) -> None:
        super().__init__(trt)

    def deserialize_cuda_engine(self, data):
        self._rec("deserialize_cuda_engine", len(bytes(data)))
        try:
            return FakeEngine(self._trt, json.loads(bytes(data)))
        except ValueError:
            return None


class FakeCuda:
    """vitdeploy.trt.cuda.Cuda stand-in: device memory is host bytearrays keyed by fake pointers."""

    def __init__(self, compute_capability: str = "8.7", name: str = "Orin (fake)") -> None:
        self.mem: dict[int, bytearray] = {}
        self.next = 0x1000
        self.info = {"index": 0, "name": name, "compute_capability": compute_capability}
        self.freed: list[int] = []

    def device_info(self):
        return dict(self.info)

    def malloc(self, nbytes):
        ptr, self.next = self.next, self.next + 0x1000000
        self.mem[ptr] = bytearray(int(nbytes))
        return ptr

    def free(self, ptr):
        self.freed.append(ptr)
        del self.mem[ptr]

    def stream(self):
        return 7

    def destroy_stream(self, stream):
        pass

    def synchronize(self, stream):
        pass

    def event(self):
        return object()

    def destroy_event(self, event):
        pass

    def record(self, event, stream):
        self.recorded = getattr(self, "recorded", 0) + 1

    def elapsed_ms(self, start, end):
        return 0.25

    def to_device(self, dst, host, stream):
        self.copies_in = getattr(self, "copies_in", 0) + 1
        self.mem[dst][: host.nbytes] = host.tobytes()

    def to_host(self, host, src, stream):
        host.view(np.uint8).reshape(-1)[:] = np.frombuffer(self.mem[src], dtype=np.uint8, count=host.nbytes)


def make_fake_trt(version: str, *, dla_cores: int = 0, ignore_fp16: bool = False, build_fails: bool = False,
                  reject_ops: tuple[str, ...] = (), profile: tuple[int, int, int] = (1, 1, 8), cuda: FakeCuda | None = None,
                  symbols_of: str | None = None):
    """A fake ``tensorrt`` module with exactly the names of ``version``'s bindings (or of ``symbols_of``'s,
    for a version whose bindings are not on the registry: 8.5 is faked with 8.6.1's names)."""
    syms = symbols(symbols_of or version)
    trt = types.ModuleType(f"fake_tensorrt_{version.replace('.', '_')}")
    trt._symbols = syms
    trt.calls = []
    trt.builders = []
    trt.loggers = []
    trt._dla_cores, trt._ignore_fp16, trt._build_fails = dla_cores, ignore_fp16, build_fails
    trt._reject_ops, trt._profile, trt._cuda = reject_ops, profile, cuda
    module_names = {s for s in syms if "." not in s}
    trt.__version__ = version
    for name in module_names & set(ENUMS):
        ns = types.SimpleNamespace()
        for i, member in enumerate(_members(syms, name)):
            setattr(ns, member, EnumMember(name, member, i))
        setattr(trt, name, ns)
    for name in module_names & set(BASES):
        attrs = {"__init__": lambda self, *a: None}
        for member in _members(syms, name):
            attrs[member] = EnumMember(f"{name}.Severity", member, 0)
        setattr(trt, name, type(name, (), attrs))
    if "DataType" in module_names:
        dt = trt.DataType
        for alias, member in (("float32", "FLOAT"), ("float16", "HALF"), ("int8", "INT8"), ("int32", "INT32"), ("bool", "BOOL")):
            if alias in module_names:
                setattr(trt, alias, getattr(dt, member))
    if "nptype" in module_names:
        mapping = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32, "BOOL": np.bool_}
        trt.nptype = lambda d: mapping[d.name]

    class Logger(trt.ILogger):
        def __init__(self, severity=None):
            self.severity = severity

    for member in _members(syms, "Logger"):
        setattr(Logger, member, getattr(trt.ILogger, member))
    trt.Logger = Logger
    trt.Builder = lambda logger: (trt.loggers.append(logger), FakeBuilder(trt, logger))[1]
    trt.OnnxParser = lambda network, logger: FakeParser(trt, network, logger)
    trt.Runtime = lambda logger: FakeRuntime(trt, logger)
    for name in module_names:  # everything else exists as an opaque object
        if not hasattr(trt, name):
            setattr(trt, name, types.SimpleNamespace())
    return trt


# --------------------------------------------------------------------------------------------
# The fake itself
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("version", VERSIONS)
def test_symbol_lists_present_and_small(version):
    syms = symbols(version)
    assert 300 < len(syms) < 2000, len(syms)
    assert {"Builder", "Runtime", "OnnxParser", "IBuilderConfig.set_memory_pool_limit"} <= syms


def test_fake_has_exactly_the_versions_names():
    old, new = make_fake_trt("8.6.1"), make_fake_trt("11.4.0.106")
    assert old.BuilderFlag.FP16.name == "FP16"
    with pytest.raises(AttributeError):
        new.BuilderFlag.FP16  # removed in 11
    with pytest.raises(AttributeError):
        new.IInt8EntropyCalibrator2
    with pytest.raises(AttributeError):
        old.IProgressMonitor  # arrived in 10.0
    cfg = new.Builder(new.Logger()).create_builder_config()
    with pytest.raises(AttributeError):
        cfg.int8_calibrator = object()
    cfg.progress_monitor = object()  # exists from 10.0 on
    with pytest.raises(AttributeError):
        old.Builder(old.Logger()).create_builder_config().progress_monitor = object()


# --------------------------------------------------------------------------------------------
# A tiny ViT-like ONNX (no torch): Flatten -> MatMul -> LayerNormalization -> MatMul -> Softmax
# --------------------------------------------------------------------------------------------

def tiny_onnx(folder: Path, name: str = "tiny", batch: tuple[int, int, int] | None = (1, 1, 8)) -> Path:
    """Write FOLDER/NAME.onnx (+ NAME.json manifest as `vitdeploy export` would); batch None: static 1."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from vitdeploy.core.io import new_manifest, write_manifest

    rng = np.random.default_rng(0)
    dim0 = "batch" if batch else 1
    inits = [numpy_helper.from_array(rng.standard_normal((48, 16)).astype(np.float32) * 0.2, "w1"),
             numpy_helper.from_array(np.ones(16, np.float32), "gamma"), numpy_helper.from_array(np.zeros(16, np.float32), "beta"),
             numpy_helper.from_array(rng.standard_normal((16, 10)).astype(np.float32) * 0.2, "w2")]
    nodes = [helper.make_node("Flatten", ["input"], ["flat"], name="/flatten/Flatten", axis=1),
             helper.make_node("MatMul", ["flat", "w1"], ["h"], name="/fc1/MatMul"),
             helper.make_node("LayerNormalization", ["h", "gamma", "beta"], ["hn"], name="/norm/LayerNormalization", axis=-1),
             helper.make_node("MatMul", ["hn", "w2"], ["z"], name="/head/MatMul"),
             helper.make_node("Softmax", ["z"], ["logits"], name="/softmax/Softmax", axis=-1)]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [dim0, 3, 4, 4])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [dim0, 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = Path(folder) / f"{name}.onnx"
    onnx.save(model, path)
    b = batch or (1, 1, 1)
    manifest = new_manifest("onnx", path, model={"name": "tiny_test", "num_classes": 10}, precision="fp32",
                            input={"name": "input", "shape": [None if batch else 1, 3, 4, 4], "dtype": "float32"},
                            output={"name": "logits"}, batch={"min": b[0], "opt": b[1], "max": b[2]},
                            preprocessing={"input_size": [3, 4, 4], "mean": [0.5] * 3, "std": [0.5] * 3,
                                           "interpolation": "bilinear", "crop_pct": 1.0, "layout": "NCHW"})
    write_manifest(path, manifest)
    return path


def test_tiny_onnx_runs_in_onnxruntime(tmp_path):
    from vitdeploy.runners.ort import OnnxRuntimeRunner

    path = tiny_onnx(tmp_path)
    with OnnxRuntimeRunner(path) as r:
        y = r.infer_one(np.zeros((3, 3, 4, 4), np.float32))
    assert y.shape == (3, 10) and np.allclose(y.sum(1), 1.0, atol=1e-5)
