"""Reverse-process samplers as generators: one `SampleStep` per denoising step.

The caller decides what happens between steps (a progress bar, a frame in the viewer, a
stop button), as OpenAI's `p_sample_loop_progressive` does. Both samplers take an optional
starting x_T and a `torch.Generator`, so the same noise can be reused across checkpoints
and samplers. Every schedule constant is read on the model's device: no host round trip.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, NamedTuple, Optional, Sequence

import torch

from .config import SAMPLER_NAMES
from .cuda_graphs import denoiser, gpu_work
from .diffusion import extract, predict_noise_from_start, predict_start_from_noise
from .errors import ConfigError
from .memory import check_attention_fits
from .schedules import NoiseSchedule
from .speed import autocast_dtype


@dataclass
class SampleStep:
    """One reverse step. Tensors are (B, C, H, W) on the model's device.

    index: 0-based number of this step; num_steps: how many steps the run has;
    t: the timestep index (0..T-1) the model was evaluated at;
    x_t: the input of this step; eps_pred: ε̂ = ε_θ(x_t, t); x0_pred: x̂_0 from ε̂;
    x_prev: the output, x_{t-1} (after the last step: the sample x_0).
    """

    index: int
    num_steps: int
    t: int
    x_t: torch.Tensor
    eps_pred: torch.Tensor
    x0_pred: torch.Tensor
    x_prev: torch.Tensor


def _randn(shape, like_device, dtype, generator: Optional[torch.Generator]) -> torch.Tensor:
    # A generator may live on another device than the model (a CPU generator gives the same
    # noise on every machine); draw where it lives, then move.
    gen_device = generator.device if generator is not None else like_device
    return torch.randn(shape, generator=generator, device=gen_device, dtype=dtype).to(like_device)


def _start(model, shape, x_T, generator, dtype: Optional[torch.dtype]) -> torch.Tensor:
    device = next(model.parameters()).device
    b, _, h, _ = x_T.shape if x_T is not None else shape
    if hasattr(model, "middle_attention_bytes"):  # any ε network will do; ours is checked
        check_attention_fits(model, int(h), int(b), dtype, device, "sampling")
    with gpu_work(device):
        if x_T is not None:
            return x_T.to(device=device, dtype=torch.float32)
        if shape is None:
            raise ValueError("give either shape or x_T")
        return _randn(tuple(shape), device, torch.float32, generator)


class PStep(NamedTuple):
    """One reverse step's results: the mean of p_θ(x_{t-1} | x_t) and a draw from it."""

    x_prev: torch.Tensor
    mean: torch.Tensor
    eps_pred: torch.Tensor
    x0_pred: torch.Tensor


@torch.no_grad()
def p_sample(
    model,
    schedule: NoiseSchedule,
    x: torch.Tensor,
    i: int,
    generator: Optional[torch.Generator] = None,
    clip_denoised: bool = False,
    precision: str = "fp32",
) -> PStep:
    """One step of the paper's Algorithm 2 at timestep index i, with σ_t² = β̃_t (the article's).

    x_{t-1} = 1/√α_t · (x_t − β_t/√(1 − ᾱ_t) · ε_θ(x_t, t)) + σ_t z      (eq. 11, line 4)
    z = 0 at the last step (i = 0). With clip_denoised, x̂_0 is clamped to [-1, 1] and the
    mean taken from the posterior q(x_{t-1} | x_t, x̂_0) (eq. 7; equal to eq. 11 unclamped).
    precision: 'fp32', 'bf16' or 'auto' for the network only; the update is always fp32.
    """
    eps_fn = denoiser(model, x, autocast_dtype(precision, x.device), graphs=False)
    return _p_step(eps_fn, schedule, x, i, generator, clip_denoised)


def _p_step(eps_fn, schedule, x, i, generator, clip_denoised) -> PStep:
    t = torch.full((x.shape[0],), i, device=x.device, dtype=torch.long)
    eps = eps_fn(x, t)
    x0 = predict_start_from_noise(schedule, x, t, eps)
    if clip_denoised:
        x0 = x0.clamp(-1.0, 1.0)
        mean = (
            extract(schedule.posterior_mean_coef1, t, x.shape) * x0
            + extract(schedule.posterior_mean_coef2, t, x.shape) * x
        )
    else:
        mean = extract(schedule.sqrt_recip_alphas, t, x.shape) * (
            x - extract(schedule.betas, t, x.shape) * eps / extract(schedule.sqrt_one_minus_alphas_cumprod, t, x.shape)
        )
    if i == 0:
        return PStep(mean, mean, eps, x0)
    noise = _randn(x.shape, x.device, x.dtype, generator)
    return PStep(mean + extract(schedule.posterior_variance, t, x.shape).sqrt() * noise, mean, eps, x0)


@torch.no_grad()
def ddpm_sample_loop(
    model,
    schedule: NoiseSchedule,
    shape: Optional[Sequence[int]] = None,
    *,
    x_T: Optional[torch.Tensor] = None,
    generator: Optional[torch.Generator] = None,
    clip_denoised: bool = False,
    precision: str = "fp32",
    cuda_graphs: bool = True,
) -> Iterator[SampleStep]:
    """Ancestral sampling (Algorithm 2): `p_sample` for t = T … 1, from x_T ~ N(0, I).

    cuda_graphs: on a GPU, replay the network as one recorded graph (cuda_graphs.py).
    """
    dtype = autocast_dtype(precision, next(model.parameters()).device)
    x = _start(model, shape, x_T, generator, dtype)
    eps_fn = denoiser(model, x, dtype, graphs=cuda_graphs)
    T = schedule.num_timesteps
    for index, i in enumerate(reversed(range(T))):
        with gpu_work(x.device):  # never while another thread records a CUDA graph
            step = _p_step(eps_fn, schedule, x, i, generator, clip_denoised)
        yield SampleStep(index, T, i, x, step.eps_pred, step.x0_pred, step.x_prev)
        x = step.x_prev


def ddim_timesteps(num_timesteps: int, steps: int) -> list[int]:
    """The subsequence τ of timestep indices DDIM visits, evenly spaced from T-1 down to 0."""
    if not isinstance(steps, int) or not 1 <= steps <= num_timesteps:
        raise ConfigError(f"DDIM steps must be a whole number from 1 to T={num_timesteps}, not {steps!r}")
    if steps == 1:
        # One step goes from x_T, which is pure noise: at index T-1. (linspace would give
        # its start, 0, and the network would read x_T as x_1, nearly clean.)
        return [num_timesteps - 1]
    taus = torch.linspace(0, num_timesteps - 1, steps).round().long().unique().tolist()
    return sorted(taus, reverse=True)


@torch.no_grad()
def ddim_sample_loop(
    model,
    schedule: NoiseSchedule,
    shape: Optional[Sequence[int]] = None,
    *,
    steps: int = 50,
    eta: float = 0.0,
    x_T: Optional[torch.Tensor] = None,
    generator: Optional[torch.Generator] = None,
    clip_denoised: bool = True,
    precision: str = "fp32",
    cuda_graphs: bool = True,
) -> Iterator[SampleStep]:
    """DDIM (Song et al. 2021, eq. 12) over `steps` of the T timesteps; η = 0 is deterministic.

    x_{τ-1} = √ᾱ_prev · x̂_0 + √(1 − ᾱ_prev − σ²) · ε̂ + σ z,
    σ = η · √((1 − ᾱ_prev)/(1 − ᾱ_τ)) · √(1 − ᾱ_τ/ᾱ_prev)                    (eq. 16)
    With few steps an unclamped x̂_0 can overshoot, so by default x̂_0 is clamped to [-1, 1]
    and ε̂ recomputed from it (as diffusers' `clip_sample` does).
    """
    if not 0.0 <= float(eta) <= 1.0:
        raise ConfigError(f"DDIM eta must be between 0 (deterministic) and 1 (like DDPM), not {eta!r}")
    dtype = autocast_dtype(precision, next(model.parameters()).device)
    x = _start(model, shape, x_T, generator, dtype)
    taus = ddim_timesteps(schedule.num_timesteps, steps)
    eps_fn = denoiser(model, x, dtype, graphs=cuda_graphs)
    a_bar = schedule.alphas_cumprod
    one = torch.ones((), device=a_bar.device)
    for index, i in enumerate(taus):
        last = index + 1 == len(taus)
        a_prev = one if last else a_bar[taus[index + 1]]  # ᾱ before step 1 is 1
        with gpu_work(x.device):  # never while another thread records a CUDA graph
            eps, x0, x_prev = _ddim_step(eps_fn, schedule, x, i, a_prev, eta, not last, clip_denoised, generator)
        yield SampleStep(index, len(taus), i, x, eps, x0, x_prev)
        x = x_prev


def _ddim_step(eps_fn, schedule, x, i, a_prev, eta, add_noise, clip_denoised, generator):
    """One DDIM update from timestep index i to the one whose ᾱ is a_prev: (ε̂, x̂_0, x_prev)."""
    t = torch.full((x.shape[0],), i, device=x.device, dtype=torch.long)
    eps = eps_fn(x, t)
    x0 = predict_start_from_noise(schedule, x, t, eps)
    if clip_denoised:
        x0 = x0.clamp(-1.0, 1.0)
        eps = predict_noise_from_start(schedule, x, t, x0)
    a_t = schedule.alphas_cumprod[i]
    sigma = eta * ((1 - a_prev) / (1 - a_t)).sqrt() * (1 - a_t / a_prev).sqrt()
    x_prev = a_prev.sqrt() * x0 + (1 - a_prev - sigma**2).clamp(min=0).sqrt() * eps
    if eta > 0 and add_noise:
        x_prev = x_prev + sigma * _randn(x.shape, x.device, x.dtype, generator)
    return eps, x0, x_prev


def sample_loop(
    model,
    schedule: NoiseSchedule,
    shape: Optional[Sequence[int]] = None,
    *,
    sampler: str = "ddpm",
    steps: Optional[int] = None,
    eta: float = 0.0,
    x_T: Optional[torch.Tensor] = None,
    generator: Optional[torch.Generator] = None,
    precision: str = "fp32",
    cuda_graphs: bool = True,
) -> Iterator[SampleStep]:
    """Pick a sampler by name: 'ddpm' (all T steps) or 'ddim' (`steps` steps, default 50).

    precision: 'fp32', 'bf16' or 'auto' (bf16 where the hardware is fast at it).
    cuda_graphs: on a GPU, replay the network as one recorded graph per step.
    """
    common = dict(x_T=x_T, generator=generator, precision=precision, cuda_graphs=cuda_graphs)
    if sampler == "ddpm":
        return ddpm_sample_loop(model, schedule, shape, **common)
    if sampler == "ddim":
        if steps is None:  # 0 is not "the default": ddim_timesteps refuses it
            steps = min(50, schedule.num_timesteps)
        return ddim_sample_loop(model, schedule, shape, steps=steps, eta=eta, **common)
    raise ConfigError(f"unknown sampler {sampler!r}: choose one of {', '.join(SAMPLER_NAMES)}")


def sample(model, schedule: NoiseSchedule, shape=None, **kwargs) -> torch.Tensor:
    """Run a sampler to the end and return the final x_0 (B, C, H, W)."""
    last = None
    for last in sample_loop(model, schedule, shape, **kwargs):
        pass
    return last.x_prev
