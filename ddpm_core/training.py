"""The one training loop (paper Algorithm 1), shared by the command line, the app and tests.

`Trainer.steps()` is a generator: each `next()` runs one optimizer step and yields a small
`StepRecord`. The caller prints, plots, saves or stops between steps; stopping is simply
not asking for the next one. Everything that decides what happens next (weights, EMA,
Adam state, step and position in the epoch, the RNG) is in `Trainer.state_for_checkpoint`,
so a run saved and resumed continues exactly as if it had never stopped (on the CPU).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np
import torch

from . import memory
from .batch_threads import map_slices, slice_count
from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .compiled import CompiledNetwork, compiles_on
from .config import RunConfig
from .cuda_graphs import gpu_work, graph_training_network
from .data import ImageSet, epoch_permutation, load_dataset, make_batch
from .device import describe_device, free_cached_memory, is_out_of_memory, out_of_memory_message, pick_device
from .errors import CheckpointError, ConfigError, OutOfMemory, TrainingDiverged, shown
from .losses import p_losses
from .samplers import sample
from .schedules import NoiseSchedule
from .speed import autocast, autocast_dtype, configure_backend, describe_precision
from .state_dict_fit import check_weights_fit_config
from .unet import Unet, build_unet


class HostValues:
    """Small device tensors copied to the host without waiting for the device.

    On a GPU the copy is queued behind the step and read only when someone asks (a
    progress bar a few times a second), so training never stalls on a host sync per step.
    On the CPU the tensors are already there.
    """

    def __init__(self, **tensors: torch.Tensor):
        self._event = None
        first = next(iter(tensors.values()))
        if first.device.type == "cuda":
            self._tensors = {k: v.detach().to("cpu", non_blocking=True) for k, v in tensors.items()}
            self._event = torch.cuda.Event()
            self._event.record()
        else:
            self._tensors = {k: v.detach().cpu() for k, v in tensors.items()}

    def __getitem__(self, name: str) -> torch.Tensor:
        if self._event is not None:
            self._event.synchronize()
            self._event = None
        return self._tensors[name]


@dataclass
class StepRecord:
    """What one training step reports. Values are read from the device lazily (see HostValues)."""

    step: int  # optimizer steps done, including this one
    total_steps: int  # when training ends
    epoch: int  # 0-based epoch this step belongs to
    values: HostValues  # loss, t and per-sample loss of this step
    batch_size: int
    seconds: float  # wall time of this step (on a GPU: the time to queue it)
    elapsed: float  # seconds spent in training steps so far (previews excluded)
    # Mean wall time per step since the first step of this session, None on that step: it
    # records the CUDA graphs or compiles the network, so its time says nothing of the rest.
    seconds_per_step: Optional[float]
    preview: Optional[torch.Tensor] = None  # (N, C, H, W) CPU float in [-1, 1], every preview_every steps

    @property
    def loss(self) -> float:
        """The batch-mean loss."""
        return float(self.values["loss"])

    @property
    def t(self) -> np.ndarray:
        """(B,) int64 timestep indices drawn for this batch."""
        return self.values["t"].numpy()

    @property
    def per_sample_loss(self) -> np.ndarray:
        """(B,) float32 loss of each sample, for the loss-by-timestep view."""
        return self.values["per_sample"].float().numpy()

    @property
    def images_per_sec(self) -> float:
        return self.batch_size / self.seconds if self.seconds > 0 else float("inf")

    @property
    def eta_seconds(self) -> Optional[float]:
        """Estimated seconds left, from `seconds_per_step`; None until a second step is done."""
        if self.seconds_per_step is None:
            return None
        return self.seconds_per_step * max(self.total_steps - self.step, 0)


class Trainer:
    """Owns the model, EMA copy, schedule, optimizer, data and RNG of one training run."""

    def __init__(
        self,
        config: RunConfig,
        images: Optional[ImageSet] = None,
        device: Optional[torch.device | str] = None,
        progress: Optional[Callable] = None,
        cuda_graphs: bool = True,
    ):
        """cuda_graphs: on a GPU, replay the network's forward and backward as recorded
        graphs (cuda_graphs.py); the same math, without a launch per kernel."""
        self.config = config.validate()
        self.device = torch.device(device) if device is not None else pick_device(config.train.device)
        tc = config.train

        self.autocast_dtype = autocast_dtype(tc.precision, self.device)
        # Before the data is read or drawn: one image's attention may not even fit (64 GB at
        # 512 px with 2 levels). A model on the meta device has the shapes and no memory.
        # The batch is checked once the number of images is known: a folder of 8 images
        # trains in batches of 8 whatever batch_size says.
        with torch.device("meta"):
            shape_only = build_unet(config.model)

        def check_attention(count: int) -> None:
            memory.check_attention_fits(
                shape_only, config.data.image_size, count, self.autocast_dtype, self.device, "training on"
            )

        check_attention(1 if images is None else min(tc.batch_size, len(images)))

        if images is None:
            images = load_dataset(config.data, progress=progress)
        if images.images.shape[1:] != (config.data.channels, config.data.image_size, config.data.image_size):
            raise ConfigError(
                f"the dataset's images are {tuple(images.images.shape[1:])} but the configuration asks for "
                f"({config.data.channels}, {config.data.image_size}, {config.data.image_size})"
            )
        self.dataset = images
        # The whole dataset lives on the training device as uint8: batches are made there,
        # with no per-sample transforms and no host-to-device copy per step.
        self.images = images.images.to(self.device)
        n = self.images.shape[0]
        self.batch_size = min(tc.batch_size, n)
        self.batches_per_epoch = max(1, n // self.batch_size)  # drop the ragged last batch
        check_attention(self.batch_size)

        configure_backend(self.device)

        torch.manual_seed(tc.seed)  # weight initialisation
        self.model: Unet = build_unet(config.model).to(self.device)
        self.ema: Optional[Unet] = copy.deepcopy(self.model).requires_grad_(False) if tc.ema else None
        self.schedule = NoiseSchedule.from_name(config.schedule.name, config.schedule.timesteps).to(self.device)
        # Fused Adam is one kernel on a GPU; on the CPU the default (foreach) measured faster.
        fused = True if self.device.type == "cuda" else None
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=tc.lr, fused=fused)
        # One generator for every random draw of the loop (t, ε, flips): its state is saved.
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(tc.seed)
        self._check_memory()

        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.elapsed = 0.0
        self.diverged = False  # set when the loss went NaN/inf: the weights are not saved
        self._divergence = ""  # what to tell the person, once diverged
        self._unchecked: Optional[StepRecord] = None  # a step whose loss is not checked yet
        self._order: Optional[torch.Tensor] = None
        self.cuda_graphs = cuda_graphs
        self.compiles = tc.compile and compiles_on(self.device)  # train.compile, where it pays off
        self._compiled: Optional[CompiledNetwork] = None
        self._network: Optional[torch.nn.Module] = None  # what training calls: the model, or its graph
        self._session_start: Optional[tuple[int, float]] = None  # (step, elapsed) after this session's first step

    # ---- the loop -------------------------------------------------------------------
    @property
    def total_steps(self) -> int:
        tc = self.config.train
        limits = []
        if tc.steps is not None:
            limits.append(tc.steps)
        if tc.epochs is not None:
            limits.append(tc.epochs * self.batches_per_epoch)
        return min(limits)

    def steps(self) -> Iterator[StepRecord]:
        """Train until `total_steps`, yielding after every optimizer step.

        Raises TrainingDiverged when the loss becomes NaN or infinite (on a GPU, one step
        later, to avoid a host sync per step) and OutOfMemory when a batch does not fit.
        """
        tc = self.config.train
        self.model.train()
        while self.step < self.total_steps:
            if self.diverged:  # found by save() between two steps: never train on from NaN
                raise TrainingDiverged(self._divergence)
            t0 = time.perf_counter()
            with self._out_of_memory_is_reported(self.batch_size, "training"), gpu_work(self.device):
                loss, t, per_sample = self._train_step()
                values = HostValues(loss=loss.detach(), t=t, per_sample=per_sample)
            self.step += 1
            dt = time.perf_counter() - t0
            self.elapsed += dt
            if self._session_start is None:
                self._session_start = (self.step, self.elapsed)
                seconds_per_step = None
            else:
                first_step, first_elapsed = self._session_start
                seconds_per_step = (self.elapsed - first_elapsed) / (self.step - first_step)
            record = StepRecord(
                step=self.step,
                total_steps=self.total_steps,
                epoch=self.epoch if self.batch_in_epoch else self.epoch - 1,
                values=values,
                batch_size=int(t.shape[0]),
                seconds=dt,
                elapsed=self.elapsed,
                seconds_per_step=seconds_per_step,
            )
            # On the CPU the value is already there; on a GPU the previous step is checked
            # once this one is queued, so the device never waits for the host.
            self._check_unchecked()
            self._unchecked = record
            if self.device.type == "cpu":
                self._check_unchecked()
            if tc.preview_every and self.step % tc.preview_every == 0:
                with self._out_of_memory_is_reported(tc.preview_count, "sampling a preview"):
                    record.preview = self.preview()
            yield record
        self._check_unchecked()

    def _train_step(self):
        """One optimizer step of Algorithm 1; returns (loss, t, per-sample losses) on the device."""
        tc = self.config.train
        x_start = self._next_batch()
        b = x_start.shape[0]
        # Algorithm 1, line 3: t ~ Uniform({1, ..., T}) (indices 0..T-1 here).
        t = torch.randint(0, self.schedule.num_timesteps, (b,), device=self.device, generator=self.generator)
        noise = torch.randn(x_start.shape, generator=self.generator, device=self.device, dtype=x_start.dtype)
        network = self._training_network(x_start, t)
        self.optimizer.zero_grad(set_to_none=True)

        def losses(s: slice):
            """(mean loss, per-sample losses) of the batch's rows s."""
            with autocast(self.device, self.autocast_dtype):
                return p_losses(network, self.schedule, x_start[s], t[s], noise[s], loss_type=tc.loss)

        # On a CPU, slices of the batch at once, each in its own thread (batch_threads.py).
        parts = slice_count(self.device, b) if network is self.model else 1
        if parts == 1:
            loss, per_sample = losses(slice(None))
            loss.backward()
        else:
            per_sample = self._backward_in_slices(losses, b, parts)
            loss = per_sample.mean()
        self.optimizer.step()
        if self.ema is not None:
            self._update_ema()
        return loss, t, per_sample

    def _backward_in_slices(self, losses: Callable, b: int, parts: int) -> torch.Tensor:
        """The gradient of a batch of b as the sum of its slices' (`losses` of a slice and its
        backward in the slice's thread); returns the per-sample losses. The sum is taken in
        slice order, so a run does not depend on which thread finishes first."""
        params = [p for p in self.model.parameters() if p.requires_grad]

        def slice_gradients(s: slice):
            loss, per_sample = losses(s)
            share = (s.stop - s.start) / b  # of the batch mean
            return torch.autograd.grad(loss * share, params, allow_unused=True), per_sample

        results = map_slices(slice_gradients, b, parts)
        for i, p in enumerate(params):
            grads = [g[i] for g, _ in results if g[i] is not None]
            if grads:
                total = torch.empty_like(p).copy_(grads[0])  # the parameter's layout, as backward() gives
                for g in grads[1:]:
                    total += g
                p.grad = total
        return torch.cat([per_sample for _, per_sample in results])

    def _training_network(self, x: torch.Tensor, t: torch.Tensor) -> torch.nn.Module:
        # Compiled and recorded at the first step, once the weights are loaded; every batch
        # has this shape.
        if self._network is None:
            if self.compiles:
                self._compiled = CompiledNetwork(self.model)
            network = self._compiled if self._compiled is not None else self.model
            graphed = graph_training_network(network, x, t, self.autocast_dtype) if self.cuda_graphs else None
            self._network = graphed if graphed is not None else network
        return self._network

    @property
    def compile_failure(self) -> Optional[str]:
        """Why torch.compile could not compile the network (training then goes on without it)."""
        return self._compiled.failure if self._compiled is not None else None

    @property
    def compile_state(self) -> str:
        """What became of train.compile, in a few words ("" when it was not asked for)."""
        if not self.config.train.compile:
            return ""
        if not self.compiles:
            return "not compiled (CUDA only)"
        return "not compiled (it failed)" if self.compile_failure else "torch.compile"

    def describe_compute(self) -> str:
        """Where and how the run computes, e.g. 'CPU (2 threads), bf16 autocast'; the part
        about torch.compile changes if compiling fails at the first step."""
        text = f"{describe_device(self.device)}, {describe_precision(self.autocast_dtype)}"
        return f"{text}, {self.compile_state}" if self.compile_state else text

    def _check_unchecked(self) -> None:
        record, self._unchecked = self._unchecked, None
        if record is not None:
            self._check_finite(record)

    def _check_finite(self, record: StepRecord) -> None:
        loss = record.loss
        if math.isfinite(loss):
            return
        self.diverged = True
        lr = self.config.train.lr
        hint = f"lower the learning rate (now {lr:g}, try {lr / 10:g})"
        if self.autocast_dtype is not None:
            hint += " or train in fp32 precision"
        self._divergence = (
            f"training diverged at step {record.step}: the loss became {loss} — {hint}; "
            "checkpoints saved before this step are kept"
        )
        raise TrainingDiverged(self._divergence)

    def _check_memory(self) -> None:
        """Refuse a batch that could not fit in memory before the first step, saying which
        would (memory.check_step_fits): two forward passes of one and two images find how
        much a step keeps per image. No random draw is made, so a run stays reproducible."""
        free = memory.free_bytes(self.device)
        if free is None:
            return
        c, s = self.config.data.channels, self.config.data.image_size
        where = "GPU" if self.device.type == "cuda" else "computer"
        def forward(batch: int) -> None:
            x = torch.zeros(batch, c, s, s, device=self.device)
            t = torch.zeros(batch, dtype=torch.long, device=self.device)
            with autocast(self.device, self.autocast_dtype):
                self.model(x, t)

        try:
            per_image, fixed = memory.saved_activation_bytes(forward, list(self.model.parameters()))
        except Exception as e:
            if not is_out_of_memory(e):
                raise
            raise OutOfMemory(
                f"not even one image fits in {where} memory at this image size and model: use a smaller image "
                "size or model, or close other programs",
                batch_size=1,
            ) from None
        weights = sum(p.numel() * p.element_size() for p in self.model.parameters())
        memory.check_step_fits(per_image, fixed, weights, self.batch_size, free, where)

    @contextlib.contextmanager
    def _out_of_memory_is_reported(self, batch_size: int, doing: str):
        try:
            yield
        except Exception as e:
            if not is_out_of_memory(e):
                raise
            # Drop what the failed step holds (its frames keep activations alive) so the
            # app, and a smaller batch, can go on.
            traceback.clear_frames(e.__traceback__)
            self.optimizer.zero_grad(set_to_none=True)
            free_cached_memory(self.device)
            setting = "preview count" if doing.startswith("sampling") else "batch size"
            raise OutOfMemory(
                out_of_memory_message(self.device, batch_size, doing, setting), batch_size=batch_size
            ) from None

    def _next_batch(self) -> torch.Tensor:
        if self._order is None:
            # Data order is a pure function of (seed, epoch): nothing to save for it.
            self._order = epoch_permutation(self.images.shape[0], self.config.train.seed, self.epoch).to(self.device)
        start = self.batch_in_epoch * self.batch_size
        index = self._order[start : start + self.batch_size]
        batch = make_batch(self.images, index, self.config.data.flip, self.generator)
        self.batch_in_epoch += 1
        if self.batch_in_epoch >= self.batches_per_epoch:
            self.batch_in_epoch = 0
            self.epoch += 1
            self._order = None
        return batch

    @torch.no_grad()
    def _update_ema(self) -> None:
        # θ_ema ← decay·θ_ema + (1 − decay)·θ
        ema_params = list(self.ema.parameters())
        params = [p.detach() for p in self.model.parameters()]
        torch._foreach_lerp_(ema_params, params, 1.0 - self.config.train.ema_decay)

    @property
    def sampling_model(self) -> Unet:
        """The EMA weights when kept (they give cleaner samples), else the live weights."""
        return self.ema if self.ema is not None else self.model

    def preview(self, count: Optional[int] = None) -> torch.Tensor:
        """A preview batch, always from the same x_T and noise so previews are comparable
        over training; its RNG is separate from training's, so it never changes the run."""
        tc, dc = self.config.train, self.config.data
        n = count or tc.preview_count
        gen = torch.Generator(device="cpu").manual_seed(tc.seed + 1)
        was_training = self.model.training
        self.model.eval()
        try:
            x0 = sample(
                self.sampling_model,
                self.schedule,
                (n, dc.channels, dc.image_size, dc.image_size),
                sampler=tc.preview_sampler,
                steps=min(tc.preview_steps, self.schedule.num_timesteps),
                generator=gen,
                precision=tc.precision,
            )
        finally:
            self.model.train(was_training)
        return x0.clamp(-1, 1).cpu()

    # ---- checkpoints ----------------------------------------------------------------
    def save(self, path, extra: Optional[dict] = None):
        """Write everything needed to continue exactly, atomically.

        Refused once training diverged: NaN weights must never replace a good checkpoint.
        """
        self._refuse_if_diverged("saving")
        state = self._state()
        state["extra"].update(extra or {})
        return save_checkpoint(path, **state)

    def to_checkpoint(self) -> Checkpoint:
        """What `save` writes, kept in memory instead (CPU copies, nothing shared with this
        trainer): `from_checkpoint` continues it exactly, as it would the file."""
        self._refuse_if_diverged("continuing")

        def copied(tensors: dict) -> dict:
            return {k: v.detach().to("cpu", copy=True) for k, v in tensors.items()}

        state = self._state()
        optimizer = state["optimizer"]
        state.update(
            model=copied(state["model"]),
            ema=copied(state["ema"]) if state["ema"] is not None else None,
            optimizer={
                "state": {i: copied(s) for i, s in optimizer["state"].items()},
                "param_groups": copy.deepcopy(optimizer["param_groups"]),
            },
            rng={name: s.cpu() for name, s in state["rng"].items()},
        )
        return Checkpoint(**state, path=Path("this run"))

    def _state(self) -> dict:
        """Everything a checkpoint holds, as live references (save_checkpoint's arguments,
        the Checkpoint's fields): the one list `save` and `to_checkpoint` both take."""
        return dict(
            config=self.config.to_dict(),
            model=self.model.state_dict(),
            ema=self.ema.state_dict() if self.ema is not None else None,
            optimizer=self.optimizer.state_dict(),
            rng={"train": self.generator.get_state()},
            step=self.step,
            epoch=self.epoch,
            extra={"batch_in_epoch": self.batch_in_epoch, "elapsed": self.elapsed},
        )

    def _refuse_if_diverged(self, doing: str) -> None:
        self._check_unchecked()  # on a GPU the last step's loss is not checked yet
        if self.diverged:
            raise TrainingDiverged(
                f"not {doing} step {self.step}: training diverged (NaN/inf loss), so these weights are "
                "broken; the checkpoints saved before are kept"
            )

    @classmethod
    def from_checkpoint(
        cls,
        ckpt: Checkpoint | str,
        images: Optional[ImageSet] = None,
        device=None,
        progress=None,
        overrides: Optional[Callable[[RunConfig], None]] = None,
    ) -> "Trainer":
        """Rebuild a run from a checkpoint and continue it.

        `overrides` may change settings that do not alter the model (e.g. more steps).
        """
        ckpt, config = read_training_checkpoint(ckpt)
        model_before = copy.deepcopy(config.model)
        if overrides is not None:
            overrides(config)
            config.validate()
            if config.model != model_before:
                changed = [
                    f"model.{f.name} {getattr(model_before, f.name)!r} -> {getattr(config.model, f.name)!r}"
                    for f in dataclasses.fields(config.model)
                    if getattr(model_before, f.name) != getattr(config.model, f.name)
                ]
                raise ConfigError(
                    f"the model settings of a checkpoint cannot change when training continues ({', '.join(changed)}): "
                    "start a new run to train another architecture"
                )
        trainer = cls(config, images=images, device=device, progress=progress)
        trainer.model.load_state_dict(ckpt.model)  # shapes checked by read_training_checkpoint
        if trainer.ema is not None:
            trainer.ema.load_state_dict(ckpt.ema if ckpt.ema is not None else ckpt.model)
        try:
            if ckpt.optimizer is not None:
                trainer.optimizer.load_state_dict(ckpt.optimizer)
                for group in trainer.optimizer.param_groups:  # a changed learning rate applies
                    group["lr"] = config.train.lr
            if "train" in ckpt.rng:
                trainer.generator.set_state(ckpt.rng["train"].to(torch.uint8).cpu())
        except (ValueError, RuntimeError, KeyError, TypeError) as e:
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise CheckpointError(
                f"{ckpt.path}: its optimizer or random-number state does not fit this model ({reason}); "
                "it can still be sampled from, or start a new run"
            ) from None
        trainer.step = ckpt.step
        trainer.epoch = ckpt.epoch
        position, elapsed = ckpt.extra.get("batch_in_epoch", 0), ckpt.extra.get("elapsed", 0.0)
        numbers = isinstance(position, int) and isinstance(elapsed, (int, float)) and not isinstance(position, bool)
        if not numbers or position < 0 or not math.isfinite(elapsed) or elapsed < 0:
            raise CheckpointError(
                f"{ckpt.path}: its place in training is damaged (batch_in_epoch {shown(position)}, elapsed "
                f"{shown(elapsed)}) — use another checkpoint"
            )
        if position >= trainer.batches_per_epoch:
            # Fewer batches in an epoch than when it was saved (a larger batch, fewer images):
            # that epoch is over, the next one begins.
            position, trainer.epoch = 0, trainer.epoch + 1
        trainer.batch_in_epoch = position
        trainer.elapsed = float(elapsed)
        return trainer


def read_training_checkpoint(ckpt: Checkpoint | str) -> tuple[Checkpoint, RunConfig]:
    """A checkpoint to continue training from (a path or one already read) and its
    configuration. Raises CheckpointError (one line) for a file that holds weights only, and
    for weights that are not those of the model its configuration describes, found out
    before that model is built (a damaged or edited file could describe a huge one)."""
    if not isinstance(ckpt, Checkpoint):
        ckpt = load_checkpoint(ckpt)
    if not ckpt.config:
        raise CheckpointError(
            f"{ckpt.path} holds weights only (no training state): open it on the Denoising tab or with "
            "'ddpm sample' to sample from it; continuing training needs a DDPM Studio checkpoint"
        )
    config = RunConfig.from_dict(ckpt.config)
    states = [ckpt.model] + ([ckpt.ema] if ckpt.ema is not None else [])
    check_weights_fit_config(config.model, states, str(ckpt.path))
    return ckpt, config
