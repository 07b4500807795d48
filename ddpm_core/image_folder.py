"""Image-folder datasets and single image files, read with Pillow.

Every image is resized (shorter side to the target size) and centre-cropped like
torchvision's Resize + CenterCrop, and converted to grey or RGB.
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .download import ProgressFn
from .errors import DataError
from .image_set import ImageSet, error_reason, report_progress, to_model_range
from .memory import check_images_fit

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
FOLDER_TITLE = "Image folder"


def list_image_files(root: Path) -> list[Path]:
    """Image files under `root`, recursively, sorted by their path relative to `root`
    (so subfolder "cats" comes before "dogs", and the order is the same everywhere)."""
    found: list[Path] = []
    # os.walk: does not follow directory symlinks (no loops) and ignores unreadable dirs.
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))  # skip .git, .thumbnails...
        for fname in sorted(filenames):
            # Hidden files include macOS "._name.jpg" resource forks, which are not images.
            if fname.startswith(".") or os.path.splitext(fname)[1].lower() not in IMAGE_EXTENSIONS:
                continue
            path = Path(dirpath) / fname
            # Regular files only (links to them too): reading a named pipe or a device
            # named like an image would wait for ever.
            if path.is_file():
                found.append(path)
    return sorted(found, key=lambda p: p.relative_to(root).parts)


def _read_pil(path: Path, image_size: int, channels: int) -> np.ndarray:
    """Read one image as uint8 (C, image_size, image_size); PIL errors propagate."""
    from PIL import Image  # Pillow is a torchvision dependency; imported on first use

    # Between Pillow's pixel limit and twice it, Pillow warns on stderr and goes on (above
    # it, it refuses: the file is skipped or refused). Reading such a photo is what was asked.
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    with Image.open(path) as img:
        if img.format == "JPEG":
            # Let libjpeg decode at a reduced scale (still >= 2x the target): big photos
            # load many times faster.
            img.draft("L" if channels == 1 else "RGB", (2 * image_size, 2 * image_size))
        img.load()
        img = _to_mode(img, channels)
        w, h = img.size
        if min(w, h) < 1:
            raise ValueError("empty image")
        # torchvision's Resize(int) then CenterCrop(int).
        if w <= h:
            nw, nh = image_size, int(image_size * h / w)
        else:
            nw, nh = int(image_size * w / h), image_size
        nw, nh = max(nw, image_size), max(nh, image_size)
        if (nw, nh) != (w, h):
            img = img.resize((nw, nh), Image.Resampling.BILINEAR, reducing_gap=3.0)
        left, top = int(round((nw - image_size) / 2.0)), int(round((nh - image_size) / 2.0))
        img = img.crop((left, top, left + image_size, top + image_size))
        arr = np.array(img, dtype=np.uint8)  # a writable copy, so torch can share it
    if arr.ndim == 2:
        arr = arr[None]
    else:
        arr = arr.transpose(2, 0, 1)
    return np.ascontiguousarray(arr)


def _to_mode(img, channels: int):
    from PIL import Image

    if img.mode.startswith("I") or img.mode == "F":
        # 16/32-bit integer or float greyscale: PIL's convert("L") clips to 0..255, which
        # turns 16-bit images white and 0..1 float images black; rescale instead.
        # NaN (float images) would become an arbitrary byte, with a numpy warning on stderr
        a = np.nan_to_num(np.asarray(img, dtype=np.float64), nan=0.0)
        peak = float(a.max()) if a.size else 0.0
        if img.mode.startswith("I;16") or (img.mode == "I" and peak > 255):
            a = a / 257.0  # 0..65535 -> 0..255
        elif img.mode == "F" and peak <= 1.0:
            a = a * 255.0  # 0..1 floats
        img = Image.fromarray(np.clip(np.round(a), 0, 255).astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (img.mode == "P" and "transparency" in img.info):
        # Transparent pixels have arbitrary colours underneath; put them on the same
        # black the built-in datasets use instead of exposing those colours.
        rgba = img.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        img = Image.alpha_composite(black, rgba)
    return img.convert("L" if channels == 1 else "RGB")


def load_folder(
    root: str | Path,
    image_size: int,
    channels: int,
    limit: Optional[int] = None,
    progress: Optional[ProgressFn] = None,
) -> ImageSet:
    """Every readable image under `root` (recursively), resized and centre-cropped.

    The first-level subfolder of each file is its label (ImageFolder layout); files
    directly in `root` get the label "". Unreadable files are skipped and counted in
    `ImageSet.skipped`. `progress` gets (files done, files total, message).
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise DataError(f"image folder {root} does not exist: choose an existing folder of images")
    if not root.is_dir():
        raise DataError(f"{root} is a file, not a folder: choose the folder that contains the images")
    files = list_image_files(root)
    if not files:
        exts = ", ".join(sorted(e[1:] for e in IMAGE_EXTENSIONS))
        raise DataError(f"no images found in {root} or its subfolders (looked for {exts}): choose a folder with images")

    check_images_fit(len(files) if limit is None else min(limit, len(files)), image_size, channels, f"folder {root}")
    arrays: list[np.ndarray] = []
    label_names: list[str] = []
    skipped = 0
    last = 0.0
    total = len(files)
    for i, path in enumerate(files):
        if limit is not None and len(arrays) >= limit:
            break
        now = time.monotonic()
        if progress is not None and now - last >= 0.1:
            last = now
            progress(i, total, f"reading images ({i:,}/{total:,})")
        try:
            arrays.append(_read_pil(path, image_size, channels))
        except Exception:  # corrupt/truncated/unsupported files raise many PIL error types
            skipped += 1
            continue
        rel = path.relative_to(root).parts
        label_names.append(rel[0] if len(rel) > 1 else "")
    if not arrays:
        raise DataError(
            f"none of the {total:,} image files in {root} could be read (all damaged or unsupported): "
            "choose a folder with PNG or JPEG images"
        )
    unreadable = f", {skipped:,} unreadable file{'s' if skipped != 1 else ''} left out" if skipped else ""
    report_progress(progress, total, total, f"read {len(arrays):,} images{unreadable}")
    class_names = sorted(set(label_names))
    index = {name: k for k, name in enumerate(class_names)}
    images = torch.from_numpy(np.stack(arrays))
    labels = torch.tensor([index[n] for n in label_names], dtype=torch.int64)
    name = f"Folder '{root.name or root}' ({len(arrays):,} images{unreadable})"
    return ImageSet(images, labels, class_names, name, skipped=skipped)


def load_image(path: str | Path, image_size: int, channels: int) -> torch.Tensor:
    """One image as float32 (C, image_size, image_size) in [-1, 1], resized like the
    datasets. Raises DataError for a missing, unreadable or non-image file."""
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"image file {p} does not exist: choose an existing image")
    if p.is_dir():
        raise DataError(f"{p} is a folder, not an image: choose an image file (PNG, JPEG, ...)")
    if not p.is_file():  # a named pipe or a device: reading it could wait for ever
        raise DataError(f"{p} is not a regular file: choose an image file (PNG, JPEG, ...)")
    try:
        arr = _read_pil(p, image_size, channels)
    except Exception as e:  # PIL raises many different types for bad files
        raise DataError(
            f"cannot read {p} as an image ({error_reason(e)}): choose a PNG, JPEG, BMP, GIF, WebP or TIFF file"
        ) from None
    return to_model_range(torch.from_numpy(arr))
