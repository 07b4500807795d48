#!/usr/bin/env bash
# One call on a lent GPU machine (see the README's "Speed"): the CUDA paths' tests, a real
# training run and its samples through the command line, then the speed benchmark with the
# article's way in the same run, on the GPU and on two of the host's CPU cores. Logs and the
# sample grid go to $OUT (or ./device_out).
#   bash scripts/device_check.sh            # about 7 minutes on an H100 (estimated)
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

echo "== speed: the article's way against ours, on the GPU (precision auto: TF32 on CUDA)"
$PY scripts/bench_speed.py --device cuda --rounds 2 --train-steps 100 --warmup 10 2>&1 | tee "$OUT/bench.log"

# The CPU targets were set on a 2-core CPU with AMX; this machine's host CPU may
# have it where the project's own machine (AVX-512 BF16 only) does not. Two cores, pinned.
echo "== speed on this machine's CPU, 2 cores: $(grep -o -w 'amx_[a-z0-9]*' /proc/cpuinfo | sort -u | tr '\n' ' ')"
lscpu | grep -m1 "Model name"
PIN=$(command -v taskset >/dev/null && echo "taskset -c 0,1")
$PIN $PY scripts/bench_speed.py --device cpu --threads 2 --quick 2>&1 | tee "$OUT/bench_cpu_2cores.log"
