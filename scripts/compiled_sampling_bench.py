"""Would torch.compile make CPU sampling faster? A forward pass, eager against compiled.

    .venv/bin/python scripts/compiled_sampling_bench.py                  # 32 images, 1 thread
    .venv/bin/python scripts/compiled_sampling_bench.py --images 64 --threads 2

The article's configuration (bench_speed.py's), bf16 autocast where the CPU is fast at it,
no gradients: the network as a sampling step runs it (one slice of batch_threads.py on one
thread, by default). The compiled copy uses TorchInductor with weight freezing, the
compiler's inference mode, which folds the standardised kernels into constants; its
standardised convolutions compute their kernel in the forward pass (the article's form),
because the cache that eager sampling keeps is a graph break for the compiler. Prints the
compile time, the largest difference of ε̂, and milliseconds per forward pass, alternating
rounds, medians. The app does not compile for sampling: see the README.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import ddpm_core  # noqa: E402,F401  (first, as the app: it sets OpenMP's waiting policy)
import torch  # noqa: E402
import torch._inductor.config as inductor_config  # noqa: E402

import bench_speed  # noqa: E402
from ddpm_core.article_forms import weight_standardized_conv  # noqa: E402
from ddpm_core.speed import autocast, autocast_dtype, tune_allocator  # noqa: E402
from ddpm_core.unet import build_unet  # noqa: E402
from ddpm_core.unet_blocks import WeightStandardizedConv2d  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=6)
    args = p.parse_args()
    tune_allocator()
    torch.set_num_threads(args.threads)
    cpu = torch.device("cpu")
    dtype = autocast_dtype("auto", cpu)
    model = build_unet(bench_speed._article_config().model).eval().requires_grad_(False)
    plain = copy.deepcopy(model)
    for module in plain.modules():
        if isinstance(module, WeightStandardizedConv2d):
            module.forward = types.MethodType(weight_standardized_conv, module)
    inductor_config.freezing = True
    compiled = torch.compile(plain)
    x = torch.randn(args.images, 1, bench_speed.IMAGE, bench_speed.IMAGE)
    t = torch.full((args.images,), bench_speed.T // 2)

    def forward(net):
        with torch.no_grad(), autocast(cpu, dtype):
            return net(x, t)

    t0 = time.perf_counter()
    out = forward(compiled)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.images} images, "
          f"{'bf16 autocast' if dtype else 'fp32'}; compiling took {time.perf_counter() - t0:.1f} s", flush=True)
    print(f"largest |eps difference| against eager: {(out.float() - forward(model).float()).abs().max().item():.4f}")
    times = {"eager": [], "compiled": []}
    for _ in range(args.rounds):
        for name, net in (("eager", model), ("compiled", compiled)):
            forward(net)
            t0 = time.perf_counter()
            for _ in range(3):
                forward(net)
            times[name].append((time.perf_counter() - t0) / 3 * 1e3)
    eager, comp = statistics.median(times["eager"]), statistics.median(times["compiled"])
    print(f"eager {eager:.1f} ms, compiled {comp:.1f} ms a forward pass: {eager / comp:.2f}x")


if __name__ == "__main__":
    main()
