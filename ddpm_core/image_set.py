"""`ImageSet`, the one in-memory dataset type every data source returns, and the small
helpers all sources share: uint8 -> model range, progress reports, one-line errors.

Kept apart from `ddpm_core.data` so the source modules (`shapes`, `remote_datasets`,
`image_folder`) and the dispatcher in `data` can all use it without import cycles.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from .download import ProgressFn


@dataclass
class ImageSet:
    """A whole dataset in memory."""

    images: torch.Tensor  # uint8 (N, C, H, W)
    labels: torch.Tensor  # int64 (N,), indexes class_names
    class_names: list[str]
    name: str  # human-readable, e.g. "Built-in shapes (8,000 images)"
    skipped: int = 0  # unreadable files skipped (folder datasets)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])


def to_model_range(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1] (the article's ToTensor, then 2x - 1)."""
    if images_uint8.dtype != torch.uint8:
        raise TypeError(f"to_model_range expects uint8 images, got {images_uint8.dtype}")
    return images_uint8.to(torch.float32).div_(127.5).sub_(1.0)


def report_progress(progress: Optional[ProgressFn], done: int, total: Optional[int], message: str) -> None:
    if progress is not None:
        progress(done, total, message)


def error_reason(e: BaseException) -> str:
    """A short phrase for `e` in a one-line DataError message."""
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    text = str(e).splitlines()[0] if str(e) else ""
    return text or type(e).__name__
