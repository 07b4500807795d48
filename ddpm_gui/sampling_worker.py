"""Sampling on a worker thread: the engine's `sample_loop` (DDPM or DDIM), frame by frame.

Each `SampleStep` becomes one frame: x_t (the step's input) and x̂_0 (the model's guess of
the clean image), converted to uint8 (N, H, W, C) right here, so only small CPU copies
cross to the GUI (a 28×28 grid of 16 is 12 KB per image stack). Frames are sent in
batches at most ~20 times a second; the final sample x_0 comes last in `completed`.

The network runs in the precision the model was trained with (`train.precision`: "auto"
is bf16 where the hardware is fast at it). A batch of images too large for the GPU ends
with the engine's `OutOfMemory` message (cached memory given back first), so the app goes
on and the person knows to sample fewer images.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass

import numpy as np
import torch
from PySide6.QtCore import Signal

from ddpm_core.device import free_cached_memory, is_out_of_memory, out_of_memory_message
from ddpm_core.errors import OutOfMemory
from ddpm_core.export import to_uint8
from ddpm_core.samplers import sample_loop
from ddpm_gui.workers import LoopWorker, RateLimit


@dataclass
class SampleRequest:
    model: object  # a Unet in eval mode, never trained while we sample
    schedule: object  # NoiseSchedule on the model's device
    count: int
    channels: int
    image_size: int
    sampler: str = "ddpm"  # or "ddim"
    steps: int = 50  # DDIM only
    eta: float = 0.0  # DDIM only
    seed: int = 0
    precision: str = "auto"  # the run's train.precision: "auto", "fp32" or "bf16"


class SamplingWorker(LoopWorker):
    begun = Signal(object)  # {"num_steps", "count", "height", "width", "channels"} at the first step
    frames = Signal(object)  # {"first": index, "t": [...], "noise": [...], "x_t": u8 (k,N,H,W,C), "x0": same}
    completed = Signal(object)  # the final samples x_0, uint8 (N, H, W, C)

    def __init__(self, request: SampleRequest, report_interval: float = 0.05):
        super().__init__("sampling")
        self.job = request
        self._report_interval = report_interval

    def work(self) -> None:
        device = next(self.job.model.parameters()).device
        try:
            self._sample()
        except Exception as e:
            if not is_out_of_memory(e):
                raise
            # The traceback holds the failed step's frames and their tensors: drop those
            # first, or the cache cannot be given back.
            traceback.clear_frames(e.__traceback__)
            free_cached_memory(device)
            raise OutOfMemory(out_of_memory_message(device, self.job.count, "sampling", "number of images")) from None

    def _sample(self) -> None:
        r = self.job
        # A CPU generator gives the same noise for the same seed on any device.
        generator = torch.Generator(device="cpu").manual_seed(int(r.seed))
        noise_level = r.schedule.sqrt_one_minus_alphas_cumprod.detach().cpu().numpy()
        loop = sample_loop(
            r.model,
            r.schedule,
            (r.count, r.channels, r.image_size, r.image_size),
            sampler=r.sampler,
            steps=r.steps if r.sampler == "ddim" else None,
            eta=r.eta,
            generator=generator,
            precision=r.precision,
        )
        pending: list = []
        limit = RateLimit(self._report_interval)
        last = None
        try:
            for step in loop:
                if last is None:
                    _, h, w, c = to_uint8(step.x_t[:1]).shape
                    self.begun.emit(
                        {"num_steps": int(step.num_steps), "count": int(r.count), "height": h, "width": w, "channels": c}
                    )
                last = step
                pending.append((int(step.index), int(step.t), float(noise_level[step.t]),
                                to_uint8(step.x_t), to_uint8(step.x0_pred)))
                if limit.due():
                    self._send(pending)
                self.between_items()
                if self.stopping:
                    break
        finally:
            loop.close()
            self._send(pending)
        if last is not None and not self.stopping and last.index + 1 == last.num_steps:
            self.completed.emit(to_uint8(last.x_prev))

    def _send(self, pending: list) -> None:
        if not pending:
            return
        self.frames.emit(
            {
                "first": pending[0][0],
                "t": [p[1] for p in pending],
                "noise": [p[2] for p in pending],
                "x_t": np.stack([p[3] for p in pending]),
                "x0": np.stack([p[4] for p in pending]),
            }
        )
        pending.clear()

    def _release(self) -> None:
        super()._release()
        self.job = None  # the model copy can go as soon as sampling is over
