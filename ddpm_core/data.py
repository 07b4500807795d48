"""Training images: the one entry point (`load_dataset`) and batching.

Every source ends up as one `ImageSet` whose `images` is a uint8 tensor (N, C, H, W)
already at the configured size and channel count. The datasets are small, so keeping
them in memory and converting whole batches with tensor ops (`make_batch`) is much
faster than per-sample PIL transforms.

The sources live in their own modules: `shapes` (built-in, generated), `remote_datasets`
(MNIST / Fashion-MNIST / CIFAR-10, downloaded on first use into `default_data_dir()`)
and `image_folder` (a folder of images, or one image file). Their public names are
re-exported here, so `from ddpm_core.data import ...` keeps working for all of them.

No Qt here: progress is reported through a plain callback
`progress(done: int, total: int | None, message: str)`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from .config import DataConfig
from .download import ProgressFn
from .errors import DataError
from .image_folder import FOLDER_TITLE, IMAGE_EXTENSIONS, list_image_files, load_folder, load_image
from .image_set import ImageSet, report_progress, to_model_range
from .memory import check_images_fit
from .remote_datasets import (
    DOWNLOAD_SIZE_MB,
    NATIVE_SHAPE,
    REMOTE_TITLES,
    SOURCE_OVERRIDES,
    RemoteDataset,
    RemoteFile,
    RestrictedUnpickler,
    cifar_extracted_dir,
    dataset_folder,
    default_data_dir,
    download_dataset,
    needs_download,
    read_cifar10,
    read_idx,
    remote_dataset,
    restricted_load,
)
from .shapes import SHAPE_CLASSES, SHAPES_COUNT, SHAPES_TITLE, make_shapes

__all__ = [
    # defined here
    "DATASET_TITLES",
    "epoch_permutation",
    "load_dataset",
    "make_batch",
    "prepare_images",
    "rgb_to_gray",
    # re-exported from image_set
    "ImageSet",
    "to_model_range",
    # re-exported from shapes
    "SHAPE_CLASSES",
    "SHAPES_COUNT",
    "make_shapes",
    # re-exported from remote_datasets
    "DOWNLOAD_SIZE_MB",
    "NATIVE_SHAPE",
    "SOURCE_OVERRIDES",
    "RemoteDataset",
    "RemoteFile",
    "RestrictedUnpickler",
    "dataset_folder",
    "default_data_dir",
    "download_dataset",
    "needs_download",
    "read_cifar10",
    "read_idx",
    "remote_dataset",
    "restricted_load",
    # re-exported from image_folder
    "IMAGE_EXTENSIONS",
    "list_image_files",
    "load_folder",
    "load_image",
]

# Human-readable titles, in the order the GUI offers them.
DATASET_TITLES = {"shapes": SHAPES_TITLE, **REMOTE_TITLES, "folder": FOLDER_TITLE}


# ------------------------------------------------------------------------------------
# The one entry point
# ------------------------------------------------------------------------------------


def load_dataset(cfg: DataConfig, progress: Optional[ProgressFn] = None, data_dir: Optional[Path] = None) -> ImageSet:
    """Load the images `cfg` asks for, downloading them first if needed.

    Raises DataError (one actionable line) for missing folders, failed downloads and
    damaged files. `progress` gets download bytes, then folder file counts.
    """
    size, channels, limit = cfg.image_size, cfg.channels, cfg.limit
    if cfg.dataset == "shapes":
        # Drawn from the parameters of the full set, so `limit` keeps a prefix of the same
        # images whatever the limit.
        n = SHAPES_COUNT if limit is None else min(limit, SHAPES_COUNT)
        check_images_fit(n, size, channels, SHAPES_TITLE)
        return make_shapes(SHAPES_COUNT, size, channels, seed=0, count=n, progress=progress)
    if cfg.dataset == "folder":
        if not cfg.root:
            raise DataError("no image folder chosen: set data.root to a folder of images")
        return load_folder(cfg.root, size, channels, limit=limit, progress=progress)
    if cfg.dataset in ("fashion_mnist", "mnist"):
        spec = remote_dataset(cfg.dataset)
        paths = download_dataset(cfg.dataset, progress, data_dir)
        report_progress(progress, 0, None, f"reading {spec.title}")
        img_file = next(f.filename for f in spec.files if "images" in f.filename)
        lbl_file = next(f.filename for f in spec.files if "labels" in f.filename)
        images = read_idx(paths[img_file], ndim=3)
        labels = read_idx(paths[lbl_file], ndim=1)
        if len(images) != len(labels):
            raise DataError(
                f"{paths[img_file].name} has {len(images)} images but {paths[lbl_file].name} has "
                f"{len(labels)} labels: delete both from {paths[img_file].parent} so they are downloaded again"
            )
        _require_images(images.shape, paths[img_file])
        n = len(images) if limit is None else min(limit, len(images))
        check_images_fit(n, size, channels, spec.title)
        x = torch.from_numpy(images[:n].copy()).unsqueeze(1)  # (N, 1, 28, 28)
        y = torch.from_numpy(labels[:n].astype(np.int64))
        x = prepare_images(x, size, channels)
        return ImageSet(x, y, list(spec.class_names), f"{spec.title} ({n:,} images)")
    if cfg.dataset == "cifar10":
        folder = dataset_folder("cifar10", data_dir)
        spec = remote_dataset("cifar10")
        source = cifar_extracted_dir(folder)
        if source is None:
            source = download_dataset("cifar10", progress, data_dir)[spec.files[0].filename]
        report_progress(progress, 0, None, f"reading {spec.title}")
        pixels, labels, names = read_cifar10(source)
        _require_images(pixels.shape, source)
        n = len(pixels) if limit is None else min(limit, len(pixels))
        check_images_fit(n, size, channels, spec.title)
        x = prepare_images(torch.from_numpy(pixels[:n]), size, channels)
        y = torch.from_numpy(labels[:n].astype(np.int64))
        return ImageSet(x, y, names, f"{spec.title} ({n:,} images)")
    raise DataError(f"unknown dataset {cfg.dataset!r}: choose shapes, fashion_mnist, mnist, cifar10 or folder")


def _require_images(shape: tuple, source: Path) -> None:
    """DataError unless a downloaded file's images array (N, ..., H, W) holds images."""
    if shape[0] == 0 or 0 in shape[-2:]:
        what = "no images" if shape[0] == 0 else f"images of {shape[-2]}×{shape[-1]} pixels"
        raise DataError(f"{source} holds {what}: delete it so that it is downloaded again")


# ------------------------------------------------------------------------------------
# Converting whole uint8 image tensors
# ------------------------------------------------------------------------------------


def prepare_images(images: torch.Tensor, image_size: int, channels: int, chunk: int = 2048) -> torch.Tensor:
    """uint8 (N,C,H,W) -> uint8 (N,channels,image_size,image_size).

    Shorter side resized to image_size (bilinear, anti-aliased like PIL) then centre
    crop; RGB->grey by luminance, grey->RGB by repeating. Resized in chunks so the
    kernel's temporaries stay small.
    """
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError("prepare_images expects a uint8 tensor (N, C, H, W)")
    c = images.shape[1]
    if c == 3 and channels == 1:
        images = rgb_to_gray(images)  # before resizing: a third of the work
    if images.shape[-2:] != (image_size, image_size):
        out = [_resize_crop(images[i : i + chunk], image_size) for i in range(0, len(images), chunk)]
        images = torch.cat(out) if out else images[:, :, :image_size, :image_size]
    if images.shape[1] == 1 and channels == 3:
        images = images.repeat(1, 3, 1, 1)  # after resizing: less to resize
    return images.contiguous()


def rgb_to_gray(images: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """uint8 (N,3,H,W) -> (N,1,H,W), bit-exact with PIL's convert("L") (ITU-R 601-2
    weights in 16-bit fixed point), so folder images and CIFAR-10 get the same grey."""
    src = images.cpu().numpy()
    out = np.empty((src.shape[0], 1, *src.shape[2:]), dtype=np.uint8)
    for i in range(0, len(src), chunk):  # chunks: uint32 copies of the whole set are big
        # numpy, in place: ~5x faster than the same integer maths as torch ops on CPU.
        x = src[i : i + chunk]
        y = x[:, 0].astype(np.uint32) * 19595
        y += x[:, 1].astype(np.uint32) * 38470
        y += x[:, 2].astype(np.uint32) * 7471
        y += 0x8000
        y >>= 16
        out[i : i + chunk, 0] = y
    return torch.from_numpy(out)


def _resize_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    if h == size and w == size:
        return x
    # Same output size rule as torchvision's Resize(int): the shorter side becomes size.
    if h <= w:
        nh, nw = size, max(size, int(size * w / h))
    else:
        nh, nw = max(size, int(size * h / w)), size
    if (nh, nw) != (h, w):
        try:
            # CPU torch resizes uint8 directly (PIL's algorithm, ~5x faster than via float).
            x = F.interpolate(x, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)
        except (RuntimeError, NotImplementedError):  # backends without the uint8 kernel
            y = F.interpolate(x.float(), size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)
            x = y.round_().clamp_(0, 255).to(torch.uint8)
    top, left = int(round((nh - size) / 2.0)), int(round((nw - size) / 2.0))
    return x[..., top : top + size, left : left + size]


# ------------------------------------------------------------------------------------
# Batching
# ------------------------------------------------------------------------------------


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The data order of one epoch: int64 (n,), a pure function of (n, seed, epoch).

    Resuming a run at (epoch, position) therefore sees exactly the batches it would
    have seen. The seed is hashed with the epoch (not added) so (seed, epoch+1) and
    (seed+1, epoch) give unrelated orders.
    """
    digest = hashlib.sha256(f"ddpm-studio/epoch/{int(seed)}/{int(epoch)}".encode()).digest()
    g = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)
    return torch.randperm(n, generator=g)


def make_batch(
    images_uint8: torch.Tensor,
    index: torch.Tensor,
    flip: bool,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """float32 (B,C,H,W) in [-1, 1] for images[index]; with `flip`, each image is
    mirrored left-right with probability 1/2, drawn from `generator` (so a resumed run
    can restore the exact flips by restoring the generator's state)."""
    x = to_model_range(images_uint8[index.to(images_uint8.device)])
    if flip and len(x):
        device = generator.device if generator is not None else torch.device("cpu")
        mask = torch.rand(len(x), generator=generator, device=device) < 0.5
        x = torch.where(mask.to(x.device).view(-1, 1, 1, 1), x.flip(-1), x)
    return x
