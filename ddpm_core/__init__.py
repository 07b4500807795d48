"""DDPM Studio's engine: denoising diffusion in PyTorch, with no GUI dependency.

Everything the app does, a script can do with this package alone:

    from ddpm_core import RunConfig, Trainer, sample_loop
    trainer = Trainer(RunConfig())
    for record in trainer.steps():
        print(record.step, record.loss)
"""

import os as _os

# OpenMP threads that finish early spin while they wait for the others. On a machine that is
# doing anything else (the app's window, a browser, another run) a spinning thread holds a
# core the others need: on 2 cores a training step measured 7.5 s spinning against 0.3-0.5 s
# with passive waiting. It must be set before torch loads OpenMP; a user's setting wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .config import DataConfig, ModelConfig, RunConfig, ScheduleConfig, TrainConfig
from .diffusion import extract, predict_start_from_noise, q_posterior_mean_variance, q_sample
from .errors import CheckpointError, ConfigError, DataError, DDPMError
from .losses import p_losses
from .samplers import SampleStep, ddim_sample_loop, ddpm_sample_loop, sample, sample_loop
from .schedules import (
    NoiseSchedule,
    beta_schedule,
    cosine_beta_schedule,
    linear_beta_schedule,
    quadratic_beta_schedule,
    sigmoid_beta_schedule,
)
from .unet import Unet, build_unet


def __getattr__(name):
    # The trainer pulls in data, checkpoints and export; load them only when asked for.
    if name in ("Trainer", "StepRecord"):
        from . import training

        return getattr(training, name)
    raise AttributeError(f"module 'ddpm_core' has no attribute {name!r}")


__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataConfig",
    "DataError",
    "DDPMError",
    "ModelConfig",
    "NoiseSchedule",
    "RunConfig",
    "SampleStep",
    "ScheduleConfig",
    "StepRecord",
    "TrainConfig",
    "Trainer",
    "Unet",
    "beta_schedule",
    "build_unet",
    "cosine_beta_schedule",
    "ddim_sample_loop",
    "ddpm_sample_loop",
    "extract",
    "linear_beta_schedule",
    "p_losses",
    "predict_start_from_noise",
    "q_posterior_mean_variance",
    "q_sample",
    "quadratic_beta_schedule",
    "sample",
    "sample_loop",
    "sigmoid_beta_schedule",
]
