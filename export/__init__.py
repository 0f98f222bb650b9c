"""Export: PyTorch -> validated, simplified, TensorRT-ready ONNX (requires torch).

    from vitdeploy.export import ExportConfig, export
    result = export(ExportConfig("deit_tiny_patch16_224", checkpoint=Path("deit_tiny.pth")))

Submodules import torch when used; importing this package stays light.
"""

from vitdeploy.export.config import BatchRange, ExportConfig, Preprocessing

__all__ = ["BatchRange", "ExportConfig", "Preprocessing", "export"]


def export(config, steps=None):  # noqa: ANN001, ANN201 - thin lazy wrapper
    from vitdeploy.export.pipeline import export as _export

    return _export(config, steps)
