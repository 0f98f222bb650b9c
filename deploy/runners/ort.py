"""ONNX Runtime runner (CPU by default; CUDA / TensorRT execution providers when asked)."""

from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path

import numpy as np

from vitdeploy.core.deps import require
from vitdeploy.core.errors import InputError, MissingDependencyError
from vitdeploy.runners.base import BaseRunner, TensorMeta

_ORT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8,
}

PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "trt": "TensorrtExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}


@functools.cache
def keeps_lossy_casts(optimization: str = "all") -> bool:
    """Whether this ONNX Runtime, on the CPU at ``optimization``, keeps a Cast to FP16 and back (what
    ``fp16_emulation``'s "cast" rounding needs): before 1.17 it removed such pairs even with
    optimizations off (microsoft/onnxruntime#8787). Seen, not assumed from the version: a probe model
    rounds an overflowing, a subnormal and an inexact value, which must come back as numpy's float16."""
    from vitdeploy.core import onnx_utils
    from vitdeploy.core.errors import VitdeployError

    onnx = onnx_utils.onnx_module()
    h, T = onnx.helper, onnx.TensorProto
    graph = h.make_graph([h.make_node("Cast", ["x"], ["half"], to=T.FLOAT16), h.make_node("Cast", ["half"], ["y"], to=T.FLOAT)],
                         "lossy_casts", [h.make_tensor_value_info("x", T.FLOAT, [3])], [h.make_tensor_value_info("y", T.FLOAT, [3])])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 13)])
    model.ir_version = 7  # what every runtime that runs opset 13 loads (onnx's default IR can be newer than it reads)
    x = np.array([1.0e5, 1.0e-6, 0.50004], np.float32)
    try:
        with OnnxRuntimeRunner(model.SerializeToString(), optimization=optimization) as runner:
            y = runner.infer({"x": x})["y"]
    except VitdeployError:  # a runtime that cannot run the probe cannot be trusted with the pairs either
        return False
    with np.errstate(over="ignore"):
        return bool(np.array_equal(y, x.astype(np.float16).astype(np.float32)))


class OnnxRuntimeRunner(BaseRunner):
    def __init__(self, model: str | os.PathLike | bytes, providers: tuple[str, ...] = ("cpu",),
                 threads: int | None = None, optimization: str = "all", fp16_rounding: bool = False):
        """``fp16_rounding``: run an FP16 file through ``vitdeploy.core.fp16_emulation`` (accuracy as FP16
        stores it; the CPU provider would compute its FP16 parts in FP32). Slower: not for timing."""
        super().__init__()
        self.model = model
        self.fp16_rounding = fp16_rounding
        self.fp16_emulated = False
        self.providers = tuple(PROVIDER_ALIASES.get(p, p) for p in providers)
        self.threads = threads
        self.optimization = optimization
        self.session = None
        self.name = f"onnxruntime[{','.join(p.replace('ExecutionProvider', '') for p in self.providers)}]"

    def activate(self) -> None:
        ort = require("onnxruntime", "running ONNX models")
        available = ort.get_available_providers()
        missing = [p for p in self.providers if p not in available]
        if missing:
            raise MissingDependencyError(
                f"ONNX Runtime here has no {', '.join(missing)} (available: {', '.join(available)}); "
                "install onnxruntime-gpu (or JetPack's onnxruntime wheel) for CUDA/TensorRT providers"
            )
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if self.threads:
            opts.intra_op_num_threads = self.threads
            opts.inter_op_num_threads = 1
        opts.graph_optimization_level = {
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        }[self.optimization]
        if isinstance(self.model, (str, os.PathLike)) and not Path(self.model).exists():
            raise InputError(f"ONNX model {self.model} not found")
        try:
            src = self.model if isinstance(self.model, bytes) else str(self.model)
            if self.fp16_rounding:
                src = self._fp16_rounded(src)
            if any(p != "CPUExecutionProvider" for p in self.providers) and hasattr(ort, "preload_dlls"):
                ort.preload_dlls()  # onnxruntime-gpu >= 1.21: CUDA/cuDNN from the nvidia-* wheels, if installed
            with warnings.catch_warnings():  # a provider it lacks is a UserWarning: the check below says it once
                warnings.simplefilter("ignore")
                self.session = ort.InferenceSession(src, sess_options=opts, providers=list(self.providers))
        except Exception as exc:  # ORT raises its own exception types for invalid graphs
            raise InputError(f"ONNX Runtime cannot load {self._label()}: {str(exc).splitlines()[0]}") from exc
        # ORT falls back to the next provider when one fails to load (CUDA libraries missing, say):
        # running on the CPU what the user asked to run on the GPU would be a silent change
        running = self.session.get_providers()
        if self.providers[0] not in running:
            self.session = None
            raise MissingDependencyError(
                f"ONNX Runtime could not start its {self.providers[0]} (it would run on {', '.join(running)}): "
                "the CUDA/cuDNN libraries it needs are missing; pip install 'onnxruntime-gpu[cuda,cudnn]'")
        self.is_active = True

    def _fp16_rounded(self, src: str | bytes) -> str | bytes:
        from vitdeploy.core import fp16_emulation, onnx_utils

        onnx = onnx_utils.onnx_module()
        model = onnx.load_from_string(src) if isinstance(src, bytes) else onnx_utils.load(src)
        if not fp16_emulation.has_fp16(model):
            return src
        self.fp16_emulated = True
        rounding = "cast" if keeps_lossy_casts(self.optimization) else "veltkamp"
        return fp16_emulation.emulate_fp16(model, rounding).SerializeToString()

    def _label(self) -> str:
        return "the model" if isinstance(self.model, bytes) else str(self.model)

    def deactivate(self) -> None:
        self.session = None
        super().deactivate()

    def input_metadata(self) -> list[TensorMeta]:
        assert self.session is not None, "activate() first"
        return [
            TensorMeta(i.name, np.dtype(_ORT_TYPES.get(i.type, np.float32)),
                       tuple(d if isinstance(d, int) else None for d in i.shape))
            for i in self.session.get_inputs()
        ]

    def output_names(self) -> list[str]:
        assert self.session is not None, "activate() first"
        return [o.name for o in self.session.get_outputs()]

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        assert self.session is not None, "activate() first"
        try:
            outs = self.session.run(None, feed)
        except Exception as exc:  # ORT's own exception types: wrong shapes/dtypes, kernel failures
            msg = " ".join(str(exc).split())
            raise InputError(f"ONNX Runtime rejected the input for {self._label()}: {msg[:300]}") from exc
        return dict(zip(self.output_names(), outs))
