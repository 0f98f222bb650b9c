"""TensorRT's calibration-cache text format, for the implicit-INT8 path of TensorRT < 10.12.

    TRT-8502-EntropyCalibration2
    input: 3c010204
    /blocks.0/attn/MatMul_output_0: 3d1f2a11

Each line after the header is a tensor name and the big-endian IEEE-754 bits of its scale
(amax / 127). The header names the TensorRT version and calibrator; build-engine rewrites it for
the TensorRT it runs on.
"""

from __future__ import annotations

import struct
from pathlib import Path

from vitdeploy.core.io import write_bytes_atomic

CALIBRATOR = "EntropyCalibration2"


def header(trt_version: str = "8.5.2") -> str:
    """TensorRT's NV_TENSORRT_VERSION tag: major*1000 + minor*100 + patch up to 9.x (8.5.2 -> TRT-8502),
    major*10000 + minor*100 + patch from 10.0 (10.3.0 -> TRT-100300)."""
    major, minor, patch = (int(p) for p in (trt_version.split(".") + ["0", "0"])[:3])
    number = (major * 10000 if major >= 10 else major * 1000) + minor * 100 + patch
    return f"TRT-{number}-{CALIBRATOR}"


def encode(amax: dict[str, float], trt_version: str = "8.5.2") -> str:
    lines = [header(trt_version)]
    for name, a in amax.items():
        scale = (a / 127.0) if a > 0 else 1.0 / 127.0
        lines.append(f"{name}: {struct.pack('>f', scale).hex()}")
    return "\n".join(lines) + "\n"


def decode(text: str) -> tuple[str, dict[str, float]]:
    """(header, tensor -> scale)"""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines or not lines[0].startswith("TRT-"):
        raise ValueError("not a TensorRT calibration cache (no TRT- header)")
    scales = {}
    for ln in lines[1:]:
        name, _, hexbits = ln.rpartition(": ")
        scales[name] = struct.unpack(">f", bytes.fromhex(hexbits.strip()))[0]
    return lines[0], scales


def write(path: str | Path, amax: dict[str, float], trt_version: str = "8.5.2") -> None:
    write_bytes_atomic(path, encode(amax, trt_version).encode())
