"""A sampling run's frames, kept compact for scrubbing and export.

Frame k < N (N = sampling steps) is step k: its input x_t and the model's x̂_0, at timestep
t with noise level √(1−ᾱ_t). Frame N is the final sample x_0. Both image stacks are
allocated once as uint8 (frames, images, H, W, C): 1000 DDPM steps of 16 images at 28×28
take 12.5 MB each, a quarter of float32, and nothing is reallocated while sampling.
"""

from __future__ import annotations

import numpy as np


class Trajectory:
    def __init__(self, num_steps: int, count: int, height: int, width: int, channels: int):
        self.num_steps = int(num_steps)
        frames = self.num_steps + 1
        self.x_t = np.zeros((frames, count, height, width, channels), dtype=np.uint8)
        self.x0 = np.zeros_like(self.x_t)
        self.t = np.full(frames, -1, dtype=np.int64)  # -1: the final sample (no timestep)
        self.noise = np.zeros(frames, dtype=np.float64)  # √(1−ᾱ_t); 0 for the final sample
        self.filled = 0  # frames 0..filled-1 hold data
        self.source = ""  # the model it was sampled from, as the viewer names it
        self.complete = False

    @staticmethod
    def nbytes(num_steps: int, count: int, height: int, width: int, channels: int) -> int:
        """The memory a trajectory of these sizes takes (x_t and x̂_0 of every frame)."""
        return 2 * (int(num_steps) + 1) * count * height * width * channels

    @property
    def frame_count(self) -> int:
        return self.num_steps + 1

    @property
    def count(self) -> int:
        return self.x_t.shape[1]

    def add_steps(self, first: int, x_t: np.ndarray, x0: np.ndarray, t, noise) -> None:
        k = len(x_t)
        self.x_t[first : first + k] = x_t
        self.x0[first : first + k] = x0
        self.t[first : first + k] = t
        self.noise[first : first + k] = noise
        self.filled = max(self.filled, first + k)

    def finish(self, final: np.ndarray) -> None:
        """The sample x_0: it is also its own x̂_0."""
        n = self.num_steps
        self.x_t[n] = final
        self.x0[n] = final
        self.filled = n + 1
        self.complete = True

    def final(self) -> np.ndarray:
        return self.x_t[self.num_steps]

    @staticmethod
    def to_model_range(images: np.ndarray) -> np.ndarray:
        """uint8 (..., H, W, C) -> float32 (..., C, H, W) in [-1, 1], the engine's layout.

        Exact inverse of the engine's to_uint8, so exports keep the pixels shown.
        """
        a = np.moveaxis(images, -1, -3).astype(np.float32)
        return a / 127.5 - 1.0
