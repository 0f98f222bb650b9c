"""From what the user names (an .onnx, an .engine, or a zoo model) to a runner.

    runner = open_runner("deit.int8.onnx")                 # ONNX Runtime, CPU (the default)
    runner = open_runner("deit.onnx", backend="ort-cuda")
    runner = open_runner("deit.engine")                    # TensorRT
    runner = open_runner("deit_tiny_patch16_224", checkpoint="deit.pth")   # PyTorch reference
    runner = open_runner("deit_tiny_patch16_224", backend="torch-cuda")  # PyTorch eager on the GPU
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vitdeploy.core.errors import InputError, UsageError
from vitdeploy.core import manifest as manifests
from vitdeploy.core.manifest import Manifest
from vitdeploy.runners.base import BaseRunner

BACKENDS = ("torch", "torch-cuda", "ort-cpu", "ort-cuda", "ort-trt", "trt")
_TORCH_DEVICES = {"torch": "cpu", "torch-cuda": "cuda"}
ONNX_SUFFIXES = (".onnx",)
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
_ORT_PROVIDERS = {"ort-cpu": ("cpu",), "ort-cuda": ("cuda", "cpu"), "ort-trt": ("trt", "cuda", "cpu")}


@dataclass
class Artifact:
    """What was named, its kind and (from its manifest) precision and preprocessing."""

    spec: str
    kind: str  # "onnx" | "engine" | "torch"
    path: Path | None
    manifest: Manifest | None = None  # a JSON dict given here is read into a Manifest
    checkpoint: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.manifest = Manifest.coerce(self.manifest)

    @property
    def label(self) -> str:
        return self.path.name if self.path else self.spec

    @property
    def precision(self) -> str:
        """The manifest's precision; for an ONNX file without one (copied or renamed away from it),
        read from its graph; else fp32."""
        if self.manifest and self.manifest.precision:
            return str(self.manifest.precision)
        if self.kind == "onnx" and self.path is not None:
            return graph_precision(str(self.path), self.path.stat().st_mtime_ns)
        return "fp32"

    @property
    def batch_range(self) -> tuple[int, int] | None:
        """(min, max) batch from the manifest: a dynamic export's range, an engine's profile; else None."""
        batch = self.manifest.batch if self.manifest else None
        if batch and batch.max:
            return int(1 if batch.min is None else batch.min), int(batch.max)
        return None

    @property
    def default_backend(self) -> str:
        return {"onnx": "ort-cpu", "engine": "trt", "torch": "torch"}[self.kind]


@functools.lru_cache(maxsize=32)
def graph_precision(path: str, mtime_ns: int) -> str:
    """int8 when the graph has Q/DQ, fp16 when it holds FP16 tensors, else fp32 (the builder's own
    reading of a file, vitdeploy.core.onnx_info.inspect_onnx); cached while the file is unchanged."""
    from vitdeploy.core.onnx_info import inspect_onnx

    return inspect_onnx(Path(path)).precision


def resolve_artifact(spec: str | os.PathLike, checkpoint: str | os.PathLike | None = None) -> Artifact:
    text = str(spec)
    path = Path(text)
    suffix = path.suffix.lower()
    if suffix in ONNX_SUFFIXES + ENGINE_SUFFIXES:
        if not path.is_file():
            raise InputError(f"{path} not found")
        kind = "onnx" if suffix in ONNX_SUFFIXES else "engine"
        return Artifact(text, kind, path, manifests.read(path))
    if path.exists() or suffix:
        raise InputError(f"unknown artifact type {text!r}: give an .onnx file, an .engine/.plan file, or a zoo model name")
    from vitdeploy.core.deps import require

    require("torch", f"running the zoo model {text!r} in PyTorch")
    from vitdeploy.models import get_spec

    spec_ = get_spec(text)  # UnknownModelError for a typo
    pre = spec_.preprocessing().to_manifest()
    ckpt = Path(checkpoint) if checkpoint else None
    return Artifact(text, "torch", None, {"precision": "fp32", "preprocessing": pre,
                                          "model": {"name": text, "family": spec_.family}}, ckpt)


def open_runner(artifact: Artifact | str | os.PathLike, backend: str | None = None, threads: int | None = None,
                device: str = "cpu", fp16_rounding: bool = False) -> BaseRunner:
    """``fp16_rounding`` (accuracy, not timing): ONNX Runtime on the CPU runs an FP16 file with its
    FP16 parts rounded as FP16 stores them, not silently in FP32 (see vitdeploy.core.fp16_emulation)."""
    art = artifact if isinstance(artifact, Artifact) else resolve_artifact(artifact)
    backend = backend or art.default_backend
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    if art.kind == "onnx":
        if backend not in _ORT_PROVIDERS:
            raise UsageError(f"{art.label} is an ONNX file: use an ort-* backend, or build an engine for trt")
        from vitdeploy.runners.ort import OnnxRuntimeRunner

        runner = OnnxRuntimeRunner(art.path, providers=_ORT_PROVIDERS[backend], threads=threads,
                                   fp16_rounding=fp16_rounding and backend == "ort-cpu")
    elif art.kind == "engine":
        if backend != "trt":
            raise UsageError(f"{art.label} is a TensorRT engine: only the trt backend runs it")
        from vitdeploy.runners.trt_runner import TensorRTRunner

        runner = TensorRTRunner(art.path)
    else:
        if backend not in _TORCH_DEVICES:
            raise UsageError(f"{art.spec} is a PyTorch model: only the torch and torch-cuda backends run it "
                             "(export it for ONNX Runtime)")
        if device == "cpu":
            device = _TORCH_DEVICES[backend]
        from vitdeploy.models import create_model
        from vitdeploy.runners.torch_runner import CudaTorchRunner, TorchRunner

        model = create_model(art.spec, checkpoint=art.checkpoint)
        runner_type = TorchRunner if device == "cpu" else CudaTorchRunner
        runner = runner_type(model, tuple(art.manifest.preprocessing.input_size), threads=threads, device=device)
    runner.artifact = art  # type: ignore[attr-defined]
    runner.backend = backend  # type: ignore[attr-defined]
    return runner
