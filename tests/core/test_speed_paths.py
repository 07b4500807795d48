"""Every faster path computes what the plain fp32 path computes, within a stated tolerance.

Tolerances: bf16 keeps 8 bits of mantissa (relative error ~0.4% per operation), so through
the whole U-Net ε̂ may drift by a few hundredths; anything that only changes memory layout
or the order of a reduction must agree to float32 rounding (1e-5).
"""

import numpy as np
import pytest
import torch

from ddpm_core import RunConfig, Trainer, article_forms
from ddpm_core.config import ModelConfig
from ddpm_core.errors import ConfigError
from ddpm_core.samplers import sample
from ddpm_core.schedules import NoiseSchedule
from ddpm_core import speed
from ddpm_core.unet import build_unet
from ddpm_core.unet_blocks import Attention, LinearAttention, Upsample, WeightStandardizedConv2d

BF16_EPS_TOLERANCE = 0.05  # mean |ε̂_bf16 − ε̂_fp32| for a 2 M-parameter U-Net


def article_model(dim=28, mults=(1, 2, 4)):
    torch.manual_seed(0)
    return build_unet(ModelConfig(dim=dim, dim_mults=mults, channels=1)).eval()


def test_precision_names():
    assert speed.autocast_dtype("fp32", "cpu") is None
    assert speed.autocast_dtype("bf16", "cpu") is torch.bfloat16
    assert speed.autocast_dtype("auto", "cpu") == (torch.bfloat16 if speed.bf16_is_fast("cpu") else None)
    assert speed.autocast_dtype("auto", "cuda") is None  # TF32: faster than bf16 at this size
    assert speed.autocast_dtype("bf16", "cuda") is torch.bfloat16
    with pytest.raises(ConfigError, match="precision"):
        speed.autocast_dtype("fp8", "cpu")
    with pytest.raises(ConfigError, match="train.precision"):
        RunConfig.from_dict({"train": {"precision": "half"}})


def test_bf16_network_output_stays_close_to_fp32():
    model = article_model()
    x = torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([0, 10, 50, 100, 150, 200, 250, 299])
    with torch.no_grad():
        ref = model(x, t)
        with speed.autocast("cpu", torch.bfloat16):
            fast = model(x, t).float()
    diff = (fast - ref).abs()
    assert diff.mean() < BF16_EPS_TOLERANCE
    assert torch.corrcoef(torch.stack([fast.flatten(), ref.flatten()]))[0, 1] > 0.99


@pytest.mark.parametrize(
    "make, reference, shape",
    [
        (Attention, article_forms.attention, (3, 24, 6, 5)),
        (LinearAttention, article_forms.linear_attention, (3, 24, 6, 5)),  # fewer positions than 2·channels: plain order
        (LinearAttention, article_forms.linear_attention, (3, 8, 12, 10)),  # more: v and W_out folded into the products
        (lambda c: Upsample(c, 5), article_forms.upsample, (3, 6, 5, 7)),  # by output parity, no ×2 image
        (Upsample, article_forms.upsample, (2, 4, 1, 1)),  # a 1×1 image: every tap but the centre is padding
        # standardised per output channel by layer_norm over the kernel's other dimensions
        (lambda c: WeightStandardizedConv2d(c, 7, 3, padding=1), article_forms.weight_standardized_conv, (3, 5, 6, 6)),
    ],
)
def test_fast_block_forms_equal_the_article_forms(make, reference, shape):
    torch.manual_seed(0)
    block = make(shape[1])
    x = torch.randn(shape, requires_grad=True)
    out, expected = block(x), reference(block, x)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    # The gradients, which training follows, agree too.
    grads = torch.autograd.grad(out.square().sum(), [x, *block.parameters()])
    expected_grads = torch.autograd.grad(expected.square().sum(), [x, *block.parameters()])
    for g, e in zip(grads, expected_grads):
        torch.testing.assert_close(g, e, atol=1e-4, rtol=1e-4)
    with torch.no_grad():  # sampling's paths, which may compute without gradients in mind
        torch.testing.assert_close(block(x), expected, atol=1e-5, rtol=1e-5)


def test_the_whole_network_equals_the_article_forms():
    model = article_model()
    x, t = torch.randn(4, 1, 28, 28), torch.tensor([0, 10, 150, 299])
    with torch.no_grad():
        fast = model(x, t)
        plain = article_forms.use_article_forms(article_model())(x, t)
    torch.testing.assert_close(fast, plain, atol=1e-5, rtol=1e-4)


def test_folded_linear_attention_in_bf16_stays_close_to_fp32():
    torch.manual_seed(0)
    block = LinearAttention(28)
    x = torch.randn(4, 28, 28, 28)
    with torch.no_grad():
        expected = article_forms.linear_attention(block, x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = block(x).float()
    assert (out - expected).abs().mean() < 0.02 * expected.abs().mean() + 1e-3


def tiny(precision: str, steps=30) -> RunConfig:
    cfg = RunConfig()
    cfg.model.dim, cfg.model.dim_mults = 8, (1, 2)
    cfg.data.image_size, cfg.data.limit = 8, 512
    cfg.schedule.timesteps = 50
    cfg.train.batch_size, cfg.train.steps, cfg.train.lr = 32, steps, 2e-3
    cfg.train.preview_every, cfg.train.device, cfg.train.precision = 0, "cpu", precision
    return cfg.validate()


def test_bf16_training_follows_the_fp32_loss_curve():
    # Same data, t and ε draws (one generator); only the arithmetic differs.
    fp32 = np.array([r.loss for r in Trainer(tiny("fp32", 60)).steps()])
    bf16 = np.array([r.loss for r in Trainer(tiny("bf16", 60)).steps()])
    assert abs(bf16[0] - fp32[0]) < 0.02 * fp32[0]  # first step: same weights, same batch
    # Later the weights drift apart a little; the curves must still agree on average.
    assert abs(bf16[-20:].mean() - fp32[-20:].mean()) < 0.1 * fp32[-20:].mean()
    assert bf16[-20:].mean() < 0.7 * bf16[:5].mean()  # and bf16 really learns


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_bf16_sampling_stays_close_to_fp32(sampler):
    model = article_model(dim=16, mults=(1, 2)).requires_grad_(False)
    schedule = NoiseSchedule.from_name("linear", 50)
    out = {}
    for precision in ("fp32", "bf16"):
        gen = torch.Generator().manual_seed(3)
        out[precision] = sample(model, schedule, (6, 1, 16, 16), sampler=sampler, steps=10, generator=gen, precision=precision)
    # An untrained network's ε̂ errors accumulate over the steps; the samples must still match.
    assert (out["bf16"] - out["fp32"]).abs().mean() < 0.05 * out["fp32"].abs().mean() + 0.02


def test_sampler_precision_is_checked_before_the_first_step():
    model = article_model(dim=8, mults=(1,))
    with pytest.raises(ConfigError, match="precision"):
        sample(model, NoiseSchedule.from_name("linear", 10), (1, 1, 8, 8), precision="fp16")


def test_tuned_allocator_changes_nothing_computed():
    model = article_model(dim=8, mults=(1, 2))
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([3, 7])
    with torch.no_grad():
        before = model(x, t)
        assert speed.tune_allocator() in (True, False)  # False off glibc
        assert speed.tune_allocator() == speed.tune_allocator()  # idempotent
        after = model(x, t)
    assert torch.equal(before, after)


def test_step_records_read_lazily_hold_the_step_values():
    trainer = Trainer(tiny("fp32", 2))
    rec = next(trainer.steps())
    assert isinstance(rec.loss, float) and np.isfinite(rec.loss)
    assert rec.t.dtype == np.int64 and rec.t.shape == (32,)
    assert rec.per_sample_loss.dtype == np.float32
    assert rec.loss == pytest.approx(float(rec.per_sample_loss.mean()), rel=1e-5)


def test_frozen_standardised_weights_are_reused_until_the_weights_change():
    model = article_model(dim=8, mults=(1, 2)).requires_grad_(False)
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([3, 7])
    with torch.no_grad():
        first = model(x, t)
        again = model(x, t)
        gen = torch.Generator().manual_seed(0)
        for p in model.parameters():  # in place, as EMA updates and load_state_dict do
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
        changed = model(x, t)
    model.requires_grad_(True)
    with torch.enable_grad():
        trained = model(x, t)  # the training path standardises every time
    assert torch.equal(first, again)
    assert not torch.allclose(changed, first)
    torch.testing.assert_close(trained, changed, atol=1e-6, rtol=1e-6)
