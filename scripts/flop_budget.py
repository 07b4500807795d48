"""How fast the article's configuration could train and sample on this CPU at best.

    .venv/bin/python scripts/flop_budget.py
    .venv/bin/python scripts/flop_budget.py --article-images-per-s 36.1 44.3 48.7

Prints the floating-point work of one training step (batch 128, forward and backward) and
of one sampling step (64 images), counted by torch.utils.flop_counter for our blocks and
for the article's forms (article_forms.py); this CPU's matrix-product peak in bf16 and
fp32 with all its threads; and, for each measured speed of the article's way
(bench_speed.py's "article" column), the share of the bf16 peak a step would have to
sustain, start to end, for each speed-up. A figure near or above 100% cannot be reached
by any change that keeps the model, the batch and the precision.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import ddpm_core  # noqa: E402,F401  (first, as the app: it sets OpenMP's waiting policy)
import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

import bench_speed  # noqa: E402
from ddpm_core.article_forms import use_article_forms  # noqa: E402
from ddpm_core.unet import build_unet  # noqa: E402


def step_gflop(article: bool, batch: int = bench_speed.BATCH, samples: int = bench_speed.SAMPLES) -> tuple[float, float]:
    """(training step of `batch` images, sampling step of `samples`) in GFLOP, one
    multiply-add counted as 2. Every layer's work grows in proportion to the batch."""
    model = build_unet(bench_speed._article_config().model)
    if article:
        use_article_forms(model)
    b, s = batch, samples
    x = torch.randn(b, 1, bench_speed.IMAGE, bench_speed.IMAGE)
    t = torch.randint(0, bench_speed.T, (b,))
    with FlopCounterMode(display=False) as train:
        model(x, t).square().mean().backward()
    with FlopCounterMode(display=False) as sample, torch.no_grad():
        model(x[:s], t[:s])
    return train.get_total_flops() / 1e9, sample.get_total_flops() / 1e9


def matmul_peak(dtype: torch.dtype, n: int = 2048, rounds: int = 5) -> float:
    """GFLOP/s of an n³ matrix product, the best of `rounds`."""
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    a @ b
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--article-images-per-s", type=float, nargs="*", default=[],
                   help="the article's way's training speeds measured by bench_speed.py")
    p.add_argument("--speedups", type=float, nargs="+", default=[3.0, 5.0])
    args = p.parse_args()
    train_ours, sample_ours = step_gflop(article=False)
    train_article, sample_article = step_gflop(article=True)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"training step, batch {bench_speed.BATCH}: {train_article:.1f} GFLOP the article's way, {train_ours:.1f} ours")
    print(f"sampling step, {bench_speed.SAMPLES} images: {sample_article:.1f} GFLOP the article's way, {sample_ours:.1f} ours")
    bf16, fp32 = matmul_peak(torch.bfloat16), matmul_peak(torch.float32)
    print(f"matrix-product peak: bf16 {bf16:.0f} GFLOP/s, fp32 {fp32:.0f} GFLOP/s")
    print(f"a training step at the bf16 peak, start to end: {train_ours / bf16 * 1e3:.0f} ms "
          f"({bench_speed.BATCH / (train_ours / bf16):.0f} images/s)")
    for speed in args.article_images_per_s:
        step_s = bench_speed.BATCH / speed
        for k in args.speedups:
            need = train_ours / (step_s / k)
            print(f"  article's way at {speed:g} images/s ({step_s:.2f} s a step): {k:g}x is {step_s / k * 1e3:.0f} ms "
                  f"a step, {need:.0f} GFLOP/s, {need / bf16:.0%} of the bf16 peak")


if __name__ == "__main__":
    main()
