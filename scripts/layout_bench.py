"""Single operators of the article's model in NCHW against channels_last, forward and backward.

    .venv/bin/python scripts/layout_bench.py
    taskset -c 0,1 python3 scripts/layout_bench.py --threads 2

On a CPU every convolution of an NCHW tensor costs oneDNN a copy into its blocked layout
and back ("reorder" in scripts/onednn_time.py). This prints, per operator and shape of the
article's model (batch 128, bf16 autocast as training runs it), milliseconds for forward
plus backward in each layout, so that a change of layout can be judged op by op before it
is tried on the whole model. Alternating repeats, median.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import ddpm_core.speed  # noqa: E402  (first, as the app: it sets OpenMP's waiting policy)
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

CL = torch.channels_last


def timed(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def fwd_bwd(op, x, *params):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        grad = torch.randn_like(op(x, *params))  # the output's dtype and layout

    def run():
        for t in (x, *params):
            t.grad = None
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = op(x, *params)
        y.backward(grad)

    return run


def cases(batch: int):
    g = torch.Generator().manual_seed(0)

    def t(*shape):
        return torch.randn(*shape, generator=g).requires_grad_()

    for c, hw in ((28, 28), (56, 14), (112, 7)):
        yield f"conv3x3 {c}->{c} at {hw}x{hw}", (lambda x, w: F.conv2d(x, w, padding=1)), t(batch, c, hw, hw), [t(c, c, 3, 3)]
    yield "conv1x1 28->128 at 28x28", (lambda x, w: F.conv2d(x, w)), t(batch, 28, 28, 28), [t(128, 28, 1, 1)]
    for c, hw in ((28, 28), (56, 14), (112, 7)):
        yield f"group_norm(4) {c} at {hw}x{hw}", (lambda x, w, b: F.group_norm(x, 4, w, b)), t(batch, c, hw, hw), [t(c), t(c)]
    yield "silu 28 at 28x28", F.silu, t(batch, 28, 28, 28), []


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--repeats", type=int, default=10)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    ddpm_core.speed.tune_allocator()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, bf16 autocast")
    print(f"{'forward + backward, ms':34s} {'NCHW':>8s} {'chan_last':>10s} {'ratio':>6s}")
    for name, op, x, params in cases(args.batch):
        xc = x.detach().to(memory_format=CL).requires_grad_()
        a, b = [], []
        for _ in range(3):  # alternate the two layouts
            a.append(timed(fwd_bwd(op, x, *params), args.repeats))
            b.append(timed(fwd_bwd(op, xc, *params), args.repeats))
        na, nb = statistics.median(a), statistics.median(b)
        print(f"{name:34s} {na:8.2f} {nb:10.2f} {na / nb:5.2f}x", flush=True)


if __name__ == "__main__":
    main()
