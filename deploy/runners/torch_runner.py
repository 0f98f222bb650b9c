"""PyTorch eager runner (the reference). torch is imported only when this runner is built."""

from __future__ import annotations

import numpy as np

from vitdeploy.deps import require
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


def _eval_mode(module):
    """eval() the module; a torch.export program's module refuses eval()/train(): its mode was fixed
    when the program was captured, so there is nothing to switch."""
    try:
        return module.eval()
    except NotImplementedError:
        return module
