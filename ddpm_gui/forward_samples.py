"""Example images x₀ for the forward-process view, loaded off the GUI thread.

The forward panel only needs a few dozen images of the current dataset, but getting them
can mean reading a 160 MB archive (CIFAR-10) or hundreds of files, so it always happens on
a worker thread (`workers.LatestTask`, so the app's thread registry joins it on quit).
A dataset that is not downloaded yet is never downloaded from here (that is the training
panel's job, with its progress bar): the built-in shapes stand in meanwhile.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ddpm_core import data
from ddpm_core.config import DataConfig
from ddpm_core.errors import DataError, DDPMError

POOL_SIZE = 48  # enough variety for "Another sample", quick to make at any image size
_READ_LIMIT = 512  # images read from a downloaded dataset to draw the pool from


@dataclass
class SamplePool:
    images: np.ndarray  # float32 (N, C, H, W) in [-1, 1]
    captions: list[str]  # one per image, e.g. "triangle" or a file name
    title: str  # where they come from, e.g. "Built-in shapes"
    note: str = ""  # why the pool is not what was asked for (shown in the status bar)


def load_pool(cfg: DataConfig, seed: int) -> SamplePool:
    """A few images like those `cfg` trains on. Runs in a worker thread; raises DDPMError."""

    title = data.DATASET_TITLES.get(cfg.dataset, cfg.dataset)
    if cfg.dataset in ("fashion_mnist", "mnist", "cifar10") and data.needs_download(cfg):
        size = data.DOWNLOAD_SIZE_MB.get(cfg.dataset)
        pool = _shapes_pool(cfg, seed)
        pool.note = (
            f"{title} is not downloaded yet (about {size} MB; starting training downloads it): "
            "showing the built-in shapes meanwhile"
        )
        return pool
    if cfg.dataset == "shapes":
        return _shapes_pool(cfg, seed)
    if cfg.dataset == "folder":
        return _folder_pool(cfg, seed)
    limited = dataclasses.replace(cfg, limit=min(cfg.limit or _READ_LIMIT, _READ_LIMIT))
    image_set = data.load_dataset(limited)
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(image_set), size=min(POOL_SIZE, len(image_set)), replace=False)
    images = data.to_model_range(image_set.images[torch.as_tensor(pick)]).numpy()
    names = image_set.class_names
    captions = [names[int(image_set.labels[i])] if names else "" for i in pick]
    return SamplePool(images, captions, title)


def _shapes_pool(cfg: DataConfig, seed: int) -> SamplePool:
    # Same generator as the training set, so these are the same kind of images (a
    # smaller n gives other draws, which is fine for a look at the forward process).
    s = data.make_shapes(POOL_SIZE, cfg.image_size, cfg.channels, seed=seed)
    captions = [s.class_names[int(k)] for k in s.labels]
    return SamplePool(data.to_model_range(s.images).numpy(), captions, data.DATASET_TITLES["shapes"])


def _folder_pool(cfg: DataConfig, seed: int) -> SamplePool:
    root = Path(cfg.root or "").expanduser()
    if not cfg.root or not root.is_dir():
        raise DataError(f"image folder {root} does not exist: choose an existing folder of images")
    files = data.list_image_files(root)
    # Random files rather than the first ones: sorted order would show only one class.
    random.Random(seed).shuffle(files)
    images, captions = [], []
    for path in files:
        if len(images) >= POOL_SIZE:
            break
        try:
            images.append(data.load_image(path, cfg.image_size, cfg.channels).numpy())
        except DDPMError:
            continue  # a damaged file: the training loader skips it too
        captions.append(path.name)
    if not images:
        raise DataError(f"no readable images in {root}: choose a folder with PNG or JPEG images")
    return SamplePool(np.stack(images), captions, f"Folder '{root.name}'")
