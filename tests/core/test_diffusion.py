"""The forward process and posterior, checked statistically and against definitions."""

import torch

from ddpm_core import NoiseSchedule, extract, q_posterior_mean_variance, q_sample
from ddpm_core.diffusion import predict_noise_from_start, predict_start_from_noise


def test_extract_shapes_and_values():
    a = torch.arange(10.0)
    t = torch.tensor([0, 3, 9])
    out = extract(a, t, (3, 1, 4, 4))
    assert out.shape == (3, 1, 1, 1)
    assert out.flatten().tolist() == [0.0, 3.0, 9.0]


def test_q_sample_mean_and_variance_match_closed_form():
    s = NoiseSchedule.from_name("linear", 300)
    g = torch.Generator().manual_seed(0)
    x0 = torch.tensor([0.8, -0.5, 0.1])
    draws = 200_000
    for step in (0, 50, 150, 299):
        t = torch.full((draws,), step, dtype=torch.long)
        x = x0.expand(draws, 3)[:, :, None, None]
        xt = q_sample(s, x, t, generator=g)
        mean, var = xt.mean(0).flatten(), xt.var(0).flatten()
        a_bar = s.alphas_cumprod[step]
        assert torch.allclose(mean, a_bar.sqrt() * x0, atol=0.01)
        assert torch.allclose(var, (1 - a_bar).expand(3), rtol=0.02, atol=2e-4)


def test_q_sample_per_element_t_and_explicit_noise():
    s = NoiseSchedule.from_name("cosine", 100)
    x0 = torch.randn(4, 1, 8, 8)
    noise = torch.randn_like(x0)
    t = torch.tensor([0, 10, 50, 99])
    xt = q_sample(s, x0, t, noise=noise)
    for i, ti in enumerate(t.tolist()):
        expected = s.sqrt_alphas_cumprod[ti] * x0[i] + s.sqrt_one_minus_alphas_cumprod[ti] * noise[i]
        assert torch.allclose(xt[i], expected, atol=1e-6)


def test_q_sample_generator_reproducible():
    s = NoiseSchedule.from_name("linear", 50)
    x0 = torch.zeros(2, 1, 4, 4)
    t = torch.tensor([10, 20])
    a = q_sample(s, x0, t, generator=torch.Generator().manual_seed(7))
    b = q_sample(s, x0, t, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


def test_x0_eps_conversions_invert_each_other():
    s = NoiseSchedule.from_name("linear", 300)
    x0 = torch.rand(3, 1, 4, 4) * 2 - 1
    eps = torch.randn_like(x0)
    t = torch.tensor([5, 100, 250])
    xt = q_sample(s, x0, t, noise=eps)
    assert torch.allclose(predict_start_from_noise(s, xt, t, eps), x0, atol=1e-4)
    assert torch.allclose(predict_noise_from_start(s, xt, t, x0), eps, atol=1e-3)


def test_posterior_is_gaussian_product():
    """μ̃ and β̃ of q(x_{t-1}|x_t,x_0) equal the product of q(x_t|x_{t-1}) and q(x_{t-1}|x_0)."""
    s = NoiseSchedule.from_name("linear", 300).to(torch.float64)
    x0 = torch.tensor([[[[0.3]]]], dtype=torch.float64)
    xt = torch.tensor([[[[-0.2]]]], dtype=torch.float64)
    for step in (1, 10, 200):
        t = torch.tensor([step])
        mean, var, _ = q_posterior_mean_variance(s, x0, xt, t)
        beta, a_bar_prev = s.betas[step].double(), s.alphas_cumprod_prev[step].double()
        # precision-weighted combination of N(x_t/√α, β/α) and N(√ᾱ_prev x0, 1 − ᾱ_prev)
        alpha = 1 - beta
        p1, m1 = alpha / beta, xt / alpha.sqrt()
        p2, m2 = 1 / (1 - a_bar_prev), a_bar_prev.sqrt() * x0
        exp_var = 1 / (p1 + p2)
        exp_mean = exp_var * (p1 * m1 + p2 * m2)
        assert torch.allclose(var.flatten(), exp_var.reshape(1), rtol=1e-4)
        assert torch.allclose(mean, exp_mean, rtol=1e-3, atol=1e-5)  # buffers are float32
