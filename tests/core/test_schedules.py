"""Schedules against the article's formulas, and the derived constants against their definitions."""

import math

import pytest
import torch

from ddpm_core import (
    NoiseSchedule,
    cosine_beta_schedule,
    linear_beta_schedule,
    quadratic_beta_schedule,
    sigmoid_beta_schedule,
)
from ddpm_core.errors import ConfigError


@pytest.mark.parametrize("T", [10, 300, 1000])
def test_linear_matches_article(T):
    b = linear_beta_schedule(T)
    assert b.shape == (T,)
    assert b[0].item() == pytest.approx(1e-4)
    assert b[-1].item() == pytest.approx(0.02)
    # evenly spaced
    d = b[1:] - b[:-1]
    assert torch.allclose(d, d.mean().expand_as(d), atol=1e-7)


def test_quadratic_matches_article():
    T = 300
    b = quadratic_beta_schedule(T)
    root = torch.linspace(1e-4**0.5, 0.02**0.5, T)
    assert torch.allclose(b, root**2)
    assert b[0].item() == pytest.approx(1e-4) and b[-1].item() == pytest.approx(0.02)


def test_sigmoid_matches_article():
    T = 300
    b = sigmoid_beta_schedule(T)
    x = torch.linspace(-6, 6, T)
    expected = 1e-4 + (0.02 - 1e-4) / (1 + torch.exp(-x))
    assert torch.allclose(b, expected, atol=1e-8)
    assert bool((b[1:] > b[:-1]).all())


def test_cosine_matches_article_formula():
    T, s = 300, 0.008
    b = cosine_beta_schedule(T)
    f = lambda t: math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    for t in [1, 50, 150, 299]:
        expected = 1 - (f(t) / f(0)) / (f(t - 1) / f(0))
        assert b[t - 1].item() == pytest.approx(min(max(expected, 1e-4), 0.9999), rel=1e-4, abs=1e-6)
    # clipped as in the article
    assert b.min().item() >= 1e-4 - 1e-9 and b.max().item() <= 0.9999 + 1e-9
    assert b[-1].item() == pytest.approx(0.9999)  # the last step is clipped


@pytest.mark.parametrize("name", ["linear", "cosine", "quadratic", "sigmoid"])
def test_derived_quantities(name):
    T = 200
    s = NoiseSchedule.from_name(name, T)
    b = s.betas.double()
    a = 1 - b
    a_bar = torch.cumprod(a, 0)
    assert s.num_timesteps == T
    assert torch.allclose(s.alphas_cumprod.double(), a_bar, rtol=1e-5, atol=1e-7), "ᾱ is the cumulative product"
    assert s.alphas_cumprod_prev[0].item() == 1.0
    assert torch.allclose(s.alphas_cumprod_prev[1:], s.alphas_cumprod[:-1])
    assert torch.allclose(s.sqrt_alphas_cumprod.double(), a_bar.sqrt(), rtol=1e-5)
    assert torch.allclose(s.sqrt_one_minus_alphas_cumprod.double(), (1 - a_bar).sqrt(), rtol=1e-5)
    assert torch.allclose(s.sqrt_recip_alphas.double(), 1 / a.sqrt(), rtol=1e-5)
    # posterior variance: β̃_t = β_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t), as the article writes it
    a_bar_prev = torch.cat([torch.ones(1, dtype=torch.float64), a_bar[:-1]])
    post = b * (1 - a_bar_prev) / (1 - a_bar)
    assert torch.allclose(s.posterior_variance.double(), post, rtol=1e-4, atol=1e-9)
    assert s.posterior_variance[0].item() == 0.0
    assert bool((s.posterior_variance[1:] <= s.betas[1:] + 1e-7).all()), "β̃_t ≤ β_t"
    assert torch.allclose(s.snr.double(), a_bar / (1 - a_bar), rtol=1e-4)
    assert torch.allclose(s.log_snr.double(), torch.log(a_bar / (1 - a_bar)), rtol=1e-4, atol=1e-4)
    assert bool((s.log_snr[1:] < s.log_snr[:-1]).all()), "SNR falls with t"


def test_schedule_moves_as_a_unit():
    s = NoiseSchedule.from_name("linear", 10)
    s = s.to(torch.float64)  # any .to() conversion reaches every buffer
    assert all(getattr(s, k).dtype == torch.float64 for k in NoiseSchedule.BUFFERS)
    numpy = s.as_numpy()
    assert set(numpy) == set(NoiseSchedule.BUFFERS)


def test_bad_schedule_names_and_sizes():
    with pytest.raises(ConfigError, match="unknown schedule"):
        NoiseSchedule.from_name("exponential", 10)
    with pytest.raises(ConfigError):
        NoiseSchedule.from_name("linear", 1)
    with pytest.raises(ConfigError):
        NoiseSchedule(torch.tensor([0.1, 1.5]))
