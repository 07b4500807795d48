"""Whether a state_dict fits a model, said in one line.

`model.load_state_dict` raises a multi-line wall of text for a wrong file; this names the
first mismatch of each kind (shape, missing, unexpected, not a tensor) and what to do.

A checkpoint's weights are also checked against the model its stored configuration
describes before that model is built: a damaged or edited file could otherwise describe a
network of a hundred gigabytes and have it allocated (`check_weights_fit_config`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional, Union

import torch
from torch import Tensor, nn

from .config import ModelConfig
from .errors import CheckpointError
from .unet import build_unet

PathLike = Union[str, Path]


def _shape(s) -> str:
    return "(" + ", ".join(str(int(d)) for d in s) + ")"


def state_dict_mismatch(
    model: Any, state: Mapping[str, Any], source: PathLike, advice: str = "open it with its own configuration"
) -> Optional[str]:
    """The one-line reason `state` does not fit `model` (an nn.Module or its
    state_dict), ending in `advice`, or None if every key and shape matches."""
    expected = model.state_dict() if isinstance(model, nn.Module) else model
    exp_shapes = {k: tuple(v.shape) for k, v in expected.items()}
    missing = [k for k in exp_shapes if k not in state]
    unexpected = [k for k in state if k not in exp_shapes]
    not_tensor = [k for k in state if k in exp_shapes and not isinstance(state[k], Tensor)]
    other_shape = [
        k for k in exp_shapes
        if k in state and isinstance(state[k], Tensor) and tuple(state[k].shape) != exp_shapes[k]
    ]
    parts = []
    if other_shape:
        k = other_shape[0]
        parts.append(
            f"{_count(other_shape, 'weight has', 'weights have')} other shapes (first: {k} is "
            f"{_shape(state[k].shape)} in the file, {_shape(exp_shapes[k])} in the model)"
        )
    if missing:
        parts.append(f"{_count(missing, 'weight', 'weights')} of the model missing from the file (first: {missing[0]})")
    if unexpected:
        parts.append(f"{_count(unexpected, 'weight', 'weights')} in the file not in the model (first: {unexpected[0]})")
    if not_tensor:
        parts.append(f"{_count(not_tensor, 'entry is', 'entries are')} not tensors (first: {not_tensor[0]})")
    if not parts:
        return None
    return f"{source} does not fit this model: {'; '.join(parts)} — {advice}"


def check_state_dict_fits(model: Any, state: Mapping[str, Any], source: PathLike) -> None:
    """Raise CheckpointError (one line) unless `state` has exactly `model`'s keys and
    shapes. Call it before `model.load_state_dict(state)`, whose own error is a
    multi-line wall of text."""
    message = state_dict_mismatch(model, state, source)
    if message:
        raise CheckpointError(message)


def _count(items: list, one: str, many: str) -> str:
    return f"1 {one}" if len(items) == 1 else f"{len(items)} {many}"


def check_weights_fit_config(model_cfg: ModelConfig, states: list[Mapping[str, Any]], source: PathLike) -> None:
    """Raise CheckpointError (one line) unless each of `states` fits the U-Net `model_cfg`
    describes, found out on PyTorch's meta device: shapes only, nothing allocated."""
    with torch.device("meta"):
        expected = build_unet(model_cfg).state_dict()
    for state in states:
        message = state_dict_mismatch(
            expected, state, source,
            advice="its weights are not those of the model its settings describe: the file is damaged or was "
            "edited, use another checkpoint",
        )
        if message:
            raise CheckpointError(message)


def check_weights_finite(state: Mapping[str, Any], source: PathLike) -> None:
    """Raise CheckpointError (one line) if a weight holds NaN or infinity: every sample
    drawn from it would be NaN (a file from a run that diverged)."""
    bad = [k for k, v in state.items() if isinstance(v, Tensor) and v.is_floating_point() and not v.isfinite().all()]
    if bad:
        raise CheckpointError(
            f"{source} holds weights that are not numbers (NaN or infinite; first: {bad[0]}): the run it comes "
            "from diverged — use a checkpoint saved before that"
        )
