#!/usr/bin/env bash
# One call on a lent GPU machine (see the README's "Speed"): the CUDA paths' tests, what the
# host CPU offers (AMX) and whether oneDNN uses it, the speed benchmark on two of the host's
# cores and where a step's time goes there (and batch slices on 8 cores), the benchmark on
# the GPU with the article's way in the same run, and a real training run with samples
# through the command line. Every log and the sample grids go to $OUT (or ./device_out).
#   bash scripts/device_check.sh            # about 8 minutes on an H100 (its parts, timed in session 6)
set -u
OUT=${OUT:-device_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
PY=${PYTHON:-python3}
PIN=$(command -v taskset >/dev/null && echo "taskset -c 0,1")
{
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv
    $PY -c "import torch; print('torch', torch.__version__, '| cuda', torch.version.cuda, '|', torch.cuda.get_device_name())"
    lscpu | grep -m1 "Model name"
    echo "CPU flags: $(grep -o -w -E 'amx_[a-z0-9]*|avx512_bf16|avx512_fp16' /proc/cpuinfo | sort -u | tr '\n' ' ')"
    # Which kernels oneDNN picks for a bf16 convolution of the model's size ("amx" in the
    # name: it uses AMX; "avx512_core_bf16": AVX-512 BF16 only).
    ONEDNN_VERBOSE=1 $PIN $PY -c "
import torch
x, w = torch.randn(64, 56, 14, 14), torch.randn(56, 56, 3, 3)
with torch.autocast('cpu', dtype=torch.bfloat16):
    torch.nn.functional.conv2d(x, w, padding=1)" | grep -m2 "exec,cpu,convolution"
} 2>&1 | tee "$OUT/machine.log"

echo "== tests on the GPU (the compiled-training test compiles for about a minute)"
DDPM_TEST_DEVICE=cuda $PY -m pytest -q -p no:cacheprovider tests/core/test_device_paths.py 2>&1 | tail -15 | tee "$OUT/tests.log"

# The CPU targets were set on a 2-core CPU with AMX; this machine's host CPU has had
# it where the project's own machine (AVX-512 BF16 only) does not. Two cores, pinned.
echo "== speed on this machine's CPU, 2 cores"
$PIN $PY scripts/bench_speed.py --device cpu --threads 2 --quick 2>&1 | tee "$OUT/bench_cpu_2cores.log"
$PIN $PY scripts/onednn_time.py --threads 2 --steps 2 2>&1 | tee "$OUT/onednn_cpu_2cores.log"
# Batch slices in threads against the whole batch on 8 of the host's cores (batch_threads.py).
${PIN:+taskset -c 0-7} $PY scripts/slices_bench.py --threads 8 --parts 1 2 4 8 --rounds 2 --train-steps 2 2>&1 | tee "$OUT/slices_cpu_8cores.log"

echo "== speed on the GPU: the article's way against ours, and ours with --compile (training)"
$PY scripts/bench_speed.py --device cuda --ways article ours ours-compiled --rounds 1 --train-steps 100 --warmup 10 2>&1 \
    | tee "$OUT/bench_gpu.log"

echo "== command line: 1500 training steps of the article's model, then DDIM and DDPM samples"
SECONDS=0
$PY -m ddpm_core.cli train --device cuda --dim 28 --dim-mults 1,2,4 --image-size 28 --channels 1 \
    --batch-size 128 --steps 1500 --preview-every 500 --out /tmp/gpu_run 2>&1 | tail -4 | tee "$OUT/train.log"
echo "train: ${SECONDS} s wall, including start-up"
$PY -m ddpm_core.cli sample /tmp/gpu_run --sampler ddim --steps 50 -n 64 --png "$OUT/gpu_samples.png" 2>&1 | tail -2
$PY -m ddpm_core.cli sample /tmp/gpu_run -n 64 --png "$OUT/gpu_samples_ddpm.png" 2>&1 | tail -2
