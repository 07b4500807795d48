"""Loading a model for sampling from any checkpoint this project reads.

A DDPM Studio checkpoint carries its configuration. A bare state_dict saved from the
article's notebook does not: its U-Net widths are read off the weight shapes, and the rest
(image size, schedule) defaults to the article's Fashion-MNIST setup unless the caller
says otherwise.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

import torch

from .checkpoint import load_checkpoint
from .config import DataConfig, ModelConfig, RunConfig, ScheduleConfig
from .device import pick_device
from .errors import CheckpointError, ConfigError
from .schedules import NoiseSchedule
from .state_dict_fit import check_weights_finite, check_weights_fit_config
from .unet import Unet, build_unet


def infer_model_config(state: dict, source: str = "the file") -> ModelConfig:
    """The Unet arguments that produce these weight shapes (groups default to the article's 4).

    Raises CheckpointError (one line, naming `source`) for weights of any other network.
    """
    try:
        return _infer_model_config(state, source)
    except (KeyError, IndexError, ZeroDivisionError, AttributeError) as e:
        # a missing level key, a tensor of the wrong rank...: another network's weights
        what = f"no {e.args[0]}" if isinstance(e, KeyError) else "unexpected weight shapes"
        raise CheckpointError(
            f"{source} is not a U-Net of the article's architecture ({what}) — use a DDPM Studio checkpoint"
        ) from None


def _infer_model_config(state: dict, source: str) -> ModelConfig:
    init_w = state["init_conv.weight"]  # (init_dim, channels·(1 + self_condition), 1, 1)
    time_w = state["time_mlp.1.weight"]  # (4·dim, dim)
    out_w = state["final_conv.weight"]  # (out_dim, dim, 1, 1)
    dim = int(time_w.shape[1])
    init_dim = int(init_w.shape[0])
    levels = sorted({int(m.group(1)) for k in state if (m := re.match(r"downs\.(\d+)\.", k))})
    widths = []
    for i in levels:  # each level's input width; the middle block has the deepest one
        widths.append(int(state[f"downs.{i}.0.block1.proj.weight"].shape[1]))
    widths = widths[1:] + [int(state["mid_block1.block1.proj.weight"].shape[0])]
    if not levels or any(w % dim for w in widths):
        raise CheckpointError(f"{source}: cannot work out the U-Net's level widths from its weights")
    out_dim = int(out_w.shape[0])
    in_ch = int(init_w.shape[1])
    self_condition = in_ch == 2 * out_dim
    channels = out_dim if self_condition or in_ch == out_dim else in_ch
    cfg = ModelConfig(
        dim=dim,
        init_dim=None if init_dim == dim else init_dim,
        out_dim=None if out_dim == channels else out_dim,
        dim_mults=tuple(w // dim for w in widths),
        channels=channels,
        self_condition=self_condition,
        resnet_block_groups=4,
    )
    try:  # the model settings alone (an image size that fits any number of levels)
        RunConfig(model=cfg, data=DataConfig(image_size=max(4, 2 ** (len(widths) - 1)), channels=channels)).validate()
    except ConfigError as e:
        raise CheckpointError(f"{source}: its weights describe a U-Net DDPM Studio cannot build ({e})") from None
    return cfg


@dataclass
class LoadedModel:
    model: Unet  # in eval mode, on `device`
    schedule: NoiseSchedule
    config: RunConfig
    source: str
    step: int
    uses_ema: bool
    device: torch.device


def load_for_sampling(
    path, device: Optional[str | torch.device] = None, use_ema: bool = True, image_size: Optional[int] = None
) -> LoadedModel:
    """A ready-to-sample model from a checkpoint (EMA weights when it has them and use_ema)."""
    ckpt = load_checkpoint(path)
    if ckpt.config:
        config = RunConfig.from_dict(ckpt.config)
    else:  # the article's notebook: Fashion-MNIST, 28×28, linear schedule, T = 300
        model_cfg = infer_model_config(ckpt.model, str(ckpt.path))
        config = RunConfig(
            model=model_cfg,
            schedule=ScheduleConfig("linear", 300),
            data=DataConfig(dataset="fashion_mnist", image_size=28, channels=model_cfg.channels),
        )
    levels = len(config.model.dim_mults) - 1
    if image_size is not None:
        config.data.image_size = image_size
    elif not ckpt.config and config.data.image_size % 2**levels:
        # the 28-pixel default does not fit this U-Net, and the file cannot say what does
        raise CheckpointError(
            f"{ckpt.path} holds weights only, of a U-Net with {levels + 1} levels: give the image size it was "
            f"trained at (a multiple of {2**levels}, e.g. {2**levels * max(1, round(28 / 2**levels))})"
        )
    config.validate()
    # "auto", not the saved device: a checkpoint from a GPU server must open on a laptop.
    dev = torch.device(device) if device is not None else pick_device("auto")
    weights = ckpt.ema if (use_ema and ckpt.ema is not None) else ckpt.model
    check_weights_fit_config(config.model, [weights], str(ckpt.path))  # before building it
    check_weights_finite(weights, str(ckpt.path))
    model = build_unet(config.model)
    model.load_state_dict(weights)
    model.to(dev).eval().requires_grad_(False)
    schedule = NoiseSchedule.from_name(config.schedule.name, config.schedule.timesteps).to(dev)
    return LoadedModel(
        model=model,
        schedule=schedule,
        config=config,
        source=str(ckpt.path),
        step=ckpt.step,
        uses_ema=weights is ckpt.ema,
        device=dev,
    )
