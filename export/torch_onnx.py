"""Run one torch ONNX exporter (legacy TorchScript or dynamo) and check what it wrote.

The exporter's chatter (deprecation warnings, dynamo's logging) is captured and returned,
not printed, so it can go into the manifest.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vitdeploy import onnx_utils
from vitdeploy.errors import ExportError
from vitdeploy.export.config import BatchRange

INPUT_NAME = "input"
OUTPUT_NAME = "logits"


class OpsetMismatchError(ExportError):
    """The exporter wrote another opset than the one asked for."""


@dataclass
class ExportRun:
    exporter: str
    opset_written: int
    seconds: float
    messages: list[str] = field(default_factory=list)


class _Collect(logging.Handler):
    def __init__(self, sink: list[str]):
        super().__init__(logging.WARNING)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(f"{record.name}: {record.getMessage()}"[:500])


@contextlib.contextmanager
def _captured(sink: list[str]):
    handler = _Collect(sink)
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript", "torch")]
    saved = [(lg, lg.propagate, lg.level) for lg in loggers]
    out, err = io.StringIO(), io.StringIO()
    try:
        for lg in loggers:
            lg.addHandler(handler)
            lg.propagate = False
        with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            warnings.simplefilter("always")
            yield
        sink.extend(f"warning: {w.message}"[:500] for w in caught)
    finally:
        for lg, prop, level in saved:
            lg.removeHandler(handler)
            lg.propagate = prop
            lg.setLevel(level)
        sink.extend(line[:500] for line in (out.getvalue() + err.getvalue()).splitlines() if line.strip())


def _dedupe(msgs: list[str], limit: int = 40) -> list[str]:
    seen, out = set(), []
    for m in msgs:
        key = m[:160]
        if key not in seen:
            seen.add(key)
            out.append(m)
    return out[:limit]


def export_onnx(module: torch.nn.Module | None, example: torch.Tensor, path: Path, *, opset: int, batch: BatchRange,
                exporter: str, exported_program=None) -> ExportRun:
    """Export ``module`` (or ``exported_program``) to ``path`` with one exporter; verify the opset."""
    messages: list[str] = []
    start = time.perf_counter()
    try:
        with _captured(messages), torch.inference_mode(False), torch.no_grad():
            if exporter == "legacy":
                if exported_program is not None:
                    raise ExportError("the legacy exporter cannot export a saved torch.export program; use --exporter dynamo")
                torch.onnx.export(
                    module, (example,), str(path), opset_version=opset, dynamo=False, do_constant_folding=True,
                    input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                    dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if batch.dynamic else None,
                )
            elif exporter == "dynamo":
                if exported_program is not None:
                    program = exported_program
                    torch.onnx.export(program, (example,), str(path), opset_version=opset, dynamo=True,
                                      input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], optimize=True)
                else:
                    shapes = ({0: torch.export.Dim("batch", min=1, max=max(batch.max, 2) * 64)},) if batch.dynamic else None
                    torch.onnx.export(module, (example,), str(path), opset_version=opset, dynamo=True,
                                      input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_shapes=shapes,
                                      optimize=True)
            else:  # pragma: no cover - config validation prevents this
                raise ExportError(f"unknown exporter {exporter}")
    except ExportError:
        raise
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"{exporter} exporter failed: {first[:300]}") from exc
    seconds = time.perf_counter() - start
    if not path.exists():
        raise ExportError(f"{exporter} exporter wrote no file")
    model = onnx_utils.load(path, load_external_data=False)
    written = onnx_utils.opset_of(model)
    if written != opset:
        raise OpsetMismatchError(f"asked for opset {opset} but the {exporter} exporter wrote opset {written}")
    return ExportRun(exporter, written, seconds, _dedupe(messages))
