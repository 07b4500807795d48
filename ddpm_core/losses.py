"""The training objective: predict the noise ε that made x_t (paper Algorithm 1, eq. 14).

The paper's simplified loss is ‖ε − ε_θ(x_t, t)‖²; the article trains with the Huber
(smooth L1) loss. `p_losses` returns per-sample losses too, so a viewer can show how well
the model does at each timestep.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from .config import LOSS_NAMES
from .diffusion import q_sample
from .errors import ConfigError
from .schedules import NoiseSchedule

_ELEMENTWISE = {
    "l1": lambda pred, target: F.l1_loss(pred, target, reduction="none"),
    "l2": lambda pred, target: F.mse_loss(pred, target, reduction="none"),
    "huber": lambda pred, target: F.smooth_l1_loss(pred, target, reduction="none"),  # β = 1, as the article
}
assert tuple(_ELEMENTWISE) == LOSS_NAMES


def p_losses(
    model,
    schedule: NoiseSchedule,
    x_start: torch.Tensor,
    t: torch.Tensor,
    noise: Optional[torch.Tensor] = None,
    loss_type: str = "huber",
    generator: Optional[torch.Generator] = None,
):
    """Loss of ε_θ(x_t, t) against the ε used to make x_t.

    x_start (B, C, H, W) in [-1, 1]; t (B,) int64 indices.
    Returns (mean loss, a scalar with grad; per-sample loss (B,), detached).
    The mean over the batch equals the article's F.*_loss(noise, predicted_noise).
    """
    try:
        elementwise = _ELEMENTWISE[loss_type]
    except KeyError:
        raise ConfigError(f"unknown loss {loss_type!r}: choose one of {', '.join(LOSS_NAMES)}") from None
    if noise is None:
        noise = torch.randn(x_start.shape, generator=generator, device=x_start.device, dtype=x_start.dtype)
    x_noisy = q_sample(schedule, x_start, t, noise=noise)
    predicted_noise = model(x_noisy, t)
    per_element = elementwise(predicted_noise.float(), noise.float())
    per_sample = per_element.flatten(1).mean(dim=1)
    return per_sample.mean(), per_sample.detach()
