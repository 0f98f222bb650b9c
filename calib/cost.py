"""The cost model of the precision search (`vitdeploy quantize --max-drop`): what a MAC costs in INT8,
FP16 and FP32, and what a Q/DQ boundary costs, per device profile. An estimate, and labelled one.

GPU profiles are data: a layer takes the longer of its compute time (its MACs at the inverse of
NVIDIA's published dense tensor throughput: INT8 TOPS, FP16 TFLOPS, FP32 on CUDA cores) and its
memory time (its input and weight bytes at the layer's precision plus its FP16 output, at the
published bandwidth): a roofline, so small layers that are memory-bound gain from INT8's halved
bytes and not from its doubled throughput. A Q/DQ boundary costs one extra write of the INT8 copy
of the tensor (TensorRT fuses the Q into the producer). ``ort-cpu`` is measured: ONNX Runtime on
this machine times an FP32 MatMul, the same MatMul in the ort-cpu Q/DQ form (MatMulIntegerToFloat)
and a QuantizeLinear, one thread, interleaved; its per-MAC times already hold the memory traffic
of that size, so it has no separate memory term.

What the estimate leaves out: everything that is not a quantizable layer (LayerNorm, Softmax,
GELU, residual adds), kernel launch and fusion effects. It ranks plans; a build on the device
(`vitdeploy bench`) measures them.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from vitdeploy.core.deps import require
from vitdeploy.core.errors import UsageError


@dataclass(frozen=True)
class DeviceProfile:
    """Costs in seconds per MAC (``mac``: precision -> s), per boundary element, and per byte of
    memory traffic (``byte``; None: no memory term). ``source`` says where the figures come from;
    ``measured`` is True when they were timed here."""

    name: str
    description: str
    mac: dict[str, float]
    boundary_element: float
    source: str
    byte: float | None = None
    measured: bool = False

    def layer_seconds(self, layer: LayerCost, precision: str) -> float:
        """The roofline time of one layer at ``precision`` (its inputs and weights in it, FP16 output)."""
        compute = layer.macs * self.mac[precision]
        if self.byte is None:
            return compute
        size = BYTES[precision]
        return max(compute, ((layer.input_elements + layer.weight_elements) * size + layer.output_elements * 2) * self.byte)

    def to_json(self) -> dict:
        return {"name": self.name, "description": self.description, "seconds_per_mac": dict(self.mac),
                "seconds_per_boundary_element": self.boundary_element, "seconds_per_byte": self.byte,
                "source": self.source, "measured": self.measured, "estimate": True}


BYTES = {"int8": 1, "fp16": 2, "fp32": 4}


@dataclass(frozen=True)
class LayerCost:
    """What the cost model needs of one layer, per image."""

    macs: int
    input_elements: int  # its activation inputs
    weight_elements: int
    output_elements: int


def _gpu(name: str, description: str, int8_tops: float, fp16_tflops: float, fp32_tflops: float, gbps: float,
         source: str) -> DeviceProfile:
    # TOPS/TFLOPS count 2 operations per MAC; dense figures (NVIDIA quotes sparse ones at 2x)
    return DeviceProfile(name, description,
                         {"int8": 2 / (int8_tops * 1e12), "fp16": 2 / (fp16_tflops * 1e12), "fp32": 2 / (fp32_tflops * 1e12)},
                         1 / (gbps * 1e9), source, byte=1 / (gbps * 1e9))


GPU_PROFILES: dict[str, DeviceProfile] = {
    p.name: p for p in (
        _gpu("orin", "Jetson AGX Orin 64GB GPU (Ampere, 64 tensor cores)", 85, 42.5, 5.3, 204.8,
             "NVIDIA Jetson AGX Orin data sheet DS-10662 and technical brief: GPU 170 INT8 TOPS with sparsity "
             "(halved: 85 dense), 5.3 FP32 TFLOPS, 204.8 GB/s; no FP16 tensor figure is published: half the "
             "INT8 rate, as on A100 (same tensor-core rate per SM)"),
        _gpu("xavier", "Jetson AGX Xavier GPU (Volta, 64 tensor cores)", 22, 11, 1.4, 136.5,
             "NVIDIA developer blog 'Jetson AGX Xavier delivers 32 TeraOps': GPU 22 INT8 TOPS, 11 FP16 TFLOPS "
             "(dense; Volta has no sparsity); Jetson modules page: 136.5 GB/s; FP32 from 512 cores x 2 x 1.377 GHz"),
        _gpu("ampere", "A100 SXM 80GB (Ampere)", 624, 312, 19.5, 2039,
             "NVIDIA A100 data sheet (r4): dense 624 INT8 TOPS, 312 FP16 tensor TFLOPS, 19.5 FP32 TFLOPS, "
             "2039 GB/s (SXM 80GB)"),
        _gpu("ada", "L4 (Ada Lovelace)", 242.5, 121, 30.3, 300,
             "NVIDIA L4 data sheet: 485 INT8 TOPS and 242 FP16 TFLOPS with sparsity (halved here: dense), "
             "30.3 FP32 TFLOPS, 300 GB/s"),
    )
}
PROFILES = (*GPU_PROFILES, "ort-cpu")


def profile(name: str, threads: int | None = 1) -> DeviceProfile:
    """The named profile; ``ort-cpu`` is timed on this machine (once per process). UsageError for an unknown name."""
    if name in GPU_PROFILES:
        return GPU_PROFILES[name]
    if name == "ort-cpu":
        return _measure_ort_cpu(threads or 1)
    raise UsageError(f"unknown --device-profile {name!r}; choose from {', '.join(PROFILES)}")


def default_profile(target: str) -> str:
    """The profile a Q/DQ form is searched for unless --device-profile says otherwise: TensorRT's
    form for a Jetson Orin (the devices vitdeploy is made for), ort-cpu's for this CPU."""
    return "ort-cpu" if target == "ort-cpu" else "orin"


@lru_cache(maxsize=4)
def _measure_ort_cpu(threads: int, m: int = 1024, k: int = 384, n: int = 384, rounds: int = 7) -> DeviceProfile:
    """FP32 MatMul, its ort-cpu INT8 form, and a QuantizeLinear of its input, timed interleaved."""
    onnx = require("onnx")
    ort = require("onnxruntime", "timing the ort-cpu cost model")
    helper, TP = onnx.helper, onnx.TensorProto
    rng = np.random.default_rng(0)
    w = rng.standard_normal((k, n)).astype(np.float32)
    x = rng.standard_normal((m, k)).astype(np.float32)
    x_info = helper.make_tensor_value_info("x", TP.FLOAT, [m, k])

    def model(nodes, inits, out, out_type=TP.FLOAT, out_shape=(m, n)):
        g = helper.make_graph(nodes, "cost", [x_info], [helper.make_tensor_value_info(out, out_type, list(out_shape))], inits)
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()

    nh = onnx.numpy_helper
    s = np.float32(4.0 / 255.0)
    wq = np.clip(np.round(w / (np.abs(w).max(0) / 63.0)), -63, 63).astype(np.int8)
    ws = (np.abs(w).max(0) / 63.0).astype(np.float32)
    q_inits = [nh.from_array(np.array(s), "s"), nh.from_array(np.array(128, np.uint8), "z"),
               nh.from_array(wq, "wq"), nh.from_array(ws, "ws"), nh.from_array(np.zeros(n, np.int8), "wz")]
    models = {
        "fp32": model([helper.make_node("MatMul", ["x", "w"], ["y"])], [nh.from_array(w, "w")], "y"),
        "int8": model([helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
                       helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
                       helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], axis=1),
                       helper.make_node("MatMul", ["xd", "wd"], ["y"])], q_inits, "y"),
        "q": model([helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"])], q_inits[:2], "y", TP.UINT8, (m, k)),
    }
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    sessions = {key: ort.InferenceSession(b, opts, providers=["CPUExecutionProvider"]) for key, b in models.items()}
    times: dict[str, list[float]] = {key: [] for key in sessions}
    for _ in range(rounds):
        for key, sess in sessions.items():
            t = time.perf_counter()
            for _ in range(5):
                sess.run(None, {"x": x})
            times[key].append((time.perf_counter() - t) / 5)
    med = {key: statistics.median(v) for key, v in times.items()}
    macs = m * k * n
    int8 = max(med["int8"] - med["q"], med["int8"] * 0.1) / macs  # the MatMul without its input's Q
    return DeviceProfile(
        "ort-cpu", f"ONNX Runtime {ort.__version__} CPU on this machine, {threads} thread(s)",
        {"int8": int8, "fp16": med["fp32"] / macs, "fp32": med["fp32"] / macs},  # the ort-cpu form's float parts run FP32
        med["q"] / (m * k),
        f"timed here: {m}x{k}x{n} MatMul FP32 {med['fp32'] * 1e3:.2f} ms, ort-cpu INT8 {med['int8'] * 1e3:.2f} ms, "
        f"QuantizeLinear {med['q'] * 1e3:.2f} ms (median of {rounds} interleaved rounds)", measured=True)


def plan_seconds(layers: dict[str, LayerCost], precision: dict[str, str], boundaries: dict[str, int],
                 prof: DeviceProfile) -> float:
    """Estimated time of the quantizable layers under a plan: each layer at its precision
    (``DeviceProfile.layer_seconds``), plus one boundary pass over each distinct tensor an INT8
    layer quantizes (``boundaries``: tensor -> elements, only the tensors INT8 layers read)."""
    return (sum(prof.layer_seconds(c, precision[g]) for g, c in layers.items())
            + sum(boundaries.values()) * prof.boundary_element)
