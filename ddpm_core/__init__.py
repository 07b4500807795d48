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

# Where each name lives. Nothing is imported until a name is asked for (PEP 562): importing
# the package (as `ddpm`'s entry point does) must not import torch, which takes seconds
# during which a Ctrl+C could only end in a traceback.
_HOMES = {
    "training": ("Trainer", "StepRecord"),
    "config": ("DataConfig", "ModelConfig", "RunConfig", "ScheduleConfig", "TrainConfig"),
    "diffusion": ("extract", "predict_start_from_noise", "q_posterior_mean_variance", "q_sample"),
    "errors": ("CheckpointError", "ConfigError", "DataError", "DDPMError"),
    "losses": ("p_losses",),
    "samplers": ("SampleStep", "ddim_sample_loop", "ddpm_sample_loop", "sample", "sample_loop"),
    "schedules": (
        "NoiseSchedule",
        "beta_schedule",
        "cosine_beta_schedule",
        "linear_beta_schedule",
        "quadratic_beta_schedule",
        "sigmoid_beta_schedule",
    ),
    "unet": ("Unet", "build_unet"),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}


def __getattr__(name):
    module = _HOME_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'ddpm_core' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # found once: later lookups do not come here
    return value


def __dir__():
    return sorted(list(globals()) + list(_HOME_OF))


__all__ = sorted(_HOME_OF)
