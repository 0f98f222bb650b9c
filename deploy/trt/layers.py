"""Per-layer precision from the engine inspector, and the "requested precision is absent" check.

``IEngineInspector.get_engine_information(LayerInformationFormat.JSON)`` on an engine built with
``ProfilingVerbosity.DETAILED`` gives ``{"Layers": [{"Name", "LayerType", "Inputs": [{"Name",
"Format/Datatype", ...}], "Outputs": [...], ...}], "Bindings": [...]}``. The datatype is part of
a free-text format string ("Row major linear FP32", "Half", "Thirty-two wide channel vectorized
row major Int8 format", "Row major linear BFloat16"): a layer's precision is the lowest float-like
type among its inputs and outputs (an INT8 convolution reads INT8 and may write FP32).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from vitdeploy.core.errors import EngineBuildError

# Checked in this order: "BFloat16" must not read as "Float", "FP8" not as anything else.
_DTYPE_PATTERNS: tuple[tuple[str, re.Pattern], ...] = (
    ("int8", re.compile(r"\bint8\b", re.I)),
    ("fp8", re.compile(r"\bfp8\b|\be4m3\b", re.I)),
    ("bf16", re.compile(r"\bbf16\b|\bbfloat16\b", re.I)),
    ("fp16", re.compile(r"\bfp16\b|\bhalf\b|\bfloat16\b", re.I)),
    ("fp32", re.compile(r"\bfp32\b|\bfloat\b|\bfloat32\b", re.I)),
)
RANK = {"int8": 0, "fp8": 1, "fp16": 2, "bf16": 2, "fp32": 3}


def dtype_of(format_text: str) -> str | None:
    for name, pattern in _DTYPE_PATTERNS:
        if pattern.search(format_text or ""):
            return name
    return None


@dataclass
class LayerSummary:
    layers: list[dict[str, Any]] = field(default_factory=list)  # {"name", "type", "precision", "dtypes"}
    detailed: bool = True  # False when the inspector gave names only (no formats to read)

    @property
    def counts(self) -> dict[str, int]:
        return dict(Counter(layer["precision"] or "other" for layer in self.layers).most_common())

    def has(self, precision: str) -> bool:
        return any(precision in layer["dtypes"] for layer in self.layers)

    def to_dict(self, max_layers: int = 1000) -> dict[str, Any]:
        return {"count": len(self.layers), "precisions": self.counts, "detailed": self.detailed,
                "layers": self.layers[:max_layers], "truncated": len(self.layers) > max_layers}


def summarize(info: str | dict) -> LayerSummary:
    data = json.loads(info) if isinstance(info, str) else info
    raw = data.get("Layers", []) if isinstance(data, dict) else []
    summary = LayerSummary()
    for entry in raw:
        if isinstance(entry, str):  # LAYER_NAMES_ONLY verbosity
            summary.detailed = False
            summary.layers.append({"name": entry, "type": None, "precision": None, "dtypes": []})
            continue
        dtypes: list[str] = []
        for port in list(entry.get("Inputs", [])) + list(entry.get("Outputs", [])):
            d = dtype_of(str(port.get("Format/Datatype", ""))) if isinstance(port, dict) else None
            if d and d not in dtypes:
                dtypes.append(d)
        precision = min(dtypes, key=RANK.__getitem__) if dtypes else None
        summary.layers.append({"name": entry.get("Name"), "type": entry.get("LayerType"), "precision": precision,
                               "dtypes": dtypes})
    if summary.layers and not any(layer["dtypes"] for layer in summary.layers):
        summary.detailed = False
    return summary


def check_precision_present(summary: LayerSummary, precision: str) -> str | None:
    """Raise EngineBuildError when ``precision`` (fp16/int8) appears in no layer; a note when unknowable."""
    if precision == "fp32":
        return None
    if not summary.detailed:
        return f"could not verify {precision.upper()} layers: the engine inspector gave no per-layer formats"
    if not summary.has(precision):
        raise EngineBuildError(
            f"{precision.upper()} was requested but no layer of the built engine runs in {precision.upper()} "
            f"(layers by precision: {summary.counts}); the engine was not written. TensorRT ignored the precision: "
            + ("on TensorRT 10/11 build the FP16 ONNX (`vitdeploy quantize --fp16`) strongly typed"
               if precision == "fp16" else "check that the Q/DQ nodes reached the network (`vitdeploy quantize --int8`)"))
    return None
