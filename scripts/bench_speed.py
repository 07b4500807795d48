"""Training and sampling speed: the article's way against DDPM Studio's, in one run.

    .venv/bin/python scripts/bench_speed.py            # about 10 minutes on a 2-core CPU
    .venv/bin/python scripts/bench_speed.py --quick    # about 2 minutes: fewer steps timed
    .venv/bin/python scripts/bench_speed.py --loss-steps 150   # also compare loss curves
    .venv/bin/python scripts/bench_speed.py --rounds 0 --loss-steps 100 --seed 1   # another seed

The model is the article's Fashion-MNIST configuration (dim 28, dim_mults (1, 2, 4), one
channel, 28×28, T = 300, batch 128, Huber loss, Adam 1e-3; 2.02 M parameters). The data are
the built-in shapes at 28×28 (Fashion-MNIST cannot be downloaded everywhere); the speed of a
step does not depend on what the images show.

"The article's way": the same network computed the article's way (einsum attention over
rearranged copies, kernels standardised at every call: ddpm_core/article_forms.py), in fp32
with glibc's default allocator, batches made by a DataLoader from per-image PIL transforms
(RandomHorizontalFlip, ToTensor, 2x-1), no EMA, and Algorithm 2 run for all T steps with
every x_t copied to NumPy, as the notebook does. "Ours": `Trainer` and the samplers as the
app and the command line run them (precision 'auto', tuned allocator, tensors kept on the
device, EMA on, CUDA graphs on a GPU); on a GPU "ours-eager" is the same without graphs.
"ours-compiled" (training only, listed in --ways) also sets train.compile: its warm-up
steps, which compile the network, are timed apart and printed.

Every variant runs in its own process, one after another in alternating order, so each
starts with a fresh allocator and reports its own peak memory (peak resident set on the
CPU, peak allocated on a GPU). The table shows medians over rounds and the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BATCH, IMAGE, T, SAMPLES = 128, 28, 300, 64
SEED = 0  # initial weights, data order and noise of the training runs (--seed)


def _article_config():
    from ddpm_core.config import RunConfig

    cfg = RunConfig()
    cfg.model.dim, cfg.model.dim_mults, cfg.model.channels = 28, (1, 2, 4), 1
    cfg.data.dataset, cfg.data.image_size, cfg.data.channels = "shapes", IMAGE, 1
    cfg.schedule.name, cfg.schedule.timesteps = "linear", T
    cfg.train.batch_size, cfg.train.lr, cfg.train.loss = BATCH, 1e-3, "huber"
    cfg.train.preview_every = cfg.train.checkpoint_every = 0
    cfg.train.autosave_minutes = 0
    cfg.train.steps = 10**6
    cfg.train.seed = SEED
    return cfg.validate()


def _peak_memory_mb(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---- the workers: one measurement each, in a fresh process --------------------------------


def train_article(device, steps: int, warmup: int) -> dict:
    import torch
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms

    from ddpm_core.article_forms import use_article_forms
    from ddpm_core.losses import p_losses
    from ddpm_core.schedules import NoiseSchedule
    from ddpm_core.shapes import make_shapes
    from ddpm_core.unet import build_unet

    cfg = _article_config()
    pictures = [Image.fromarray(a[0].numpy()) for a in make_shapes(8000, IMAGE, 1, seed=0).images]
    transform = transforms.Compose(
        [transforms.RandomHorizontalFlip(), transforms.ToTensor(), transforms.Lambda(lambda t: (t * 2) - 1)]
    )

    class Pictures(Dataset):
        def __len__(self):
            return len(pictures)

        def __getitem__(self, i):
            return transform(pictures[i])

    torch.manual_seed(SEED)  # what Trainer does with train.seed: the same initial weights
    loader = DataLoader(Pictures(), batch_size=BATCH, shuffle=True, drop_last=True)
    model = use_article_forms(build_unet(cfg.model)).to(device)
    schedule = NoiseSchedule.from_name("linear", T).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    batches = iter(loader)
    for i in range(warmup + steps):
        if i == warmup:
            t0 = time.perf_counter()
        try:
            batch = next(batches)
        except StopIteration:
            batches = iter(loader)
            batch = next(batches)
        batch = batch.to(device)
        optimizer.zero_grad()
        t = torch.randint(0, T, (batch.shape[0],), device=device).long()
        loss, _ = p_losses(model, schedule, batch, t, loss_type="huber")
        loss.backward()
        optimizer.step()
        losses.append(loss.item())  # the notebook prints loss.item() every 100 steps; a sync either way
    _sync(device)
    seconds = (time.perf_counter() - t0) / steps
    return {"seconds_per_step": seconds, "losses": losses, "peak_mb": _peak_memory_mb(device)}


def train_ours(
    device, steps: int, warmup: int, precision: str = "auto", graphs: bool = True, compile: bool = False
) -> dict:
    from ddpm_core.speed import describe_precision
    from ddpm_core.training import Trainer

    cfg = _article_config()
    cfg.train.precision = precision
    cfg.train.compile = compile
    trainer = Trainer(cfg, device=device, cuda_graphs=graphs)
    loop = trainer.steps()
    t0 = time.perf_counter()
    records = [next(loop) for _ in range(warmup)]
    # No host sync per step (the trainer never waits for the device): time the steps together.
    _sync(device)
    warmup_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    records += [next(loop) for _ in range(steps)]
    _sync(device)
    seconds = (time.perf_counter() - t0) / steps
    return {
        "seconds_per_step": seconds,
        "losses": [r.loss for r in records],
        "peak_mb": _peak_memory_mb(device),
        "precision": describe_precision(trainer.autocast_dtype)
        + (", compiled" if trainer.compiles else ", not compiled (CUDA only)" if compile else ""),
        "warmup_seconds": warmup_seconds,
    }


def sample_article(device, timed_steps: int) -> dict:
    import numpy as np
    import torch

    from ddpm_core.article_forms import use_article_forms
    from ddpm_core.samplers import p_sample
    from ddpm_core.schedules import NoiseSchedule
    from ddpm_core.unet import build_unet

    cfg = _article_config()
    torch.manual_seed(0)
    model = use_article_forms(build_unet(cfg.model)).to(device).eval()
    schedule = NoiseSchedule.from_name("linear", T).to(device)
    img = torch.randn(SAMPLES, 1, IMAGE, IMAGE, device=device)
    imgs = []
    p_sample(model, schedule, img, T - 1)  # warm-up
    t0 = time.perf_counter()
    with torch.no_grad():
        for i in reversed(range(T - timed_steps, T)):
            img = p_sample(model, schedule, img, i).x_prev
            imgs.append(img.cpu().numpy())  # Algorithm 2 as the notebook runs it
    seconds = (time.perf_counter() - t0) / timed_steps * T
    assert np.isfinite(imgs[-1]).all()
    return {"seconds": seconds, "peak_mb": _peak_memory_mb(device)}


def sample_ours(device, sampler: str, timed_steps: int, graphs: bool = True, precision: str = "auto") -> dict:
    import torch

    from ddpm_core.samplers import sample_loop
    from ddpm_core.schedules import NoiseSchedule
    from ddpm_core.speed import configure_backend
    from ddpm_core.unet import build_unet

    configure_backend(device)
    cfg = _article_config()
    torch.manual_seed(0)
    model = build_unet(cfg.model).to(device).eval().requires_grad_(False)
    schedule = NoiseSchedule.from_name("linear", T).to(device)
    shape = (SAMPLES, 1, IMAGE, IMAGE)
    steps = 50 if sampler == "ddim" else T
    timed = min(timed_steps, steps)
    warm = sample_loop(model, schedule, shape, sampler=sampler, steps=50, precision=precision, cuda_graphs=graphs)
    next(warm)
    warm.close()
    t0 = time.perf_counter()  # a new loop records its CUDA graph again: that time counts
    loop = sample_loop(model, schedule, shape, sampler=sampler, steps=50, precision=precision, cuda_graphs=graphs)
    for _, step in zip(range(timed), loop):
        pass
    _sync(device)
    seconds = (time.perf_counter() - t0) / timed * steps
    assert torch.isfinite(step.x_prev).all()
    return {"seconds": seconds, "peak_mb": _peak_memory_mb(device)}


def run_worker(args) -> None:
    # ddpm_core first, as the app and the command line load it: it sets OpenMP's waiting
    # policy, which OpenMP reads once, when torch loads it (the article's way has it set).
    from ddpm_core.device import pick_device

    import torch

    global SEED
    SEED = args.seed
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    kind, way = args.worker
    graphs = way != "ours-eager"
    if kind == "train":
        if way == "article":
            result = train_article(device, args.train_steps, args.warmup)
        else:
            result = train_ours(device, args.train_steps, args.warmup, args.precision, graphs, way == "ours-compiled")
    elif way == "article":
        result = sample_article(device, args.sample_steps)
    else:
        result = sample_ours(device, kind, args.sample_steps, graphs, args.precision)
    print("RESULT " + json.dumps(result))


# ---- the driver -----------------------------------------------------------------------------


def measure(kind: str, way: str, args) -> dict:
    cmd = [sys.executable, __file__, "--worker", kind, way, "--device", args.device, "--precision", args.precision]
    cmd += ["--train-steps", str(args.train_steps), "--warmup", str(args.warmup), "--sample-steps", str(args.sample_steps)]
    cmd += ["--seed", str(args.seed)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    env = dict(os.environ)
    if way == "article":
        # The notebook runs with OpenMP's default waiting; ddpm_core would set PASSIVE. An
        # empty value is not a valid policy, so OpenMP keeps its default, and ddpm_core,
        # seeing the variable set, leaves it alone.
        env["OMP_WAIT_POLICY"] = env.get("OMP_WAIT_POLICY", "")
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if out.returncode or not lines:
        sys.exit(f"the {kind}/{way} measurement failed:\n{out.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def machine() -> str:
    import torch

    from ddpm_core.device import describe_device, pick_device
    from ddpm_core.speed import bf16_is_fast

    device = pick_device("auto")
    cpu = torch.cpu.get_capabilities().get("cpu_name", platform.processor()) if hasattr(torch.cpu, "get_capabilities") else platform.processor()
    return (
        f"{describe_device(device)} | CPU: {cpu}, {os.cpu_count()} cores | torch {torch.__version__} | "
        f"fast bf16: {'yes' if bf16_is_fast(device) else 'no'}"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--precision", default="auto", help="ours: auto (bf16 where fast), fp32 or bf16")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    p.add_argument("--rounds", type=int, default=2, help="alternating repetitions of every variant (0: none)")
    p.add_argument("--train-steps", type=int, default=6, help="training steps timed per measurement")
    p.add_argument("--warmup", type=int, default=2, help="training steps run before timing")
    p.add_argument("--sample-steps", type=int, default=T, help="reverse steps timed (of 300; each costs the same)")
    p.add_argument("--loss-steps", type=int, default=0, help="also train both ways this many steps and compare losses")
    p.add_argument("--seed", type=int, default=0, help="training runs: initial weights, data order and noise")
    p.add_argument("--quick", action="store_true", help="1 round, 4 training steps, 30 sampling steps timed")
    p.add_argument("--only", nargs="+", choices=("train", "ddpm", "ddim"), default=("train", "ddpm", "ddim"))
    p.add_argument(
        "--ways",
        nargs="+",
        choices=("article", "ours", "ours-eager", "ours-compiled"),
        help="which ways to run (default: article, ours, and ours-eager on a GPU; ours-compiled trains only)",
    )
    args = p.parse_args()
    if args.worker:
        return run_worker(args)
    if args.quick:
        args.rounds, args.train_steps, args.sample_steps = 1, 4, 30

    from ddpm_core.device import pick_device

    # On a GPU "ours" replays CUDA graphs; "ours-eager" shows what the rest does without them.
    ways = args.ways or ["article", "ours"] + (["ours-eager"] if pick_device(args.device).type == "cuda" else [])
    if "article" not in ways:
        sys.exit("--ways must include article: every figure is a ratio to it")
    ours = [way for way in ways if way != "article"]
    print(machine())
    print(
        f"article config: dim 28, mults (1,2,4), 28x28x1, T={T}, batch {BATCH}; sampling {SAMPLES} images; "
        f"{args.rounds} round(s), {args.train_steps} training steps and {min(args.sample_steps, T)} reverse steps timed"
    )
    plan = []
    if "train" in args.only:
        plan.append(("train", "article", "train"))
        plan += [("train", way, "train") for way in ours]
    samplers = [way for way in ours if way != "ours-compiled"]
    if "ddpm" in args.only:
        plan.append(("ddpm", "article", "sample"))
        plan += [("ddpm", way, "ddpm") for way in samplers]
    if "ddim" in args.only:
        plan += [("ddim", way, "ddim") for way in samplers]
    results: dict = {}
    for r in range(args.rounds):
        order = plan if r % 2 == 0 else list(reversed(plan))  # alternate who goes first
        for name, way, kind in order:
            res = measure(kind, way, args)
            results.setdefault((name, way), []).append(res)
            shown = res.get("seconds_per_step", res.get("seconds"))
            print(f"  round {r + 1}: {name:5s} {way:13s} {shown:8.3f} s   peak {res['peak_mb']:7.0f} MB", flush=True)

    if results:
        for way in ours:
            print_table(results, args, way)
    if args.loss_steps:
        print(f"\nloss over {args.loss_steps} steps from the same initial weights (seed {args.seed}; mean of each fifth):")
        args.train_steps, args.warmup = args.loss_steps, 0
        for way in ("article", "ours"):
            losses = measure("train", way, args)["losses"]
            k = max(1, len(losses) // 5)
            fifths = [statistics.mean(losses[i : i + k]) for i in range(0, k * 5, k)]
            print(f"  {way:8s}" + "  ".join(f"{v:.4f}" for v in fifths), flush=True)


def print_table(results: dict, args, ours: str = "ours") -> None:
    def med(name, way, key):
        way = ours if way == "ours" else way
        return statistics.median(x[key] for x in results[(name, way)])

    def has(name):
        return (name, ours) in results

    if not any(has(name) for name in ("train", "ddpm", "ddim")):
        return
    print()
    print(f"{'':28s}{'article':>14s}{ours:>14s}{'ratio':>9s}{'target':>9s}")
    if has("train"):
        a, o = BATCH / med("train", "article", "seconds_per_step"), BATCH / med("train", "ours", "seconds_per_step")
        prec = results[("train", ours)][0].get("precision", "")
        print(f"{'training images/s':28s}{a:14.1f}{o:14.1f}{o / a:8.2f}x{'5x':>9s}   ({prec})")
        am, om = med("train", "article", "peak_mb"), med("train", "ours", "peak_mb")
        print(f"{'  peak memory (MB)':28s}{am:14.0f}{om:14.0f}{om / am:8.2f}x{'<=1x':>9s}")
        if prec.endswith(", compiled"):
            warm = med("train", "ours", "warmup_seconds")
            print(f"{'  warm-up steps (compiling)':28s}{'':14s}{warm:13.1f}s   ({args.warmup} steps, paid once per run)")
    base = med("ddpm", "article", "seconds") if ("ddpm", "article") in results else None
    if has("ddpm"):
        a, o = SAMPLES / base, SAMPLES / med("ddpm", "ours", "seconds")
        print(f"{'DDPM 300 steps, images/s':28s}{a:14.2f}{o:14.2f}{o / a:8.2f}x{'3x':>9s}")
        print(f"{'  seconds for 64 images':28s}{base:14.1f}{med('ddpm', 'ours', 'seconds'):14.1f}")
        am, om = med("ddpm", "article", "peak_mb"), med("ddpm", "ours", "peak_mb")
        print(f"{'  peak memory (MB)':28s}{am:14.0f}{om:14.0f}{om / am:8.2f}x")
    if has("ddim") and base is not None:
        o = med("ddim", "ours", "seconds")
        print(f"{'DDIM 50 vs DDPM 300, img/s':28s}{SAMPLES / base:14.2f}{SAMPLES / o:14.2f}{base / o:8.2f}x{'15x':>9s}")
        print(f"{'  peak memory (MB)':28s}{'':14s}{med('ddim', 'ours', 'peak_mb'):14.0f}")


if __name__ == "__main__":
    main()
