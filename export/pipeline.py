"""`vitdeploy export`: checkpoint -> ONNX, validated against PyTorch, simplified, checked for TensorRT.

Steps: resolve the model -> deploy-ready copy -> export (per-family exporter choice; the
opset written is read back) -> checker + shape inference -> parity vs the untouched PyTorch
model at the smallest and largest batch -> simplify (onnxsim, onnxslim fallback; kept only if
not bigger and still in parity) -> forbidden-op and TensorRT readiness checks -> atomic write of
the .onnx and its manifest. Nothing is written unless every step passed.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vitdeploy.core import onnx_utils
from vitdeploy.trt import check as trtcheck
from vitdeploy.core.compare import Comparison
from vitdeploy.core.errors import CompatibilityError, ExportError, ParityError
from vitdeploy.export import patches, simplify
from vitdeploy.trt import rewrite
from vitdeploy.export.config import DEFAULT_BATCH, ExportConfig
from vitdeploy.export.family import family_config
from vitdeploy.export.source import ModelSource, resolve
from vitdeploy.export.torch_onnx import INPUT_NAME, OUTPUT_NAME, export_onnx
from vitdeploy.export.validate import validate_against_torch
from vitdeploy.core.io import cannot_write, check_artifact_output, disk_full, new_manifest, write_bytes_atomic, write_manifest
from vitdeploy.core.steps import Steps


@dataclass
class ExportResult:
    onnx_path: Path
    manifest_path: Path
    manifest: dict[str, Any]
    findings: dict[str, list[trtcheck.Finding]] = field(default_factory=dict)


def default_output(source_name: str) -> Path:
    return Path(f"{source_name}.onnx")


def _figures(results: dict[int, Comparison]) -> dict[str, dict]:
    return {str(b): c.to_dict() for b, c in results.items()}


def export(config: ExportConfig, steps: Steps | None = None) -> ExportResult:
    steps = steps or Steps()
    with steps.step("load model"):
        source = resolve(config)
    # the batch asked for, else the one a source fixes (a static .pt2 program; its note says so), else 1:1:8
    config = dataclasses.replace(config, batch=config.batch or source.batch or DEFAULT_BATCH)
    out = Path(config.output) if config.output else default_output(source.name)
    check_artifact_output(out, config.force)

    fam = family_config(source.family)
    notes = list(source.notes)
    batches = sorted({config.batch.min, config.batch.max})
    input_shape = source.input_shape

    with steps.step("deploy-ready copy"):
        # Export always works on a copy: the dynamo exporter can corrupt the module it traces
        # (ConViT), and the untouched original stays the parity reference.
        if source.exported_program is None:
            from vitdeploy.models.deploy import deploy_info, make_deploy_ready

            exportable = make_deploy_ready(source.module)
            deploy = deploy_info(exportable)
        else:
            exportable, deploy = None, {}
    example_batch = max(config.batch.opt, 2) if config.batch.dynamic else config.batch.opt
    example = torch.from_numpy(
        np.random.default_rng(config.seed).standard_normal((example_batch, *input_shape), dtype=np.float32))

    with tempfile.TemporaryDirectory(prefix=".vitdeploy-export-", dir=out.parent if str(out.parent) else ".") as tmp:
        raw_path = Path(tmp) / "raw.onnx"
        exporters = [config.exporter] if config.exporter != "auto" else _auto_order(fam.preferred_exporter, source)
        run, failures = None, []
        for name in exporters:
            with steps.step(f"export ({name})") as rec:
                try:
                    with patches.applied() as applied_patches:
                        run = export_onnx(exportable, example, raw_path, opset=config.opset, batch=config.batch,
                                          exporter=name, exported_program=source.exported_program)
                    break
                except ExportError as exc:
                    full = disk_full(exc)
                    if full is not None:  # the disk, not the exporter: another exporter would fail alike
                        raise cannot_write(out, full) from exc
                    if config.exporter != "auto" or name == exporters[-1]:
                        detail = "; ".join(failures + [str(exc)])
                        raise ExportError(detail if failures else str(exc)) from exc
                    failures.append(str(exc))
                    rec.status, rec.detail = "failed", str(exc)[:200]
                    notes.append(f"{name} exporter failed ({exc}); fell back to the next exporter")
        assert run is not None

        with steps.step("check graph"):
            raw = onnx_utils.load(raw_path)
            onnx_utils.check_model(raw)
            raw_bytes = raw.SerializeToString()
            nodes_raw = onnx_utils.node_count(raw)
        with steps.step("parity (raw)"):
            parity_raw = validate_against_torch(raw_bytes, source.module, input_shape, batches, config.thresholds,
                                                config.seed, "exported ONNX vs PyTorch")

        final, final_bytes, parity_final = raw, raw_bytes, parity_raw
        simplify_info: dict[str, Any] = {"requested": config.simplify, "used": None, "attempts": []}
        for tool in simplify.order(config.simplify):
            with steps.step(f"simplify ({tool})") as rec:
                attempt = {"tool": tool, "nodes_before": nodes_raw}
                try:
                    candidate = simplify.SIMPLIFIERS[tool](raw)
                    onnx_utils.check_model(candidate)
                    attempt["nodes_after"] = onnx_utils.node_count(candidate)
                    if attempt["nodes_after"] > attempt["nodes_before"]:
                        raise ExportError(f"{tool} made the graph bigger ({attempt['nodes_before']} -> {attempt['nodes_after']} nodes)")
                    cand_bytes = candidate.SerializeToString()
                    parity = validate_against_torch(cand_bytes, source.module, input_shape, batches, config.thresholds,
                                                    config.seed, f"{tool}-simplified ONNX vs PyTorch")
                except (ExportError, ParityError) as exc:
                    attempt["rejected"] = str(exc)[:300]
                    simplify_info["attempts"].append(attempt)
                    rec.status, rec.detail = "failed", str(exc)[:200]
                    notes.append(f"{tool} result rejected: {str(exc)[:200]}")
                    continue
                simplify_info["attempts"].append(attempt)
                simplify_info["used"] = tool
                final, final_bytes, parity_final = candidate, cand_bytes, parity
                break
        if config.simplify != "none" and simplify_info["used"] is None:
            notes.append("no simplifier result kept: the raw export is written")

        graph_passes: list[str] = []
        lacking = rewrite.targets_without("LayerNormalization", config.targets)
        has_layernorm = "LayerNormalization" in onnx_utils.op_histogram(final)
        if has_layernorm and lacking and not config.decompose_layernorm:
            notes.append(f"LayerNormalization kept as one op: {', '.join(lacking)} has no importer for it, and "
                         "`vitdeploy build-engine` decomposes it there before parsing (for trtexec on "
                         f"{', '.join(lacking)}, export with --decompose-layernorm)")
        if has_layernorm and config.decompose_layernorm:
            with steps.step("decompose LayerNorm"):
                n = rewrite.decompose_layernorm(final)
                onnx_utils.check_model(final)
                final_bytes = final.SerializeToString()
                parity_final = validate_against_torch(final_bytes, source.module, input_shape, batches,
                                                      config.thresholds, config.seed, "LayerNorm-decomposed ONNX vs PyTorch")
            graph_passes.append("decompose_layernorm")
            notes.append(f"{n} LayerNormalization node(s) decomposed into primitive ops (--decompose-layernorm): "
                         "what trtexec on TensorRT 8.5 needs; TensorRT >= 8.6 would take the fused op")

        histogram = onnx_utils.op_histogram(final)
        with steps.step("TensorRT readiness"):
            forbidden = sorted(set(histogram) & fam.forbidden_ops)
            if forbidden:
                raise ExportError(f"the deploy-ready {source.name} graph still contains {', '.join(forbidden)}: "
                                  "a deploy rewrite regressed (please report)")
            findings = trtcheck.check(final, config.targets)
            bad = {t: fs for t, fs in trtcheck.blocking(findings).items() if fs}
            if config.strict_check and bad:
                first = next(f for fs in bad.values() for f in fs)
                total = sum(len(fs) for fs in bad.values())
                raise CompatibilityError(f"{total} TensorRT readiness finding(s) with --strict, e.g. [{first.target}] {first.message}")

        manifest = new_manifest(
            "onnx", out,
            model={"name": source.name, "source": source.kind, "family": source.family, "target": config.model,
                   "num_classes": source.num_classes},
            precision="fp32",
            input={"name": INPUT_NAME, "shape": [None if config.batch.dynamic else config.batch.opt, *input_shape],
                   "dtype": "float32", "dynamic_axes": {"0": "batch"} if config.batch.dynamic else {}},
            output={"name": OUTPUT_NAME},
            batch={"min": config.batch.min, "opt": config.batch.opt, "max": config.batch.max},
            preprocessing=source.preprocessing.to_manifest(),
            checkpoint=source.checkpoint,
            export={"exporter": run.exporter, "exporter_requested": config.exporter, "exporter_why": fam.why,
                    "opset_requested": config.opset, "opset": run.opset_written, "seconds": round(run.seconds, 3),
                    "torch": torch.__version__, "onnx": onnx_utils.onnx_module().__version__,
                    "patches": applied_patches, "messages": run.messages},
            deploy_form=deploy,
            quantization_hints=fam.quantization_hints.to_json(),
            simplify=simplify_info,
            passes=[p for p in ["deploy_form" if exportable is not None else None, simplify_info["used"]] if p] + graph_passes,
            parity={"reference": "pytorch (untouched original module, eval)",
                    "thresholds": {k: v for k, v in config.thresholds.__dict__.items()},
                    "raw": _figures(parity_raw), "final": _figures(parity_final)},
            trt_readiness=trtcheck.summarize(findings),
            graph={"nodes_raw": nodes_raw, "nodes": onnx_utils.node_count(final), "ops": histogram,
                   **onnx_utils.io_summary(final)},
            notes=notes,
        )
        with steps.step("write"):
            write_bytes_atomic(out, final_bytes)
            manifest["file_bytes"] = os.path.getsize(out)
            manifest["steps"] = steps.to_list()
            try:
                mpath = write_manifest(out, manifest)
            except BaseException:
                out.unlink(missing_ok=True)  # an artifact without its manifest is half-written
                raise
    return ExportResult(out, mpath, manifest, findings)


def _auto_order(preferred: str, source: ModelSource) -> list[str]:
    if source.exported_program is not None:
        return ["dynamo"]
    other = "dynamo" if preferred == "legacy" else "legacy"
    return [preferred, other]
