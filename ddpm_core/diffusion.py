"""The Gaussian diffusion math: forward process, posterior, and x_0 / ε conversions.

Shapes: x_start, x_t, noise are (B, C, H, W); t is an int64 tensor (B,) of indices 0..T-1
(index i is the paper's t = i + 1), one per batch element.
"""

from __future__ import annotations

from typing import Optional

import torch

from .schedules import NoiseSchedule


def extract(a: torch.Tensor, t: torch.Tensor, x_shape) -> torch.Tensor:
    """a[t] reshaped to (B, 1, 1, ...) so it broadcasts over x of shape x_shape.

    Unlike the article's `extract`, this stays on `a`'s device: no host round trip per step.
    """
    out = a.gather(0, t.to(a.device))
    return out.reshape(t.shape[0], *((1,) * (len(x_shape) - 1)))


# ---- q(x_t | x_0): the forward process ------------------------------------------------


def q_sample(
    schedule: NoiseSchedule,
    x_start: torch.Tensor,
    t: torch.Tensor,
    noise: Optional[torch.Tensor] = None,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Sample x_t ~ q(x_t | x_0) in closed form (paper eq. 4, Algorithm 1 line 5):

    x_t = √ᾱ_t · x_0 + √(1 − ᾱ_t) · ε,  ε ~ N(0, I).
    """
    if noise is None:
        noise = torch.randn(x_start.shape, generator=generator, device=x_start.device, dtype=x_start.dtype)
    return (
        extract(schedule.sqrt_alphas_cumprod, t, x_start.shape) * x_start
        + extract(schedule.sqrt_one_minus_alphas_cumprod, t, x_start.shape) * noise
    )


# ---- q(x_{t-1} | x_t, x_0): the posterior ----------------------------------------------


def q_posterior_mean_variance(schedule: NoiseSchedule, x_start: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor):
    """Mean μ̃_t(x_t, x_0) and variance β̃_t of q(x_{t−1} | x_t, x_0) (paper eqs. 6–7).

    Returns (mean (B,C,H,W), variance (B,1,1,1), log variance (B,1,1,1)).
    """
    mean = (
        extract(schedule.posterior_mean_coef1, t, x_t.shape) * x_start
        + extract(schedule.posterior_mean_coef2, t, x_t.shape) * x_t
    )
    variance = extract(schedule.posterior_variance, t, x_t.shape)
    log_variance = extract(schedule.posterior_log_variance_clipped, t, x_t.shape)
    return mean, variance, log_variance


# ---- conversions between x_0 and ε -----------------------------------------------------


def predict_start_from_noise(schedule: NoiseSchedule, x_t: torch.Tensor, t: torch.Tensor, noise: torch.Tensor):
    """x̂_0 = (x_t − √(1 − ᾱ_t) ε̂) / √ᾱ_t, inverting eq. 4."""
    return (
        extract(schedule.sqrt_recip_alphas_cumprod, t, x_t.shape) * x_t
        - extract(schedule.sqrt_recipm1_alphas_cumprod, t, x_t.shape) * noise
    )


def predict_noise_from_start(schedule: NoiseSchedule, x_t: torch.Tensor, t: torch.Tensor, x_start: torch.Tensor):
    """ε̂ = (x_t − √ᾱ_t x̂_0) / √(1 − ᾱ_t), the inverse of `predict_start_from_noise`."""
    return (extract(schedule.sqrt_recip_alphas_cumprod, t, x_t.shape) * x_t - x_start) / extract(
        schedule.sqrt_recipm1_alphas_cumprod, t, x_t.shape
    )
