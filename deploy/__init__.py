"""vitdeploy: PyTorch vision transformers -> ONNX -> TensorRT engines, with proof they stay right and fast.

Importing this package is cheap and torch-free; heavy modules (torch, onnxruntime, tensorrt)
are imported by the functions that need them.
"""

__version__ = "0.2.0"  # 0.2: the package layout changed (a device must run the same version)
