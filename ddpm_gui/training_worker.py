"""Training on a worker thread: the engine's `Trainer.steps()` driven one step at a time.

The trainer is built on the worker thread too (loading or downloading the dataset can take
minutes), with the engine's progress callback forwarded as `loading`. Between steps the
worker checks stop and pause, serves save requests, and reports:

- `progress`: the loss points of all steps since the last report, at most ~20 per second;
- `preview`: every preview grid the trainer made, always delivered;
- `snapshot`: a copy of the sampling (EMA) model for the Denoising tab, taken between steps
  at each preview, when pausing and at the end, so the GUI never touches training weights.
"""

from __future__ import annotations

import copy
from typing import Callable, Optional

import numpy as np
from PySide6.QtCore import Signal

from ddpm_core.device import describe_device
from ddpm_core.errors import DDPMError
from ddpm_core.unet import count_parameters
from ddpm_gui.state import ModelSnapshot
from ddpm_gui.workers import LoopWorker, RateLimit, Stopped

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
            "eta_seconds": float(last.eta_seconds),
        }


class TrainingWorker(LoopWorker):
    loading = Signal(object, object, str)  # done, total (None: unknown), message
    ready = Signal(object)  # dict describing the run, once the trainer exists
    progress = Signal(object)  # LossBatch.take() dict
    preview = Signal(int, object)  # step, float32 (N, C, H, W) numpy in [-1, 1]
    snapshot = Signal(object)  # ModelSnapshot
    saved = Signal(str, int)  # path written, step it holds

    def __init__(self, make_trainer: TrainerFactory, report_interval: float = 0.05):
        super().__init__("training")
        self._make_trainer = make_trainer
        self._report_interval = report_interval
        self.trainer = None  # set on the worker thread; read by the GUI after `finished`
        self._published_step = -1

    # ---- GUI side ----
    def request_save(self, path: str) -> bool:
        """Save a checkpoint between steps (or while paused); False once the loop has ended."""
        return self.request(lambda: self._save(path))

    # ---- worker side ----
    def work(self) -> None:
        self.trainer = trainer = self._make_trainer(self._on_load_progress)
        if self.stopping:
            return
        self.ready.emit(
            {
                "dataset": trainer.dataset.name,
                "step": int(trainer.step),
                "total_steps": int(trainer.total_steps),
                "timesteps": int(trainer.schedule.num_timesteps),
                "batch_size": int(trainer.batch_size),
                "parameters": count_parameters(trainer.model),
                "device": describe_device(trainer.device),
            }
        )
        self._published_step = -1 if trainer.step == 0 else int(trainer.step)
        batch = LossBatch()
        limit = RateLimit(self._report_interval)
        steps = trainer.steps()
        try:
            for record in steps:
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
        finally:
            steps.close()
            self._report(batch)
        self._publish()  # the final state: finished or stopped

    def _report(self, batch: LossBatch) -> None:
        payload = batch.take()
        if payload is not None:
            self.progress.emit(payload)

    def _publish(self) -> None:
        if self.trainer is not None and self.trainer.step != self._published_step:
            self._published_step = self.trainer.step
            self.snapshot.emit(snapshot_of(self.trainer))

    def _save(self, path: str) -> None:
        if self.trainer is None:
            raise DDPMError("nothing to save yet: training has not started")
        written = self.trainer.save(path)
        self.saved.emit(str(written), int(self.trainer.step))

    def _on_load_progress(self, done, total, message: str) -> None:
        # Raising here is how the engine's downloader is cancelled: it cleans up and re-raises.
        if self.stopping:
            raise Stopped()
        self.loading.emit(done, total, str(message))
