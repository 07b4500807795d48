"""Training objective and samplers: exact relations that must hold for any network."""

import pytest
import torch
import torch.nn.functional as F

from ddpm_core import NoiseSchedule, ddim_sample_loop, ddpm_sample_loop, p_losses, q_posterior_mean_variance, q_sample
from ddpm_core.errors import ConfigError
from ddpm_core.samplers import ddim_timesteps, p_sample, sample, sample_loop
from ddpm_core.unet import Unet


class ConstantNoise(torch.nn.Module):
    """A 'model' that predicts a fixed ε: lets a test feed the true noise to a sampler step."""

    def __init__(self, eps):
        super().__init__()
        self.eps = eps
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x, t):
        return self.eps.expand_as(x)


@pytest.mark.parametrize("loss_type,fn", [("l1", F.l1_loss), ("l2", F.mse_loss), ("huber", F.smooth_l1_loss)])
def test_p_losses_match_article_and_give_per_sample(loss_type, fn):
    torch.manual_seed(0)
    s = NoiseSchedule.from_name("linear", 50)
    model = Unet(dim=8, channels=1, dim_mults=(1, 2))
    x0 = torch.rand(4, 1, 8, 8) * 2 - 1
    t = torch.tensor([0, 10, 20, 49])
    noise = torch.randn_like(x0)
    loss, per_sample = p_losses(model, s, x0, t, noise=noise, loss_type=loss_type)
    with torch.no_grad():
        pred = model(q_sample(s, x0, t, noise=noise), t)
    assert loss.item() == pytest.approx(fn(noise, pred).item(), rel=1e-5)
    assert per_sample.shape == (4,)
    assert per_sample.mean().item() == pytest.approx(loss.item(), rel=1e-5)
    assert loss.requires_grad and not per_sample.requires_grad
    with pytest.raises(ConfigError):
        p_losses(model, s, x0, t, loss_type="l3")


def test_ddpm_step_with_true_noise_gives_true_posterior_mean():
    """Eq. 11 fed the true ε equals μ̃_t(x_t, x_0) of eq. 7, and the step's spread is β̃_t."""
    s = NoiseSchedule.from_name("linear", 300)
    torch.manual_seed(1)
    x0 = torch.rand(4096, 1, 1, 1) * 2 - 1
    eps = torch.randn_like(x0)
    for i in (0, 1, 20, 150, 299):
        t = torch.full((x0.shape[0],), i, dtype=torch.long)
        x_t = q_sample(s, x0, t, noise=eps)
        step = p_sample(ConstantNoise(eps), s, x_t, i, generator=torch.Generator().manual_seed(i))
        mean, var, _ = q_posterior_mean_variance(s, x0, x_t, t)
        assert torch.allclose(step.mean, mean, atol=2e-4), i
        assert torch.allclose(step.x0_pred, x0, atol=5e-3), i
        spread = (step.x_prev - step.mean).std().item()
        if i == 0:
            assert spread == 0.0  # no noise at the last step
        else:
            assert spread == pytest.approx(var[0].sqrt().item(), rel=0.05), i


def test_ddpm_loop_starts_from_x_T_and_chains():
    s = NoiseSchedule.from_name("linear", 12)
    x0 = torch.zeros(1, 1, 2, 2)
    eps = torch.randn_like(x0)
    x_T = torch.randn(1, 1, 2, 2)
    steps = list(ddpm_sample_loop(ConstantNoise(eps), s, x_T=x_T, generator=torch.Generator().manual_seed(0)))
    assert [st.t for st in steps] == list(range(11, -1, -1)) and steps[0].index == 0 and steps[0].num_steps == 12
    assert torch.equal(steps[0].x_t, x_T)


def test_ddim_eta0_is_deterministic_and_reuses_x_T():
    torch.manual_seed(0)
    s = NoiseSchedule.from_name("linear", 100)
    model = Unet(dim=8, channels=1, dim_mults=(1, 2)).eval()
    x_T = torch.randn(3, 1, 8, 8)
    a = sample(model, s, sampler="ddim", steps=10, eta=0.0, x_T=x_T, generator=torch.Generator().manual_seed(1))
    b = sample(model, s, sampler="ddim", steps=10, eta=0.0, x_T=x_T, generator=torch.Generator().manual_seed(999))
    assert torch.equal(a, b)
    c = sample(model, s, sampler="ddim", steps=10, eta=1.0, x_T=x_T, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(a, c)


def test_ddim_with_true_noise_recovers_x0():
    """With ε_θ = the true ε, η = 0 DDIM lands on x_0 (each step keeps x̂_0 fixed)."""
    s = NoiseSchedule.from_name("linear", 200)
    x0 = torch.rand(2, 1, 4, 4) * 1.6 - 0.8
    eps = torch.randn_like(x0)
    x_T = q_sample(s, x0, torch.full((2,), 199), noise=eps)
    steps = list(ddim_sample_loop(ConstantNoise(eps), s, steps=20, x_T=x_T, clip_denoised=False))
    assert len(steps) == 20 and steps[0].t == 199 and steps[-1].t == 0
    assert torch.allclose(steps[-1].x_prev, x0, atol=1e-3)


def test_ddpm_reproducible_with_generator_and_yields_every_step():
    torch.manual_seed(0)
    s = NoiseSchedule.from_name("linear", 15)
    model = Unet(dim=8, channels=1, dim_mults=(1, 2)).eval()
    run = lambda: list(sample_loop(model, s, (2, 1, 8, 8), generator=torch.Generator().manual_seed(5)))  # noqa: E731
    a, b = run(), run()
    assert [st.t for st in a] == list(range(14, -1, -1))
    assert torch.equal(a[-1].x_prev, b[-1].x_prev)
    for st in a:
        assert st.x_t.shape == st.x0_pred.shape == st.eps_pred.shape == (2, 1, 8, 8)
    # consecutive steps chain: the output of one is the input of the next
    assert all(torch.equal(p.x_prev, n.x_t) for p, n in zip(a, a[1:]))


def test_ddim_timesteps_and_bad_arguments():
    assert ddim_timesteps(300, 1) == [299]  # one step from pure noise starts at t = T
    taus = ddim_timesteps(300, 50)
    assert len(taus) == 50 and taus[0] == 299 and taus[-1] == 0 and taus == sorted(taus, reverse=True)
    assert ddim_timesteps(10, 10) == list(range(9, -1, -1))
    with pytest.raises(ConfigError):
        ddim_timesteps(10, 11)
    s = NoiseSchedule.from_name("linear", 10)
    model = Unet(dim=8, channels=1, dim_mults=(1,))
    with pytest.raises(ConfigError):
        next(ddim_sample_loop(model, s, (1, 1, 4, 4), eta=2.0))
    with pytest.raises(ConfigError):
        sample_loop(model, s, (1, 1, 4, 4), sampler="euler")
    with pytest.raises(ConfigError, match="from 1 to T=10, not 0"):  # not taken for "the default"
        next(sample_loop(model, s, (1, 1, 4, 4), sampler="ddim", steps=0))


class _GaussianDataEps(torch.nn.Module):
    """The optimal ε-prediction when every pixel of the data is N(μ, s²):
    ε̂(x_t, t) = E[ε | x_t] = √(1−ᾱ_t)·(x_t − √ᾱ_t·μ) / (ᾱ_t·s² + 1 − ᾱ_t)."""

    def __init__(self, schedule: NoiseSchedule, mu: float, s: float):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # samplers read the device from a parameter
        self.schedule, self.mu, self.var = schedule, mu, s * s

    def forward(self, x, t):
        a = self.schedule.alphas_cumprod[t].view(-1, 1, 1, 1)
        return (1 - a).sqrt() * (x - a.sqrt() * self.mu) / (a * self.var + 1 - a)


@pytest.mark.parametrize("steps", [1, 2, 50])
def test_ddim_lands_on_the_data_from_pure_noise_in_any_number_of_steps(steps):
    # With one step the network must be asked at t = T, where x_T is pure noise. Asked at
    # t = 1 (as it was), it took x_T for a nearly clean image: the output was noise, std 0.7.
    s = NoiseSchedule.from_name("linear", 1000)
    model = _GaussianDataEps(s, mu=0.3, s=0.3)
    out = sample(model, s, (64, 1, 8, 8), sampler="ddim", steps=steps, generator=torch.Generator().manual_seed(0))
    # Few deterministic steps shrink the spread toward μ; they never leave the data's range.
    assert abs(out.mean().item() - 0.3) < 0.02 and out.std().item() < 0.35, (steps, out.mean(), out.std())


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_sampling_more_attention_than_memory_is_refused_before_a_step(monkeypatch, sampler):
    # At 64 px without downsampling the middle attention takes 512 MB an image in fp32
    # (4 heads, scores and softmax, 4096² each); 16 of them with 1 GB free are refused, in
    # one line, before the first step.
    from ddpm_core import memory
    from ddpm_core.errors import OutOfMemory

    model = Unet(dim=8, channels=1, dim_mults=(1,))
    schedule = NoiseSchedule.from_name("linear", 10)
    monkeypatch.setattr(memory, "free_bytes", lambda device: 2**30)
    with pytest.raises(OutOfMemory) as e:
        next(sample_loop(model, schedule, (16, 1, 64, 64), sampler=sampler, steps=2))
    message = str(e.value)
    assert message.startswith("sampling 16 images: the middle of the U-Net works on 64×64 pixels")
    assert "512.0 MB per image (8.0 GB in all)" in message and "\n" not in message
    assert next(sample_loop(model, schedule, (1, 1, 64, 64), sampler=sampler, steps=2)).index == 0  # one fits
