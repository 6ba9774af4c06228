#!/usr/bin/env bash
# Everything that needs a CUDA GPU, in one command (about 15-20 minutes on one GPU):
#   bash benchmarks/gpu_session.sh [OUT_DIR]
# 1. the CUDA-only tests (skipped on CPU machines),
# 2. the train-step benchmark on CUDA (batch 16, eager / channels_last / bf16 / fp16 /
#    torch.compile against the naive reference; target >= 3x),
# 3. a short GPU training + test evaluation of the default model on the synthetic data
#    and of the paper's Moving-MNIST model (AMP, channels_last, progress bar in the log).
# Results land in OUT_DIR (default benchmarks/results/gpu_<date>); copy the tables into
# benchmarks/README.md with the date and the GPU's name.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-benchmarks/results/gpu_$(date -u +%Y-%m-%d)}"
mkdir -p "$out"
python - <<'PY'
import torch
if not torch.cuda.is_available():
    raise SystemExit("gpu_session.sh needs a CUDA device (torch.cuda.is_available() is False)")
print("GPU:", torch.cuda.get_device_name(0), "| torch", torch.__version__)
PY
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/nvidia-smi.csv" || true
python -m pytest -q -rs tests -m gpu 2>&1 | tee "$out/cuda_tests.txt"
python benchmarks/train_step.py --device cuda --out "$out" 2>&1 | tee "$out/train_step.txt"
python scripts/train.py name=gpu_default trainer.accelerator=cuda \
    "hydra.run.dir=$out/runs/default" 2>&1 | tee "$out/train_default.txt"
python scripts/train.py +experiment=moving_mnist name=gpu_mnist trainer.accelerator=cuda \
    trainer.max_steps=2000 trainer.val_check_interval=500 \
    "hydra.run.dir=$out/runs/moving_mnist" 2>&1 | tee "$out/train_moving_mnist.txt"
echo "done: $out"
