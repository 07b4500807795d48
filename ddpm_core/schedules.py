"""Variance schedules β_1..β_T and every quantity derived from them.

The four schedule functions are the article's, with its names and constants. `NoiseSchedule`
computes the derived constants once, in float64 as OpenAI's improved-diffusion does (ᾱ is
a long product: float32 loses digits near t = T), and keeps them as float32 buffers of an
`nn.Module`, so `schedule.to(device)` moves them all and sampling never goes back to the
host for a constant.

Indexing follows the article and the code of the paper: index i = 0..T-1 stands for the
paper's t = i + 1.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import SCHEDULE_NAMES
from .errors import ConfigError

BETA_START = 1e-4  # the paper's β_1
BETA_END = 0.02  # the paper's β_T


def linear_beta_schedule(timesteps: int) -> torch.Tensor:
    """Ho et al. 2020: β rises linearly from 1e-4 to 0.02."""
    return torch.linspace(BETA_START, BETA_END, timesteps)


def cosine_beta_schedule(timesteps: int, s: float = 0.008) -> torch.Tensor:
    """Nichol & Dhariwal 2021, eq. 17: ᾱ_t = f(t)/f(0), f(t) = cos²((t/T + s)/(1 + s)·π/2).

    β_t = 1 − ᾱ_t/ᾱ_{t−1}, clipped to [1e-4, 0.9999] as in the article (the paper clips
    at 0.999 to avoid singularities near t = T).
    """
    steps = timesteps + 1
    x = torch.linspace(0, timesteps, steps)
    alphas_cumprod = torch.cos(((x / timesteps) + s) / (1 + s) * math.pi * 0.5) ** 2
    alphas_cumprod = alphas_cumprod / alphas_cumprod[0]
    betas = 1 - (alphas_cumprod[1:] / alphas_cumprod[:-1])
    return torch.clip(betas, 0.0001, 0.9999)


def quadratic_beta_schedule(timesteps: int) -> torch.Tensor:
    """√β rises linearly from √1e-4 to √0.02."""
    return torch.linspace(BETA_START**0.5, BETA_END**0.5, timesteps) ** 2


def sigmoid_beta_schedule(timesteps: int) -> torch.Tensor:
    """β follows a sigmoid over [-6, 6], scaled into [1e-4, 0.02]."""
    betas = torch.linspace(-6, 6, timesteps)
    return torch.sigmoid(betas) * (BETA_END - BETA_START) + BETA_START


BETA_SCHEDULES = {
    "linear": linear_beta_schedule,
    "cosine": cosine_beta_schedule,
    "quadratic": quadratic_beta_schedule,
    "sigmoid": sigmoid_beta_schedule,
}
assert tuple(BETA_SCHEDULES) == SCHEDULE_NAMES


def beta_schedule(name: str, timesteps: int) -> torch.Tensor:
    """β_1..β_T of the named schedule, shape (T,)."""
    try:
        fn = BETA_SCHEDULES[name]
    except KeyError:
        raise ConfigError(f"unknown schedule {name!r}: choose one of {', '.join(BETA_SCHEDULES)}") from None
    if not isinstance(timesteps, int) or timesteps < 2:
        raise ConfigError(f"the number of timesteps T must be a whole number of at least 2, not {timesteps!r}")
    return fn(timesteps)


class NoiseSchedule(nn.Module):
    """Every per-timestep constant the math and the plots need, as (T,) float32 buffers.

    q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I)                                  (paper eq. 4)
    q(x_{t−1} | x_t, x_0) = N(μ̃_t, β̃_t I), μ̃_t = coef1·x_0 + coef2·x_t,
        β̃_t = β_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t)                                   (paper eqs. 6, 7)
    SNR(t) = ᾱ_t / (1 − ᾱ_t)                                      (Kingma et al. 2021)
    """

    BUFFERS = (
        "betas",
        "alphas",
        "alphas_cumprod",
        "alphas_cumprod_prev",
        "sqrt_alphas_cumprod",
        "sqrt_one_minus_alphas_cumprod",
        "sqrt_recip_alphas",
        "sqrt_recip_alphas_cumprod",
        "sqrt_recipm1_alphas_cumprod",
        "posterior_variance",
        "posterior_log_variance_clipped",
        "posterior_mean_coef1",
        "posterior_mean_coef2",
        "snr",
        "log_snr",
    )

    def __init__(self, betas: torch.Tensor, name: str = "custom"):
        super().__init__()
        self.name = name
        b = betas.detach().to(torch.float64).flatten()
        if b.numel() < 2 or not bool(((b > 0) & (b < 1)).all()):
            raise ConfigError("every β_t must lie strictly between 0 and 1, and T must be at least 2")
        a = 1.0 - b
        a_bar = torch.cumprod(a, dim=0)
        a_bar_prev = torch.cat([a_bar.new_ones(1), a_bar[:-1]])  # ᾱ_0 := 1
        post_var = b * (1.0 - a_bar_prev) / (1.0 - a_bar)
        values = {
            "betas": b,
            "alphas": a,
            "alphas_cumprod": a_bar,
            "alphas_cumprod_prev": a_bar_prev,
            "sqrt_alphas_cumprod": a_bar.sqrt(),
            "sqrt_one_minus_alphas_cumprod": (1.0 - a_bar).sqrt(),
            "sqrt_recip_alphas": (1.0 / a).sqrt(),
            "sqrt_recip_alphas_cumprod": (1.0 / a_bar).sqrt(),
            "sqrt_recipm1_alphas_cumprod": (1.0 / a_bar - 1.0).sqrt(),
            "posterior_variance": post_var,
            # β̃_1 = 0; log of it is -inf, so use β̃_2 there, as improved-diffusion does.
            "posterior_log_variance_clipped": torch.log(torch.cat([post_var[1:2], post_var[1:]])),
            "posterior_mean_coef1": b * a_bar_prev.sqrt() / (1.0 - a_bar),
            "posterior_mean_coef2": (1.0 - a_bar_prev) * a.sqrt() / (1.0 - a_bar),
            "snr": a_bar / (1.0 - a_bar),
            "log_snr": torch.log(a_bar) - torch.log1p(-a_bar),
        }
        for key in self.BUFFERS:
            self.register_buffer(key, values[key].to(torch.float32), persistent=False)

    @classmethod
    def from_name(cls, name: str, timesteps: int) -> "NoiseSchedule":
        return cls(beta_schedule(name, timesteps), name=name)

    @property
    def num_timesteps(self) -> int:
        """T."""
        return self.betas.shape[0]

    @property
    def device(self) -> torch.device:
        return self.betas.device

    def as_numpy(self) -> dict:
        """All buffers as float64 numpy arrays on the CPU, for plots and readouts."""
        return {k: getattr(self, k).detach().cpu().double().numpy() for k in self.BUFFERS}

    def extra_repr(self) -> str:
        return f"name={self.name!r}, T={self.num_timesteps}"
