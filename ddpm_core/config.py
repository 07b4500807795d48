"""The run configuration: model, schedule, data and training, as plain dataclasses.

A `RunConfig` is stored inside every checkpoint (as JSON) so the file alone rebuilds the
model and continues training, as nanoGPT does. `RunConfig.from_dict` is the one reader
for config files, checkpoints and the GUI: it validates every field and raises
`ConfigError` with a message naming the field, the bad value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from .errors import ConfigError, as_one_line, shown

SCHEDULE_NAMES = ("linear", "cosine", "quadratic", "sigmoid")
LOSS_NAMES = ("l1", "l2", "huber")
DATASET_NAMES = ("shapes", "fashion_mnist", "mnist", "cifar10", "folder")
SAMPLER_NAMES = ("ddpm", "ddim")
DEVICE_NAMES = ("auto", "cpu", "cuda", "mps")
PRECISION_NAMES = ("auto", "fp32", "bf16")
TIMESTEPS_RANGE = (2, 10000)  # T, the number of diffusion steps, wherever it is set


@dataclass
class ModelConfig:
    """Arguments of the article's `Unet` constructor."""

    dim: int = 16
    init_dim: Optional[int] = None
    out_dim: Optional[int] = None
    dim_mults: tuple = (1, 2)
    channels: int = 1
    self_condition: bool = False
    resnet_block_groups: int = 4


@dataclass
class ScheduleConfig:
    """Which β schedule, over how many steps T."""

    name: str = "linear"
    timesteps: int = 300


@dataclass
class DataConfig:
    """What images to train on and how to prepare them."""

    dataset: str = "shapes"
    image_size: int = 16
    channels: int = 1
    root: Optional[str] = None  # the image folder, for dataset="folder"
    flip: bool = True  # random horizontal flips, as in the article
    limit: Optional[int] = None  # use at most this many images (None: all)


@dataclass
class TrainConfig:
    """Optimisation, logging and preview settings."""

    batch_size: int = 64
    lr: float = 1e-3
    loss: str = "huber"
    steps: Optional[int] = 3000  # stop after this many optimizer steps...
    epochs: Optional[int] = None  # ...or after this many epochs (whichever is set)
    ema: bool = True
    ema_decay: float = 0.995
    preview_every: int = 250  # the article's save_and_sample_every
    preview_count: int = 16
    preview_sampler: str = "ddim"
    preview_steps: int = 50
    checkpoint_every: int = 1000
    seed: int = 0
    device: str = "auto"
    # bf16 autocast where the hardware computes it fast (CUDA with bf16, CPUs with AVX-512
    # BF16 or AMX), else fp32; "fp32" and "bf16" force one.
    precision: str = "auto"
    # torch.compile for training on CUDA GPUs (compiled.py): faster steps after about a
    # minute of compiling at the start; worth it for long runs.
    compile: bool = False
    autosave_minutes: float = 10.0  # save a checkpoint at least this often (0: never)


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    # ---- serialisation -------------------------------------------------------------
    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["model"]["dim_mults"] = list(self.model.dim_mults)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: Any) -> "RunConfig":
        """Build and validate a config from nested dicts; missing keys take defaults."""
        if not isinstance(d, dict):
            raise ConfigError(f"the configuration must be a JSON object, not {type(d).__name__}")
        unknown = set(d) - {"model", "schedule", "data", "train"}
        if unknown:
            raise ConfigError(
                f"unknown configuration section(s) {sorted(unknown)}: "
                "use only 'model', 'schedule', 'data' and 'train'"
            )
        cfg = cls(
            model=_section(ModelConfig, d.get("model", {}), "model"),
            schedule=_section(ScheduleConfig, d.get("schedule", {}), "schedule"),
            data=_section(DataConfig, d.get("data", {}), "data"),
            train=_section(TrainConfig, d.get("train", {}), "train"),
        )
        if isinstance(cfg.model.dim_mults, list):  # JSON has no tuples; anything else fails validate()
            cfg.model.dim_mults = tuple(cfg.model.dim_mults)
        cfg.validate()
        return cfg

    @classmethod
    def from_json(cls, text: str, source: str = "configuration") -> "RunConfig":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{source} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
        except RecursionError:  # e.g. "[[[[...": deeper than the parser can go
            raise ConfigError(f"{source} is not a configuration (JSON nested too deeply)") from None
        except ValueError as e:  # e.g. an integer of more digits than Python converts
            raise ConfigError(f"{source} is not a configuration ({as_one_line(e, 120)})") from None
        return cls.from_dict(d)

    @classmethod
    def load(cls, path: str | Path) -> "RunConfig":
        """Read a JSON config file (the format `ddpm train --save-config` writes)."""
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"config file {p} does not exist") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"cannot read config file {p}: {e}") from None
        try:
            return cls.from_json(text, source=f"config file {p}")
        except ConfigError as e:
            if str(p) in str(e):
                raise
            raise ConfigError(f"config file {p}: {e}") from None  # which file, when there are several

    # ---- validation -----------------------------------------------------------------
    def validate(self) -> "RunConfig":
        m, s, dt, t = self.model, self.schedule, self.data, self.train
        _int_in("model.dim", m.dim, 4, 1024)
        if m.init_dim is not None:
            _int_in("model.init_dim", m.init_dim, 1, 4096)
        if m.out_dim is not None:
            _int_in("model.out_dim", m.out_dim, 1, 16)
            if m.out_dim != m.channels:
                # The network predicts the noise ε: one value per pixel and channel. Another
                # width would train against a broadcast ε and fail when sampling.
                raise ConfigError(
                    f"model.out_dim={m.out_dim} must equal model.channels={m.channels} (the network predicts "
                    "the noise of every channel): leave model.out_dim unset"
                )
        if not isinstance(m.dim_mults, (tuple, list)) or not m.dim_mults:
            raise ConfigError("model.dim_mults must be a non-empty list of positive integers, e.g. [1, 2, 4]")
        for v in m.dim_mults:
            _int_in("model.dim_mults entry", v, 1, 64)
        _choice("model.channels", m.channels, (1, 3))
        _bool("model.self_condition", m.self_condition)
        _int_in("model.resnet_block_groups", m.resnet_block_groups, 1, 256)
        # GroupNorm needs every level's width divisible by the number of groups.
        if m.init_dim is not None and m.init_dim % m.resnet_block_groups:
            raise ConfigError(
                f"model.init_dim={m.init_dim} must be a multiple of model.resnet_block_groups="
                f"{m.resnet_block_groups}: choose another model.init_dim or leave it unset"
            )
        widths = [m.init_dim or m.dim] + [m.dim * k for k in m.dim_mults]
        bad = [w for w in widths if w % m.resnet_block_groups]
        if bad:
            raise ConfigError(
                f"model.resnet_block_groups={m.resnet_block_groups} must divide every level width "
                f"{widths}: choose a model.dim that is a multiple of {m.resnet_block_groups}"
            )
        if m.dim // 2 < 2:
            raise ConfigError("model.dim must be at least 4 (the time embedding needs it)")

        _choice("schedule.name", s.name, SCHEDULE_NAMES)
        _int_in("schedule.timesteps", s.timesteps, *TIMESTEPS_RANGE)

        _choice("data.dataset", dt.dataset, DATASET_NAMES)
        _int_in("data.image_size", dt.image_size, 4, 512)
        _choice("data.channels", dt.channels, (1, 3))
        _bool("data.flip", dt.flip)
        if dt.limit is not None:
            _int_in("data.limit", dt.limit, 1, 10**9)
        if dt.dataset == "folder" and not dt.root:
            raise ConfigError("data.root must name an image folder when data.dataset is 'folder'")
        if dt.root is not None and not isinstance(dt.root, str):
            raise ConfigError(f"data.root must be a folder path, not {dt.root!r}")
        levels = len(m.dim_mults) - 1  # the last level does not downsample
        if dt.image_size % (2**levels):
            raise ConfigError(
                f"data.image_size={dt.image_size} must be divisible by {2**levels} "
                f"for a U-Net with {len(m.dim_mults)} levels: pick another size or fewer levels"
            )
        if m.channels != dt.channels:
            raise ConfigError(
                f"model.channels={m.channels} does not match data.channels={dt.channels}: set both to 1 or 3"
            )

        _int_in("train.batch_size", t.batch_size, 1, 65536)
        _float_in("train.lr", t.lr, 1e-8, 1.0)
        _choice("train.loss", t.loss, LOSS_NAMES)
        if t.steps is None and t.epochs is None:
            raise ConfigError("set train.steps or train.epochs (how long to train)")
        if t.steps is not None:
            _int_in("train.steps", t.steps, 1, 10**9)
        if t.epochs is not None:
            _int_in("train.epochs", t.epochs, 1, 10**6)
        _bool("train.ema", t.ema)
        _bool("train.compile", t.compile)
        _float_in("train.ema_decay", t.ema_decay, 0.0, 0.999999)
        _int_in("train.preview_every", t.preview_every, 0, 10**9)
        _int_in("train.preview_count", t.preview_count, 1, 256)
        _choice("train.preview_sampler", t.preview_sampler, SAMPLER_NAMES)
        _int_in("train.preview_steps", t.preview_steps, 1, 10000)
        _int_in("train.checkpoint_every", t.checkpoint_every, 0, 10**9)
        _int_in("train.seed", t.seed, 0, 2**63 - 1)
        _choice("train.device", t.device, DEVICE_NAMES)
        _choice("train.precision", t.precision, PRECISION_NAMES)
        _float_in("train.autosave_minutes", t.autosave_minutes, 0.0, 24 * 60.0)
        return self


def _section(klass, values: Any, name: str):
    if not isinstance(values, dict):
        raise ConfigError(f"the '{name}' section must be a JSON object, not {type(values).__name__}")
    names = {f.name for f in dataclasses.fields(klass)}
    unknown = set(values) - names
    if unknown:
        raise ConfigError(
            # repr() for odd keys, so an empty name or one with a line break stays visible and on one line
            f"unknown setting(s) {', '.join(f'{name}.{k if k.isidentifier() else repr(k)}' for k in sorted(unknown))}: "
            f"known ones are {', '.join(sorted(names))}"
        )
    return klass(**values)


def _int_in(name: str, v: Any, lo: int, hi: int) -> None:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ConfigError(f"{name} must be a whole number, not {shown(v)}")
    if not lo <= v <= hi:
        raise ConfigError(f"{name}={shown(v)} is out of range: use a value from {lo} to {hi}")


def _float_in(name: str, v: Any, lo: float, hi: float) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ConfigError(f"{name} must be a number, not {shown(v)}")
    if not lo <= v <= hi:
        raise ConfigError(f"{name}={shown(v)} is out of range: use a value from {lo:g} to {hi:g}")


def _choice(name: str, v: Any, allowed: tuple) -> None:
    # by type too: 1.0 == 1 and True == 1, but a float channel count breaks the model
    if not any(type(v) is type(a) and v == a for a in allowed):
        raise ConfigError(f"{name}={shown(v)} is not allowed: choose one of {', '.join(map(str, allowed))}")


def _bool(name: str, v: Any) -> None:
    if not isinstance(v, bool):
        raise ConfigError(f"{name} must be true or false, not {shown(v)}")
