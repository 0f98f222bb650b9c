"""The engine manifest (OUT.json beside OUT.engine): what one build produced, from what, and how.

build_engine gathers an EngineRecord while it builds; engine_manifest turns it into the manifest
dict (vitdeploy.core.io.new_manifest); the build stage adds the timings and steps and writes it.
The parent ONNX's manifest is read typed (vitdeploy.core.manifest.Manifest).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vitdeploy.core.io import new_manifest, sha256_file
from vitdeploy.core.manifest import EngineCalibration
from vitdeploy.core.onnx_info import OnnxInfo
from vitdeploy.engine.config import BuildPlan, Request
from vitdeploy.trt import layers as L
from vitdeploy.trt.version import TrtVersion


@dataclass(frozen=True)
class EngineRecord:
    """One build, as the manifest records it."""

    out: Path  # the engine file
    request: Request  # the resolved request: batch range, --calib source
    bplan: BuildPlan  # precision, strong typing, network flags
    version: TrtVersion  # the TensorRT that built it
    onnx: OnnxInfo  # the ONNX given to build-engine
    built_onnx: OnnxInfo  # the ONNX TensorRT built: ``onnx``, or the precision pass's output
    calib_cache: Path | None  # the legacy calibration cache, when the implicit calibrator was used
    precision_pass: dict | None  # what the precision pass did (None: no pass)
    gpu: dict | None
    jetson: dict | None
    options: dict[str, Any]  # the builder options (vitdeploy.engine.builder.configure), "profile" included
    notes: list[str]
    layers: L.LayerSummary  # per-layer precisions read by the engine inspector
    io: list[dict[str, Any]]  # the engine's I/O tensors
    engine_bytes: int  # the plan's size
    timing_cache: dict | None  # the saved timing cache (path, bytes) or None
    build_seconds: float  # builder.build_serialized_network alone



def engine_manifest(record: EngineRecord) -> dict[str, Any]:
    """The manifest dict of ``record`` (write_manifest adds the engine's sha256)."""
    r = record
    parent = r.built_onnx.manifest or r.onnx.manifest
    options = {k: v for k, v in r.options.items() if k != "profile"}
    m = new_manifest(
        "engine", r.out, **(parent.inherited() if parent else {}),
        precision=r.bplan.precision,
        tensorrt={"version": str(r.version), "strongly_typed": r.bplan.strongly_typed,
                  "network_flags": list(r.bplan.network_flags)},
        gpu=r.gpu, jetson=r.jetson,
        batch=({"min": r.request.batch.min, "opt": r.request.batch.opt, "max": r.request.batch.max}
               if r.request.batch else None),
        profile=r.options["profile"],
        io=r.io,
        build_options=options,
        calibration=_calibration(r),
        parent={"artifact": str(r.built_onnx.path), "sha256": sha256_file(r.built_onnx.path),
                "precision": r.built_onnx.precision},
        source_onnx=(str(r.onnx.path) if r.built_onnx.path != r.onnx.path else None),
        precision_pass=r.precision_pass,
        timing_cache=r.timing_cache,
        layers=r.layers.to_dict(),
        engine_bytes=r.engine_bytes,
        notes=r.notes,
    )
    m["build_seconds"] = r.build_seconds
    return m


def _calibration(r: EngineRecord) -> dict[str, Any] | None:
    """INT8 engines: the calibration data (Q/DQ pass) or the legacy calibration cache."""
    if r.bplan.precision != "int8":
        return None
    built = r.built_onnx.manifest
    data = built.calibration_data if built else None
    q = built.quantization if built else None
    calibration = EngineCalibration.from_json({"path": r.request.source, "hash": data.hash if data else None,
                                               "method": q.method if q else None,
                                               "samples": data.calibration_samples if data else None})
    if r.calib_cache is not None:
        calibration = dataclasses.replace(calibration, path="legacy-calibrator", cache=str(r.calib_cache),
                                          hash=sha256_file(r.calib_cache),
                                          method="TensorRT implicit INT8 (cache from vitdeploy quantize)")
    return calibration.to_json()
