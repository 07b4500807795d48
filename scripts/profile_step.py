"""Where one training step of the article's model spends its time, and what switches change it.

    .venv/bin/python scripts/profile_step.py --device cuda          # on a GPU
    .venv/bin/python scripts/profile_step.py --device cpu --steps 3

Prints, for `Trainer` on the article's configuration (bench_speed.py's):
- seconds per step as the app trains (CUDA graphs on a GPU), timed over --steps steps;
- on a GPU, the same step without graphs, and the sum of its GPU kernel time per step:
  when that sum is close to the graphed step, the step is bound by the GPU's arithmetic
  and memory, not by launching kernels;
- the operators that take the most time (torch.profiler), grouped by name, with the batch
  computed whole (on a CPU the app computes it in slices in threads, which the profiler
  does not see).
With --variants, precision fp32 and bf16, each timed alike, and on a GPU each also compiled
(train.compile; compiling takes a minute or more per variant).
This is a tool for finding what to speed up; bench_speed.py gives the figures to report.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import bench_speed  # noqa: E402
from ddpm_core.batch_threads import forced_slices  # noqa: E402
from ddpm_core.compiled import compiles_on  # noqa: E402
from ddpm_core.device import pick_device  # noqa: E402
from ddpm_core.training import Trainer  # noqa: E402


def seconds_per_step(device, precision: str, graphs: bool, steps: int, compile: bool = False) -> float:
    cfg = bench_speed._article_config()
    cfg.train.precision = precision
    cfg.train.compile = compile
    trainer = Trainer(cfg, device=device, cuda_graphs=graphs)
    loop = trainer.steps()
    for _ in range(3):
        next(loop)
    bench_speed._sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        next(loop)
    bench_speed._sync(device)
    return (time.perf_counter() - t0) / steps


def profile(device, precision: str, steps: int, rows: int) -> None:
    from torch.profiler import ProfilerActivity, profile as torch_profile

    cfg = bench_speed._article_config()
    cfg.train.precision = precision
    trainer = Trainer(cfg, device=device, cuda_graphs=False)  # a graph hides its kernels
    loop = trainer.steps()
    # The whole batch in this thread: the profiler sees only the thread it was started in,
    # not the threads a CPU computes batch slices in (batch_threads.py).
    with forced_slices(1):
        for _ in range(3):
            next(loop)
        bench_speed._sync(device)
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        with torch_profile(activities=activities) as prof:
            for _ in range(steps):
                next(loop)
            bench_speed._sync(device)
    events = prof.key_averages()
    if device.type == "cuda":
        kernel_us = sum(e.self_device_time_total for e in events if e.device_type.name == "CUDA")
        print(f"GPU kernel time per step (no graphs): {kernel_us / steps / 1e3:.2f} ms")
        sort = "self_cuda_time_total"
    else:
        sort = "self_cpu_time_total"
    print(events.table(sort_by=sort, row_limit=rows, max_name_column_width=60))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto", help="auto, fp32 or bf16")
    p.add_argument("--steps", type=int, default=20, help="steps timed and profiled")
    p.add_argument("--rows", type=int, default=30, help="operators listed")
    p.add_argument("--variants", action="store_true", help="also time fp32/bf16, each compiled and not")
    args = p.parse_args()
    device = pick_device(args.device)
    print(f"{device} | torch {torch.__version__}")
    step = seconds_per_step(device, args.precision, True, args.steps)
    print(f"step as the app trains ({args.precision}): {step * 1e3:.2f} ms, {128 / step:.0f} images/s")
    if device.type == "cuda":
        eager = seconds_per_step(device, args.precision, False, args.steps)
        print(f"step without CUDA graphs: {eager * 1e3:.2f} ms")
    if args.variants:
        for precision in ("fp32", "bf16"):
            for compile in (False, True) if compiles_on(device) else (False,):
                s = seconds_per_step(device, precision, True, args.steps, compile)
                print(f"  {precision:5s} compiled={compile!s:5s}: {s * 1e3:.2f} ms per step", flush=True)
    profile(device, args.precision, min(args.steps, 10), args.rows)


if __name__ == "__main__":
    main()
