"""The U-Net is the article's: same parameter names and shapes, same outputs."""

import re
from pathlib import Path

import pytest
import torch

from ddpm_core import Unet
from ddpm_core.article_forms import use_article_forms
from ddpm_core.model_io import infer_model_config
from ddpm_core.unet import count_parameters

REF = Path(__file__).parent / "reference"


def _reference_shapes():
    shapes = {}
    for line in (REF / "unet_state_dict_dim28_c1_mults124.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, shape = line.split(" ", 1)
            shapes[name] = tuple(int(s) for s in re.findall(r"\d+", shape))
    return shapes


def test_parameter_names_and_shapes_match_the_article():
    model = Unet(dim=28, channels=1, dim_mults=(1, 2, 4))
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    ref = _reference_shapes()
    assert len(ref) == 231
    assert ours == ref
    assert count_parameters(model) == 2_020_257


@pytest.mark.parametrize("article_way", [False, True], ids=["fast forms", "article forms"])
def test_golden_case_reproduced(article_way):
    golden = torch.load(REF / "golden_unet_dim8_c1_mults12.pt", weights_only=True)
    model = Unet(dim=8, channels=1, dim_mults=(1, 2))
    if article_way:  # what scripts/bench_speed.py times as the article's way
        use_article_forms(model)
    model.load_state_dict(golden["state_dict"])  # strict: every key and shape must match
    with torch.no_grad():
        out = model(golden["x"], golden["t"])
    assert out.shape == golden["out"].shape == (3, 1, 8, 8)
    assert (out - golden["out"]).abs().max().item() < 1e-5


@pytest.mark.parametrize(
    "channels,mults,size", [(1, (1, 2), 8), (3, (1, 2), 16), (3, (1, 2, 4), 12), (1, (1,), 5), (1, (1, 2, 4, 8), 32)]
)
def test_shapes_for_channels_and_sizes(channels, mults, size):
    model = Unet(dim=8, channels=channels, dim_mults=mults)
    x = torch.randn(2, channels, size, size)
    t = torch.tensor([0, 7])
    with torch.no_grad():
        assert model(x, t).shape == x.shape


def test_self_condition_and_out_dim():
    model = Unet(dim=8, channels=1, dim_mults=(1, 2), self_condition=True, out_dim=2)
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        assert model(x, torch.tensor([1, 2])).shape == (2, 2, 8, 8)
        assert model(x, torch.tensor([1, 2]), x_self_cond=x).shape == (2, 2, 8, 8)


def test_infer_config_from_article_state_dict():
    for kwargs in (dict(dim=28, channels=1, dim_mults=(1, 2, 4)), dict(dim=16, channels=3, dim_mults=(1, 2))):
        cfg = infer_model_config(Unet(**kwargs).state_dict())
        assert (cfg.dim, cfg.channels, tuple(cfg.dim_mults)) == (kwargs["dim"], kwargs["channels"], kwargs["dim_mults"])


@pytest.mark.parametrize("init_dim", [12, 16])
def test_an_initial_width_other_than_dim_builds_trains_and_is_read_back(init_dim):
    # The article's final block takes dim·2 channels, which is init_dim·2 only when
    # init_dim is left unset; any other init_dim failed at the first forward pass.
    model = Unet(dim=8, init_dim=init_dim, channels=1, dim_mults=(1, 2))
    x = torch.randn(2, 1, 8, 8)
    out = model(x, torch.tensor([1, 2]))
    assert out.shape == x.shape
    out.square().mean().backward()
    cfg = infer_model_config(model.state_dict())
    assert (cfg.dim, cfg.init_dim, tuple(cfg.dim_mults)) == (8, init_dim, (1, 2))


def test_an_output_width_other_than_the_channels_is_refused():
    # ε has one value per pixel and channel: out_dim 2 for 1 channel trained against a
    # broadcast ε and failed when sampling.
    from ddpm_core.config import ModelConfig, RunConfig
    from ddpm_core.errors import ConfigError

    with pytest.raises(ConfigError, match="model.out_dim=2 must equal model.channels=1"):
        RunConfig(model=ModelConfig(dim=8, out_dim=2, channels=1)).validate()
    RunConfig(model=ModelConfig(dim=8, out_dim=1, channels=1)).validate()
