"""Training and sampling steps with the batch computed whole or as slices in threads (batch_threads.py).

    .venv/bin/python scripts/slices_bench.py
    taskset -c 0-7 python3 scripts/slices_bench.py --threads 8 --parts 1 2 4 8

For `Trainer` and the DDIM sampler on the article's configuration (bench_speed.py's), on
the CPU: milliseconds per step with the batch cut into each number of --parts (1: whole,
PyTorch spreading each operator over all threads), alternating in one process, medians
over --rounds, and each ratio to the whole batch. This decides
batch_threads.slice_count; bench_speed.py gives the figures to report.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import ddpm_core  # noqa: E402,F401  (first, as the app: it sets OpenMP's waiting policy)
import torch  # noqa: E402

import bench_speed  # noqa: E402
from ddpm_core.batch_threads import forced_slices, slice_count  # noqa: E402
from ddpm_core.samplers import sample_loop  # noqa: E402
from ddpm_core.schedules import NoiseSchedule  # noqa: E402
from ddpm_core.training import Trainer  # noqa: E402
from ddpm_core.unet import build_unet  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--parts", type=int, nargs="+", default=[1, 2], help="slices to compare (1: whole batch)")
    p.add_argument("--precision", default="auto", help="auto (bf16 where fast), fp32 or bf16")
    p.add_argument("--images", type=int, default=bench_speed.SAMPLES, help="images per sampling batch")
    p.add_argument("--only", choices=("sample", "train"), help="one of the two steps")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--train-steps", type=int, default=3, help="training steps timed per measurement")
    p.add_argument("--sample-steps", type=int, default=6, help="sampling steps timed per measurement")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cpu = torch.device("cpu")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, precision {args.precision}; the app's choice: "
          f"{slice_count(cpu, 128)} slices for training, {slice_count(cpu, args.images)} for sampling")
    cfg = bench_speed._article_config()
    cfg.train.precision = args.precision
    loops = {n: Trainer(cfg, device=cpu).steps() for n in args.parts} if args.only != "sample" else {}
    model = build_unet(cfg.model).eval().requires_grad_(False)
    schedule = NoiseSchedule.from_name("linear", bench_speed.T)
    shape = (args.images, 1, bench_speed.IMAGE, bench_speed.IMAGE)

    def train_ms(parts: int) -> float:
        with forced_slices(parts):
            next(loops[parts])
            t0 = time.perf_counter()
            for _ in range(args.train_steps):
                next(loops[parts])
            return (time.perf_counter() - t0) / args.train_steps * 1e3

    def sample_ms(parts: int) -> float:
        with forced_slices(parts):
            loop = sample_loop(model, schedule, shape, sampler="ddim", steps=50, precision=args.precision)
            next(loop)
            t0 = time.perf_counter()
            for _ in range(args.sample_steps):
                next(loop)
            return (time.perf_counter() - t0) / args.sample_steps * 1e3

    steps = {"sample": (f"sampling step, {shape[0]} images", sample_ms), "train": ("training step, batch 128", train_ms)}
    for name, measure in [steps[args.only]] if args.only else steps.values():
        times = {n: [] for n in args.parts}
        for _ in range(args.rounds):
            for n in args.parts:
                times[n].append(measure(n))
        print(name, flush=True)
        for n in args.parts:
            ratios = sorted(a / b for a, b in zip(times[args.parts[0]], times[n]))
            print(f"  {n} slice(s): {statistics.median(times[n]):7.1f} ms   "
                  f"vs {args.parts[0]}: {statistics.median(ratios):.2f}x ({ratios[0]:.2f}-{ratios[-1]:.2f})", flush=True)


if __name__ == "__main__":
    main()
