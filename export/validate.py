"""Parity of an ONNX model against its PyTorch reference, on seeded inputs."""

from __future__ import annotations


from vitdeploy.core.compare import Comparison, Thresholds, assert_close, seeded_inputs
from vitdeploy.core.errors import ShapeMismatchError
from vitdeploy.runners.ort import OnnxRuntimeRunner
from vitdeploy.runners.torch_runner import TorchRunner


def validate_against_torch(onnx_model: bytes, reference, input_shape: tuple[int, ...], batches: list[int],
                           thresholds: Thresholds, seed: int, what: str) -> dict[int, Comparison]:
    """Run ``onnx_model`` (serialized) in ONNX Runtime CPU and ``reference`` in PyTorch; compare per batch.

    Raises ShapeMismatchError / ValueMismatchError (with the figures) on failure.
    """
    results: dict[int, Comparison] = {}
    with OnnxRuntimeRunner(onnx_model) as ort_runner, TorchRunner(reference, input_shape) as torch_runner:
        for b in batches:
            x = seeded_inputs(b, input_shape, seed)
            ref = torch_runner.infer_one(x)
            try:
                out = ort_runner.infer_one(x)
            except Exception as exc:
                raise ShapeMismatchError(f"{what}: ONNX Runtime failed at batch {b}: {str(exc).splitlines()[0][:200]}") from exc
            if out.shape != ref.shape:
                raise ShapeMismatchError(f"{what}: output shape {out.shape} at batch {b}, PyTorch gives {ref.shape}")
            results[b] = assert_close(ref, out, thresholds, f"{what} at batch {b}")
    return results
