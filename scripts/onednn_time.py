"""How much of a training or sampling step oneDNN's kernels take, and which kernels they are.

    .venv/bin/python scripts/onednn_time.py                 # a training step and a sampling step
    taskset -c 0,1 python3 scripts/onednn_time.py --threads 2

On a CPU, PyTorch runs convolutions (and bf16 matmuls) through oneDNN. Its verbose log
names the kernel each call used: "amx" in the name means the CPU's AMX tiles,
"avx512_core_bf16" AVX-512 BF16 only, and "reorder" calls are copies between PyTorch's
layout and oneDNN's blocked one. This script logs the steps of `Trainer` and of the DDPM
sampler on the article's configuration (bench_speed.py's), each batch whole in one thread
(not in slices: batch_threads.py), and prints the time per step
by kind of call and by kernel, against the step's wall time: what is left over is
PyTorch's own operators (normalisation, activations, softmax, the optimizer).
A tool for finding what to speed up; bench_speed.py gives the figures to report.
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
WALL = "@@wall_s "


def child(what: str, steps: int, threads: int) -> None:
    """Runs `steps` steps with oneDNN's verbose log on; the log goes to stdout."""
    import torch

    import bench_speed
    from ddpm_core.batch_threads import forced_slices
    from ddpm_core.training import Trainer

    if threads:
        torch.set_num_threads(threads)
    if what == "train":
        loop = Trainer(bench_speed._article_config(), device=torch.device("cpu")).steps()
    else:
        from ddpm_core.samplers import sample_loop
        from ddpm_core.schedules import NoiseSchedule
        from ddpm_core.unet import build_unet

        model = build_unet(bench_speed._article_config().model).eval().requires_grad_(False)
        schedule = NoiseSchedule.from_name("linear", bench_speed.T)
        shape = (bench_speed.SAMPLES, 1, bench_speed.IMAGE, bench_speed.IMAGE)
        loop = sample_loop(model, schedule, shape, precision="auto")  # as the app samples
    with forced_slices(1):
        for _ in range(3):
            next(loop)
    t0 = time.perf_counter()
    # The whole batch in this thread: slices in threads (batch_threads.py) would log their
    # calls at the same time, and their sum would not be a share of the wall time.
    with forced_slices(1), torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
        for _ in range(steps):
            next(loop)
    wall = time.perf_counter() - t0
    sys.stdout.flush()
    print(f"{WALL}{wall / steps}", file=sys.stderr)


def parse(log: str) -> list[tuple[str, str, str, str, float]]:
    """(kind, propagation, kernel, shape, ms) for every executed primitive in the log."""
    calls = []
    for line in log.splitlines():
        f = line.split(",")
        if not line.startswith("onednn_verbose") or "exec" not in f:
            continue
        i = f.index("exec")
        try:
            ms = float(f[-1])
        except ValueError:
            continue
        # ...,exec,cpu,KIND,KERNEL,PROPAGATION,...,SHAPE,MS (the field layout of oneDNN 3.x)
        calls.append((f[i + 2], f[i + 4], f[i + 3], f[-2], ms))
    return calls


def report(what: str, steps: int, threads: int) -> None:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    argv = [sys.executable, __file__, "--child", what, "--steps", str(steps), "--threads", str(threads)]
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    wall = [float(ln[len(WALL):]) for ln in done.stderr.splitlines() if ln.startswith(WALL)]
    if done.returncode != 0 or not wall:
        print(f"{what}: the child failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
        return
    calls = parse(done.stdout)
    step_ms = wall[0] * 1e3
    total = sum(c[4] for c in calls) / steps
    print(f"\n== {what} step: {step_ms:.1f} ms with the log on; oneDNN {total:.1f} ms "
          f"({total / step_ms:.0%}), the rest {step_ms - total:.1f} ms")
    by = collections.defaultdict(lambda: [0.0, 0])
    for kind, prop, kernel, _, ms in calls:
        by[(kind, prop, kernel)][0] += ms / steps
        by[(kind, prop, kernel)][1] += 1
    print(f"{'ms/step':>8} {'calls':>6}  kind / propagation / kernel")
    for (kind, prop, kernel), (ms, n) in sorted(by.items(), key=lambda kv: -kv[1][0]):
        print(f"{ms:8.1f} {n // steps:6d}  {kind} / {prop} / {kernel}")
    shapes = collections.defaultdict(float)
    for kind, prop, _, shape, ms in calls:
        shapes[(kind, prop, shape)] += ms / steps
    print("slowest shapes:")
    for (kind, prop, shape), ms in sorted(shapes.items(), key=lambda kv: -kv[1])[:8]:
        print(f"{ms:8.1f}  {kind} {prop} {shape}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=3, help="steps logged")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--only", choices=("train", "sample"), help="one of the two steps")
    p.add_argument("--child", choices=("train", "sample"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.child, args.steps, args.threads)
        return
    import torch

    print(f"torch {torch.__version__} | {torch.get_num_threads()} threads by default")
    for what in (args.only,) if args.only else ("train", "sample"):
        report(what, args.steps, args.threads)


if __name__ == "__main__":
    main()
