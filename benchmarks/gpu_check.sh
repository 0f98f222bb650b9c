#!/usr/bin/env bash
# The checks that need an NVIDIA GPU, in one run (a few minutes on a desktop/server GPU):
#  1. tests/test_gpu_runtimes.py (and tests/test_trt_gpu.py when TensorRT is installed): the libcudart
#     round trip of vitdeploy.trt.cuda (ctypes; VITDEPLOY_CUDART picks the library), PyTorch on the
#     GPU against the CPU, and each family's digits-trained tiny variant
#     at FP32/FP16/INT8 in ONNX Runtime's CUDA provider against what vitdeploy measured on the CPU;
#  2. latency of each family's smallest official variant (random weights: speed does not depend on
#     them) with `vitdeploy bench`: PyTorch eager on the GPU (CUDA events), and the FP32, FP16 and
#     INT8 (--qdq-form trt) ONNX files in ONNX Runtime's CUDA provider, at batch 1, 8 and 32.
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]          # default OUT_DIR: gpu-check
#   MODELS="deit_tiny_patch16_224" bash benchmarks/gpu_check.sh
#
# Needs: vitdeploy[export] with a CUDA build of torch, onnxruntime-gpu, scikit-learn and pytest; the CUDA
# runtime library (libcudart: CUDA toolkit, JetPack, or the nvidia-cuda-runtime wheel torch brings).
set -euo pipefail
out=${1:-gpu-check}
models=${MODELS:-"deit_tiny_patch16_224 t2t_vit_7 convit_tiny SReT_T ceit_tiny_patch16_224"}
batches=${BATCHES:-1,8,32}
work="$out/work"
mkdir -p "$work"
export PYTHONUNBUFFERED=1

nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv | tee "$out/gpu.txt" || true
python3 -c 'from vitdeploy.trt.cuda import Cuda; c = Cuda(); print(c.path, c.device_info())' 2>&1 \
  | tee "$out/cudart.txt" || true
python3 -m pytest -q -s -p no:cacheprovider -m gpu tests/test_gpu_runtimes.py tests/test_trt_gpu.py 2>&1 | tee "$out/pytest.log" || true

# 64 calibration images: scikit-learn's digits, upscaled
python3 - "$work/calib" <<'EOF'
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

root = Path(sys.argv[1])
root.mkdir(parents=True, exist_ok=True)
for i, img in enumerate(load_digits().images[:64]):
    Image.fromarray((img / 16 * 255).astype(np.uint8)).convert("RGB").resize((256, 256)).save(root / f"{i:03d}.png")
EOF

for m in $models; do  # each model's files in parallel: export and quantize run on the CPU
  (vitdeploy export "$m" -o "$work/$m.onnx" --dynamic-batch 1:8:32 --force \
    && vitdeploy quantize "$work/$m.onnx" --fp16 --calib "$work/calib" -o "$work/$m.fp16.onnx" --force \
    && vitdeploy quantize "$work/$m.onnx" --int8 --calib "$work/calib" --samples 64 -o "$work/$m.int8.onnx" --force) \
    >"$out/prepare_$m.log" 2>&1 &
done
wait

for m in $models; do
  echo "== $m"
  vitdeploy bench "$m" --backend "${TORCH_BACKEND:-torch-cuda}" --batch "$batches" --iterations 200 \
    --report "$out/bench_${m}_torch" --force || echo "torch bench of $m failed (exit $?)"
  vitdeploy bench "$work/$m.onnx" "$work/$m.fp16.onnx" "$work/$m.int8.onnx" --backend "${ORT_BACKEND:-ort-cuda}" \
    --batch "$batches" --iterations 200 --report "$out/bench_$m" --force \
    || echo "ONNX Runtime bench of $m failed (exit $?): see $out/prepare_$m.log"
done
