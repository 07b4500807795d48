#!/usr/bin/env bash
# One call on a lent GPU machine (see the README's "Speed"): the CUDA paths' tests, a real
# training run and its samples through the command line, then the speed benchmark with the
# article's way in the same run. Logs and the sample grid go to $OUT (or ./device_out).
#   bash scripts/device_check.sh            # about 6 minutes on an H100
set -u
OUT=${OUT:-device_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
PY=${PYTHON:-python3}
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv
$PY -c "import torch; print('torch', torch.__version__, '| cuda', torch.version.cuda, '|', torch.cuda.get_device_name())"

echo "== tests on the GPU"
DDPM_TEST_DEVICE=cuda $PY -m pytest -q -p no:cacheprovider tests/core/test_device_paths.py 2>&1 | tee "$OUT/tests.log"

echo "== command line: 1500 training steps of the article's model, then DDIM samples"
SECONDS=0
$PY -m ddpm_core.cli train --device cuda --dim 28 --dim-mults 1,2,4 --image-size 28 --channels 1 \
    --batch-size 128 --steps 1500 --preview-every 500 --out /tmp/gpu_run 2>&1 | tail -4 | tee "$OUT/train.log"
echo "train: ${SECONDS} s wall, including start-up"
$PY -m ddpm_core.cli sample /tmp/gpu_run --sampler ddim --steps 50 -n 64 --png "$OUT/gpu_samples.png" 2>&1 | tail -2
$PY -m ddpm_core.cli sample /tmp/gpu_run -n 64 --png "$OUT/gpu_samples_ddpm.png" 2>&1 | tail -2

echo "== speed: the article's way against ours, on the GPU"
$PY scripts/bench_speed.py --device cuda --rounds 2 --train-steps 100 --warmup 10 2>&1 | tee "$OUT/bench.log"
echo "== the same in fp32 (TF32) instead of bf16"
$PY scripts/bench_speed.py --device cuda --rounds 1 --train-steps 100 --warmup 10 --precision fp32 --only train ddpm ddim 2>&1 | tee "$OUT/bench_fp32.log"
