"""Typed options of `vitdeploy export`; the CLI builds one, the pipeline reads it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from vitdeploy.core.batch import DEFAULT_BATCH, BatchRange  # noqa: F401  (part of vitdeploy.export's API)
from vitdeploy.core.compare import Thresholds
from vitdeploy.core.errors import UsageError
from vitdeploy.core.preprocessing import Preprocessing  # noqa: F401  (part of vitdeploy.export's API)

EXPORTERS = ("auto", "legacy", "dynamo")
SIMPLIFIERS = ("onnxsim", "onnxslim", "none")
MIN_OPSET = 17


@dataclass(frozen=True)
class ExportConfig:
    model: str
    checkpoint: Path | None = None
    output: Path | None = None
    batch: BatchRange | None = None  # None: nothing asked (DEFAULT_BATCH, or a static program's own batch)
    opset: int = MIN_OPSET
    exporter: str = "auto"
    simplify: str = "onnxsim"
    targets: tuple[str, ...] = ("trt8.5", "trt10", "trt11")
    strict_check: bool = False
    # Write LayerNorm as primitive ops (for trtexec on TensorRT 8.5). Off by default: TensorRT >= 8.6
    # imports LayerNormalization as one layer kept FP32, and build-engine decomposes it for 8.5 itself.
    decompose_layernorm: bool = False
    strict_checkpoint: bool = True
    force: bool = False
    thresholds: Thresholds = field(default_factory=Thresholds)
    # What is known of the input besides the zoo spec's (options: --input-size, --mean, --std): on top
    # of a zoo model's own, the whole of it for models outside the zoo (ImageNet's defaults for the rest).
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    num_classes: int | None = None  # classifier size (a fine-tuned checkpoint); None: the spec's / the model's
    seed: int = 0
    validation_samples: int | None = None  # None: the batch range's min and max

    def __post_init__(self) -> None:
        if self.exporter not in EXPORTERS:
            raise UsageError(f"unknown exporter {self.exporter!r}; choose from {', '.join(EXPORTERS)}")
        if self.simplify not in SIMPLIFIERS:
            raise UsageError(f"unknown simplifier {self.simplify!r}; choose from {', '.join(SIMPLIFIERS)}")
        from vitdeploy.trt.check import known_targets  # stdlib tables: checked before any export work

        unknown = [t for t in self.targets if t not in known_targets()]
        if unknown:
            raise UsageError(f"unknown --trt-version {', '.join(map(repr, unknown))}; known: {', '.join(known_targets())}")
        if self.opset < MIN_OPSET:
            raise UsageError(f"opset {self.opset} is below {MIN_OPSET} (LayerNormalization and TensorRT-friendly ops need 17+)")
        import onnx

        if self.opset > onnx.defs.onnx_opset_version():
            raise UsageError(f"opset {self.opset} is above what the installed onnx {onnx.__version__} knows "
                             f"({onnx.defs.onnx_opset_version()})")
