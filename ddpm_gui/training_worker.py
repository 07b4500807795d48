"""Training on a worker thread: the engine's `Trainer.steps()` driven one step at a time.

The trainer is built on the worker thread too (loading or downloading the dataset can take
minutes), with the engine's progress callback forwarded as `loading`. Between steps the
worker checks stop and pause, serves save requests, and reports:

- `progress`: the loss points of all steps since the last report, at most ~20 per second;
- `preview`: every preview grid the trainer made, always delivered;
- `snapshot`: a copy of the sampling (EMA) model for the Denoising tab, taken between steps
  at each preview, when pausing and at the end, so the GUI never touches training weights;
- `autosaved`: the run's autosave file was written (every `train.autosave_minutes`, between
  steps, by the engine's `AutosaveClock`; any save restarts that clock).

A loss that turns NaN/inf ends the run with the engine's `TrainingDiverged`, and a batch
that does not fit with its `OutOfMemory`: both reach the panel as `failed`. No save, manual
or automatic, ever writes weights of a diverged run over a good file.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from PySide6.QtCore import Signal

from ddpm_core.autosave import AutosaveClock
from ddpm_core.device import is_out_of_memory
from ddpm_core.errors import DDPMError, OutOfMemory, TrainingDiverged
from ddpm_core.unet import count_parameters
from ddpm_gui import autosave_files
from ddpm_gui.state import ModelSnapshot
from ddpm_gui.workers import LoopWorker, RateLimit, Stopped, one_line, report_error

# Builds the Trainer, given the progress callback to pass to the engine.
TrainerFactory = Callable[[Callable], object]


def snapshot_of(trainer) -> ModelSnapshot:
    """A private copy of the weights sampling should use (EMA when kept), ready to sample."""
    model = copy.deepcopy(trainer.sampling_model).eval().requires_grad_(False)
    weights = "EMA weights" if trainer.ema is not None else "live weights"
    return ModelSnapshot(
        model=model,
        schedule=copy.deepcopy(trainer.schedule),
        config=copy.deepcopy(trainer.config),
        source=f"training run, step {trainer.step:,} ({weights})",
        step=int(trainer.step),
    )


class LossBatch:
    """The step records gathered between two reports, turned into one dict of arrays."""

    def __init__(self):
        self._records = []

    def add(self, record) -> None:
        self._records.append(record)

    def take(self) -> Optional[dict]:
        if not self._records:
            return None
        recs, self._records = self._records, []
        last = recs[-1]
        return {
            "steps": np.array([r.step for r in recs], dtype=np.int64),
            "losses": np.array([r.loss for r in recs], dtype=np.float64),
            # per-sample losses with their timesteps, for the loss-by-timestep view
            "t": np.concatenate([np.asarray(r.t, dtype=np.int64) for r in recs]),
            "per_sample": np.concatenate([np.asarray(r.per_sample_loss, dtype=np.float32) for r in recs]),
            "step": int(last.step),
            "total_steps": int(last.total_steps),
            "epoch": int(last.epoch),
            "loss": float(last.loss),
            "images_per_sec": float(last.images_per_sec),
            "elapsed": float(last.elapsed),
            "eta_seconds": last.eta_seconds,  # None until a second step of this session
        }


@dataclass
class SaveResult:
    """What became of one requested save; filled in on the worker thread."""

    path: str
    done: bool = False
    step: Optional[int] = None  # the step written, when it succeeded
    error: Optional[str] = None  # the one-line reason, when it failed


class TrainingWorker(LoopWorker):
    loading = Signal(object, object, str)  # done, total (None: unknown), message
    ready = Signal(object)  # dict describing the run, once the trainer exists
    progress = Signal(object)  # LossBatch.take() dict
    preview = Signal(int, object)  # step, float32 (N, C, H, W) numpy in [-1, 1]
    snapshot = Signal(object)  # ModelSnapshot
    saved = Signal(str, int)  # path written, step it holds
    autosaved = Signal(str, int)  # the autosave file written, step it holds
    autosaveFailed = Signal(str)  # one line; training goes on and tries again later

    def __init__(
        self,
        make_trainer: TrainerFactory,
        report_interval: float = 0.05,
        autosave_path: Optional[Path] = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        super().__init__("training")
        self._make_trainer = make_trainer
        self._report_interval = report_interval
        self._autosave_path = Path(autosave_path) if autosave_path is not None else None
        self._clock = clock  # tests pass a fake one to make autosaves due
        self._autosave: Optional[AutosaveClock] = None
        self._last_record = None  # the latest step's record, checked before any save
        self.trainer = None  # set on the worker thread; read by the GUI after `finished`
        self._published_step = -1

    # ---- GUI side ----
    def request_save(self, path: str) -> Optional[SaveResult]:
        """Save a checkpoint between steps (or while paused); None once the loop has ended.

        `saved` or `requestFailed` tells the GUI; the returned SaveResult says the same to
        a caller that waits for the thread (closing the window)."""
        result = SaveResult(str(path))
        return result if self.request(lambda: self._save(result)) else None

    # ---- worker side ----
    def work(self) -> None:
        try:
            self.trainer = trainer = self._make_trainer(self._on_load_progress)
        except Exception as e:
            if is_out_of_memory(e):  # the dataset or the model, in memory or on the GPU
                raise OutOfMemory(
                    "preparing training ran out of memory: try a smaller image size, fewer "
                    "images, a smaller model, or close other programs"
                ) from None
            raise
        if self.stopping:
            return
        minutes = trainer.config.train.autosave_minutes if self._autosave_path is not None else 0
        self._autosave = AutosaveClock(minutes, clock=self._clock)
        self.ready.emit(
            {
                "dataset": trainer.dataset.name,
                "step": int(trainer.step),
                "total_steps": int(trainer.total_steps),
                "timesteps": int(trainer.schedule.num_timesteps),
                "batch_size": int(trainer.batch_size),
                "parameters": count_parameters(trainer.model),
                "device": trainer.describe_compute(),
                "compile": bool(trainer.compiles),
            }
        )
        self._published_step = -1 if trainer.step == 0 else int(trainer.step)
        batch = LossBatch()
        limit = RateLimit(self._report_interval)
        steps = trainer.steps()
        try:
            for record in steps:
                self._last_record = record
                batch.add(record)
                if record.preview is not None:
                    self._report(batch)
                    # The preview is a fresh CPU tensor; .numpy() shares it, so copy.
                    self.preview.emit(record.step, record.preview.numpy().astype(np.float32, copy=True))
                    self._publish()
                elif limit.due() or self.pause_requested or self.stopping:
                    self._report(batch)
                self.between_items(on_pause=self._publish)
                if self.stopping:
                    break
                if self._autosave.due():
                    self._write_autosave()
        finally:
            steps.close()
            self._report(batch)
        self._publish()  # the final state: finished or stopped

    def _report(self, batch: LossBatch) -> None:
        payload = batch.take()
        if payload is not None:
            payload["device"] = self.trainer.describe_compute()
            payload["compile_failure"] = self.trainer.compile_failure  # None unless it fell back
            self.progress.emit(payload)

    def _publish(self) -> None:
        if self.trainer is not None and self.trainer.step != self._published_step:
            self._published_step = self.trainer.step
            self.snapshot.emit(snapshot_of(self.trainer))

    def _latest_loss_is_finite(self) -> bool:
        """False when the last step's loss is NaN/inf but the engine has not said so yet.

        On a GPU the engine checks a step's loss one step later (no host sync per step), so
        the weights of the step just yielded may already be broken: read its loss here, a
        sync only when saving."""
        record = self._last_record
        return record is None or math.isfinite(record.loss)

    def _save(self, result: SaveResult) -> None:
        try:
            if self.trainer is None:
                raise DDPMError("nothing to save yet: training has not started")
            if not self._latest_loss_is_finite():
                raise TrainingDiverged(
                    f"not saving step {self._last_record.step}: the loss became {self._last_record.loss} "
                    "(training diverged), so these weights are broken; the checkpoints saved before are kept"
                )
            written = self.trainer.save(result.path)  # refused by the engine after divergence
        except Exception as e:
            result.error, result.done = one_line(e), True
            raise  # the loop reports it (requestFailed)
        result.path, result.step, result.done = str(written), int(self.trainer.step), True
        if self._autosave is not None:
            self._autosave.saved()  # a fresh checkpoint exists: the next autosave can wait
        self.saved.emit(result.path, result.step)

    def _write_autosave(self) -> None:
        """Write the run's autosave file (atomically: a crash mid-write keeps the last one)."""
        self._autosave.saved()  # after a failure too: try again in an interval, not every step
        if self.trainer.diverged or not self._latest_loss_is_finite():
            return  # the next step reports the divergence; the last autosave stays as it is
        try:
            written = self.trainer.save(self._autosave_path)
            autosave_files.prune(self._autosave_path.parent)
        except Exception as e:  # a full disk must not end an hour of training
            self.autosaveFailed.emit(f"autosave failed: {report_error('autosave', e)}")
            return
        self.autosaved.emit(str(written), int(self.trainer.step))

    def _on_load_progress(self, done, total, message: str) -> None:
        # Raising here is how the engine's downloader is cancelled: it cleans up and re-raises.
        if self.stopping:
            raise Stopped()
        self.loading.emit(done, total, str(message))
