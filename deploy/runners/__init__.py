"""Runners: one small protocol over PyTorch, ONNX Runtime and TensorRT.

    with OnnxRuntimeRunner("model.onnx") as r:
        outputs = r.infer({"input": batch})

Each runner imports its backend lazily, so importing this package needs neither torch nor
onnxruntime nor tensorrt.
"""

from vitdeploy.runners.base import BaseRunner, Runner, TensorMeta, static_batch

__all__ = ["BaseRunner", "Runner", "TensorMeta", "static_batch"]
