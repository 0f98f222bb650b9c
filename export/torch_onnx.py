"""Run one torch ONNX exporter (legacy TorchScript or dynamo) and check what it wrote.

The exporter's chatter (warnings, library loggers, prints, C++ writes to the file descriptors)
is captured and returned, not printed, so it can go into the manifest (see ``captured``).
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import logging
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vitdeploy.core import onnx_utils
from vitdeploy.core.errors import ExportError
from vitdeploy.core.batch import BatchRange

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


# Top-level loggers of the libraries the exporters drive. torch gives several of its loggers
# (torch, torch.onnx, torch._dynamo...) their own handlers on the real stderr, so taking over
# only the top-level one is not enough: every existing logger under these names is taken over.
LIBRARY_LOGGERS = ("torch", "onnxscript", "onnx_ir", "onnx", "onnxruntime", "onnxsim", "onnxslim")


@contextlib.contextmanager
def _loggers_to(handler: logging.Handler) -> Iterator[None]:
    names = {n for n in logging.root.manager.loggerDict if n.split(".")[0] in LIBRARY_LOGGERS}
    loggers = [logging.getLogger(n) for n in sorted(names | set(LIBRARY_LOGGERS))]
    saved = [(lg, lg.handlers[:], lg.propagate) for lg in loggers]
    try:
        for lg in loggers:  # records bubble up to the top-level logger, and stop at it
            top = lg.name in LIBRARY_LOGGERS
            lg.handlers = [handler] if top else []
            lg.propagate = not top
        yield
    finally:
        for lg, handlers, propagate in saved:
            lg.handlers, lg.propagate = handlers, propagate


@contextlib.contextmanager
def _native_output_to(sink: list[str]) -> Iterator[None]:
    """C++ code writes to file descriptors 1 and 2 directly, past sys.stdout/sys.stderr: the
    TorchScript exporter dumps its whole IR graph there when it fails (torch leaves its ONNX log
    on during every export)."""
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        saved = [os.dup(1), os.dup(2)]
    except OSError:  # no usable descriptors (a detached process): nothing to take over
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        try:
            os.dup2(tmp.fileno(), 1)
            os.dup2(tmp.fileno(), 2)
            yield
        finally:
            with contextlib.suppress(OSError, AttributeError, TypeError):  # C stdio buffers (std::cout) first
                ctypes.CDLL(None).fflush(None)
            for fd, copy in zip((1, 2), saved):
                os.dup2(copy, fd)
                os.close(copy)
            tmp.seek(0)
            sink.extend(line[:500] for line in tmp.read().decode(errors="replace").splitlines() if line.strip())


@contextlib.contextmanager
def captured(sink: list[str]) -> Iterator[None]:
    """Collect, instead of showing, what torch's exporters and their libraries say while exporting.

    They talk on four channels, each taken over for the duration and restored: warnings (the
    legacy exporter's DeprecationWarning), loggers ("W1129 ... torchvision is not installed",
    onnxscript's version converter), print() (dynamo's "[torch.onnx] ..." progress) and C++
    writes to the file descriptors. The user sees vitdeploy's own lines; the manifest keeps these.
    """
    out, err = io.StringIO(), io.StringIO()
    with _native_output_to(sink), _loggers_to(_Collect(sink)), warnings.catch_warnings(record=True) as caught, \
            contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        warnings.simplefilter("always")
        try:
            yield
        finally:
            sink.extend(f"warning: {w.message}"[:500] for w in caught)
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
        with captured(messages), torch.inference_mode(False), torch.no_grad():
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
        raise OpsetMismatchError(f"asked for opset {opset} but the {exporter} exporter wrote opset {written}; "
                                 f"pass --opset {written} if every --trt-version parser takes it (vitdeploy check)")
    return ExportRun(exporter, written, seconds, _dedupe(messages))
