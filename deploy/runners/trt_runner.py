"""TensorRT runner: the runner protocol over ``execute_async_v3`` (TensorRT 8.5 to 11).

    with TensorRTRunner("deit_tiny.fp16.engine") as r:
        logits = r.infer_one(batch)

Before TensorRT deserialises anything, the engine's manifest is read and compared with the
running TensorRT version and the GPU's compute capability (vitdeploy.trt.compat): a mismatch is
a one-line CompatibilityError, not a crash inside TensorRT. CUDA memory and the stream go through
libcudart via ctypes (vitdeploy.trt.cuda). Device buffers are sized once for the profile's largest batch;
any batch within the profile runs, others are refused.

For `vitdeploy bench` it also has the optional hooks of vitdeploy.bench: ``timed_infer`` (CUDA
events around copies and execution), ``infer_device_only`` (events around the execution alone,
inputs kept on the device) and ``device_memory_bytes``.
"""

from __future__ import annotations

import sys

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vitdeploy.core.deps import require
from vitdeploy.core.errors import CompatibilityError, InputError, UsageError
from vitdeploy.core import manifest as manifests
from vitdeploy.core.manifest import Manifest
from vitdeploy.runners.base import BaseRunner, TensorMeta
from vitdeploy.trt.compat import check_engine
from vitdeploy.trt.version import version_of


@dataclass
class _Tensor:
    name: str
    is_input: bool
    dtype: np.dtype
    shape: tuple[int, ...]  # -1 marks the dynamic batch axis
    min_shape: tuple[int, ...] | None = None
    max_shape: tuple[int, ...] | None = None
    ptr: int = 0
    nbytes: int = 0


class TensorRTRunner(BaseRunner):
    def __init__(self, engine: str | os.PathLike, trt=None, cuda=None) -> None:
        super().__init__()
        self.engine_path = Path(engine)
        self.name = "tensorrt"
        self._trt = trt
        self._cuda = cuda
        self.notes: list[str] = []
        self.manifest: Manifest | None = None
        self.runtime = self.engine = self.context = self.stream = None
        self.tensors: list[_Tensor] = []
        self.version = None
        self._events = None
        self._staged_key = None

    def activate(self) -> None:
        if not self.engine_path.is_file():
            raise InputError(f"engine {self.engine_path} not found")
        self.manifest = manifests.read(self.engine_path)  # before TensorRT is touched
        trt = self._trt if self._trt is not None else require("tensorrt", "running TensorRT engines")
        version = version_of(trt)
        if self._cuda is None:
            from vitdeploy.trt.cuda import Cuda

            self._cuda = Cuda()
        cuda = self._cuda
        gpu = cuda.device_info()
        self.notes = check_engine(self.manifest, version, gpu, self.engine_path.name)
        self.name = f"tensorrt[{version}]"
        self.version = version

        logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(logger)
        if self.manifest and self.manifest.build_options and self.manifest.build_options.version_compatible:
            runtime.engine_host_code_allowed = True  # the plan carries its own lean runtime
        engine = runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
        if engine is None:
            raise CompatibilityError(
                f"TensorRT {version} cannot load {self.engine_path.name}: it was built by another TensorRT version or "
                f"for another GPU ({gpu.get('name')}, compute capability {gpu.get('compute_capability')}), or is not an "
                "engine; rebuild it here with vitdeploy build-engine")
        context = engine.create_execution_context()
        self.runtime, self.engine, self.context = runtime, engine, context
        self.tensors = self._describe(trt, engine)
        self.stream = cuda.stream()
        try:
            self._allocate(context)
        except BaseException:
            self.deactivate()
            raise
        self.is_active = True

    @staticmethod
    def _describe(trt, engine) -> list[_Tensor]:
        tensors = []
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            shape = tuple(int(d) for d in engine.get_tensor_shape(name))
            t = _Tensor(name, is_input, np.dtype(trt.nptype(engine.get_tensor_dtype(name))), shape)
            if is_input and -1 in shape:
                lo, _, hi = engine.get_tensor_profile_shape(name, 0)
                t.min_shape, t.max_shape = tuple(int(d) for d in lo), tuple(int(d) for d in hi)
            elif is_input:
                t.min_shape = t.max_shape = shape
            tensors.append(t)
        return tensors

    def _allocate(self, context) -> None:
        """Device buffers for the largest shapes the profile allows."""
        for t in self.tensors:
            if t.is_input:
                context.set_input_shape(t.name, t.max_shape)
        for t in self.tensors:
            shape = t.max_shape if t.is_input else tuple(int(d) for d in context.get_tensor_shape(t.name))
            if any(d < 0 for d in shape):
                raise CompatibilityError(f"output {t.name} has a data-dependent shape {shape}: not supported by this runner")
            t.nbytes = int(np.prod(shape)) * t.dtype.itemsize
            t.ptr = self._cuda.malloc(t.nbytes)
            context.set_tensor_address(t.name, t.ptr)

    def deactivate(self) -> None:
        """Free every buffer, event and the stream even when one release fails (a sticky CUDA error
        fails them all); the first failure is raised at the end, unless an error is already on its
        way out (``activate``'s), which it would hide."""
        cuda, failures = self._cuda, []

        def release(fn, *args) -> None:
            try:
                fn(*args)
            except Exception as exc:  # noqa: BLE001 - collected and raised once below
                failures.append(exc)

        for t in self.tensors:
            if t.ptr and cuda is not None:
                release(cuda.free, t.ptr)
            t.ptr = 0
        if self._events is not None and cuda is not None:
            for event in self._events:
                release(cuda.destroy_event, event)
        self._events = self._staged_key = None
        if self.stream is not None and cuda is not None:
            release(cuda.destroy_stream, self.stream)
        self.stream = None
        self.context = self.engine = self.runtime = None
        super().deactivate()
        if failures and sys.exc_info()[1] is None:
            raise failures[0]

    def input_metadata(self) -> list[TensorMeta]:
        assert self.tensors, "activate() first"
        return [TensorMeta(t.name, t.dtype, tuple(None if d < 0 else d for d in t.shape)) for t in self.tensors if t.is_input]

    def output_names(self) -> list[str]:
        return [t.name for t in self.tensors if not t.is_input]

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        assert self.context is not None, "activate() first"
        staged = self._stage(feed)
        self._execute()
        outputs = self._fetch()
        self._cuda.synchronize(self.stream)
        del staged  # the host copies lived until the stream consumed them
        return outputs

    def timed_infer(self, feed: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], float]:
        """infer() plus the device milliseconds of copies and execution (CUDA events on the stream)."""
        assert self.context is not None, "activate() first"
        start, end = self._event_pair()
        self._cuda.record(start, self.stream)
        staged = self._stage(feed)
        self._execute()
        outputs = self._fetch()
        self._cuda.record(end, self.stream)
        ms = self._cuda.elapsed_ms(start, end)
        del staged
        return outputs, ms

    def infer_device_only(self, feed: dict[str, np.ndarray]) -> float:
        """Device milliseconds of the execution alone; the feed is copied only when it changes."""
        assert self.context is not None, "activate() first"
        key = tuple((k, id(v), v.shape) for k, v in sorted(feed.items()))
        if key != self._staged_key:
            self._stage(feed)
            self._cuda.synchronize(self.stream)
            self._staged_key = key
        start, end = self._event_pair()
        self._cuda.record(start, self.stream)
        self._execute()
        self._cuda.record(end, self.stream)
        return self._cuda.elapsed_ms(start, end)

    def device_memory_bytes(self) -> int | None:
        """Execution-context memory of the engine plus the I/O buffers."""
        if self.engine is None or self.version is None:
            return None
        engine = self.engine
        if self.version.has_device_memory_v2:
            context_bytes = int(engine.device_memory_size_v2)
        else:
            context_bytes = int(engine.device_memory_size)
        return context_bytes + sum(t.nbytes for t in self.tensors)

    def _event_pair(self):
        if self._events is None:
            self._events = (self._cuda.event(), self._cuda.event())
        return self._events

    def _stage(self, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Set the input shapes and queue the host->device copies; returns the host arrays to keep alive."""
        context, cuda = self.context, self._cuda
        inputs = [t for t in self.tensors if t.is_input]
        missing = [t.name for t in inputs if t.name not in feed]
        extra = [k for k in feed if k not in {t.name for t in inputs}]
        if missing or extra:
            raise InputError(f"engine inputs are {[t.name for t in inputs]}; missing {missing}, unexpected {extra}")
        self._staged_key = None
        staged = []
        for t in inputs:
            x = np.ascontiguousarray(feed[t.name], dtype=t.dtype)
            self._check_shape(t, x.shape)
            context.set_input_shape(t.name, x.shape)
            cuda.to_device(t.ptr, x, self.stream)
            staged.append(x)
        return staged

    def _execute(self) -> None:
        context = self.context
        if not context.execute_async_v3(self.stream or 0):  # the stream's integer handle
            raise CompatibilityError(f"TensorRT could not run {self.engine_path.name} (execute_async_v3 returned false)")

    def _fetch(self) -> dict[str, np.ndarray]:
        """Queue the device->host copies of the outputs (valid after the stream is synchronised)."""
        context = self.context
        outputs = {}
        for t in self.tensors:
            if not t.is_input:
                out = np.empty(tuple(int(d) for d in context.get_tensor_shape(t.name)), dtype=t.dtype)
                self._cuda.to_host(out, t.ptr, self.stream)
                outputs[t.name] = out
        return outputs

    @staticmethod
    def _check_shape(t: _Tensor, shape: tuple[int, ...]) -> None:
        lo, hi = t.min_shape, t.max_shape
        if lo is None or hi is None:
            return
        if len(shape) != len(hi) or tuple(shape[1:]) != tuple(hi[1:]):
            raise UsageError(f"input {t.name}: shape {tuple(shape)} does not fit the engine's {tuple(hi)} (batch axis aside)")
        if not lo[0] <= shape[0] <= hi[0]:
            raise UsageError(f"input {t.name}: batch {shape[0]} is outside the engine's profile {lo[0]}..{hi[0]}; "
                             "rebuild with --dynamic-batch MIN:OPT:MAX covering it")
