"""PyTorch eager runners (the reference), on the CPU or a CUDA GPU. torch is imported only when
a runner is built."""

from __future__ import annotations

import numpy as np

from vitdeploy.core.deps import require
from vitdeploy.core.errors import MissingDependencyError
from vitdeploy.runners.base import BaseRunner, TensorMeta


class TorchRunner(BaseRunner):
    def __init__(self, module, input_shape: tuple[int, ...], input_name: str = "input",
                 output_name: str = "logits", threads: int | None = None, device: str = "cpu"):
        super().__init__()
        self.torch = require("torch", "the PyTorch reference runner")
        self.module = _eval_mode(module)
        self.input_shape = tuple(input_shape)  # without the batch axis
        self.input_name = input_name
        self.output_name = output_name
        self.threads = threads
        self.device = device
        self.name = f"torch[{device}]"

    def activate(self) -> None:
        if self.threads:
            self.torch.set_num_threads(self.threads)
        if self.device != "cpu":
            self.module.to(self.device)
        self.is_active = True

    def input_metadata(self) -> list[TensorMeta]:
        return [TensorMeta(self.input_name, np.dtype(np.float32), (None, *self.input_shape))]

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self.torch
        x = torch.from_numpy(np.ascontiguousarray(feed[self.input_name])).to(self.device)
        with torch.inference_mode():
            y = self.module(x)
        if isinstance(y, (tuple, list)):
            y = y[0]
        return {self.output_name: y.detach().float().cpu().numpy()}


class CudaTorchRunner(TorchRunner):
    """PyTorch eager on a CUDA GPU, with the optional timing hooks of vitdeploy.bench: CUDA events
    around a whole call (host->device copy, forward, device->host copy) and around the forward alone
    on an input kept on the device, and the peak device memory torch's allocator has held."""

    def __init__(self, module, input_shape: tuple[int, ...], device: str = "cuda", **kwargs):
        super().__init__(module, input_shape, device=device, **kwargs)

    def activate(self) -> None:
        if not self.torch.cuda.is_available():
            raise MissingDependencyError(f"torch {self.torch.__version__} here sees no CUDA GPU: install a CUDA "
                                         "build of torch, or use --backend torch (CPU)")
        super().activate()
        self.torch.cuda.reset_peak_memory_stats(self.device)  # this runner's peak, not the process's so far
        self._resident: tuple[tuple[int, ...], object] | None = None

    def _events(self):
        cuda = self.torch.cuda
        return cuda.Event(enable_timing=True), cuda.Event(enable_timing=True)

    def timed_infer(self, feed: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], float]:
        """infer() plus its device milliseconds (CUDA events on the current stream), copies included."""
        start, end = self._events()
        start.record()
        out = self.infer(feed)
        end.record()
        end.synchronize()
        return out, float(start.elapsed_time(end))

    def infer_device_only(self, feed: dict[str, np.ndarray]) -> float:
        """Milliseconds of the forward alone on the device; the input is copied once per shape."""
        x = feed[self.input_name]
        if self._resident is None or self._resident[0] != x.shape:
            self._resident = (x.shape, self.torch.from_numpy(np.ascontiguousarray(x)).to(self.device))
        start, end = self._events()
        with self.torch.inference_mode():
            start.record()
            self.module(self._resident[1])
            end.record()
        end.synchronize()
        return float(start.elapsed_time(end))

    def device_memory_bytes(self) -> int | None:
        return int(self.torch.cuda.max_memory_allocated(self.device))

    def deactivate(self) -> None:
        self._resident = None
        super().deactivate()


def _eval_mode(module):
    """eval() the module; a torch.export program's module refuses eval()/train(): its mode was fixed
    when the program was captured, so there is nothing to switch."""
    try:
        return module.eval()
    except NotImplementedError:
        return module
