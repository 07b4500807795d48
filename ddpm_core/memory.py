"""How much memory this computer has free, and refusing a dataset that would not fit in it.

A dataset is kept in memory whole, as uint8 (N, C, S, S). At a large image size that is
more than a laptop has: 8,000 images at 512×512 in colour are 6.3 GB. Allocating it
anyway does not fail cleanly: on Linux the kernel lets the allocation through and then
kills the process when the pages are touched, with no message and nothing saved. So the
size is checked against the free memory first, while a message can still be given.
"""

from __future__ import annotations

import ctypes
import os
import sys
from typing import Callable, Optional

import torch

from .errors import DataError, OutOfMemory

# The dataset may take at most this share of the free memory: the model, its optimizer
# state and the activations of a training step need the rest.
DATASET_SHARE = 0.5


def available_bytes() -> Optional[int]:
    """Memory free for a new allocation, in bytes; None where it cannot be found out."""
    try:
        if sys.platform.startswith("linux"):
            with open("/proc/meminfo", encoding="ascii") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        if sys.platform == "win32":
            return _windows_available()
        # macOS and other Unixes: physical memory, an upper bound on what is free
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None
    return None


class _MemoryStatus(ctypes.Structure):
    _fields_ = [
        ("length", ctypes.c_ulong),
        ("load", ctypes.c_ulong),
        ("total_phys", ctypes.c_ulonglong),
        ("avail_phys", ctypes.c_ulonglong),
        ("total_page_file", ctypes.c_ulonglong),
        ("avail_page_file", ctypes.c_ulonglong),
        ("total_virtual", ctypes.c_ulonglong),
        ("avail_virtual", ctypes.c_ulonglong),
        ("avail_extended_virtual", ctypes.c_ulonglong),
    ]


def _windows_available() -> Optional[int]:
    status = _MemoryStatus()
    status.length = ctypes.sizeof(_MemoryStatus)
    if not ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status)):  # type: ignore[attr-defined]
        return None
    return int(status.avail_phys)


def human_bytes(n: float) -> str:
    """e.g. '812 bytes', '1.3 MB', '6.3 GB', '4.0 TB' (powers of 1024, as file managers show sizes)."""
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024:
            return f"{n:.0f} bytes" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} TB"


def over_share(need: int, free: Optional[int] = None) -> Optional[int]:
    """The free bytes when `need` would take more than DATASET_SHARE of them (`free`: None to
    look it up), else None: it fits, or the free memory cannot be found out."""
    free = available_bytes() if free is None else free
    if free is None or need <= DATASET_SHARE * free:
        return None
    return free


def check_images_fit(count: int, image_size: int, channels: int, what: str, free: Optional[int] = None) -> None:
    """Raise DataError (one line) if `count` uint8 images of `image_size`² × `channels` would
    take more than DATASET_SHARE of the free memory (`free`: bytes, None to look it up)."""
    need = count * channels * image_size * image_size
    free = over_share(need, free)
    if free is None:
        return
    raise DataError(
        f"{what}: {count:,} images at {image_size}×{image_size} would take {human_bytes(need)} of memory, "
        f"more than half of the {human_bytes(free)} this computer has free — choose a smaller image size "
        "or use fewer images"
    )


def saved_activation_bytes(forward: Callable[[int], object], parameters: list) -> tuple[int, int]:
    """(bytes per image, bytes per step) that autograd keeps for the backward pass, found by
    running `forward(batch)` for batches of 1 and 2 and adding up the tensors it saves
    (parameters left out). Both small forward passes take little time or memory."""

    def saved(batch: int) -> int:
        own = {p.untyped_storage().data_ptr() for p in parameters}
        storages: dict[int, int] = {}

        def pack(t):
            s = t.untyped_storage()
            if s.data_ptr() not in own:
                storages[s.data_ptr()] = s.nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            forward(batch)
        return sum(storages.values())

    one, two = saved(1), saved(2)
    per_image = max(two - one, 0)
    return per_image, max(one - per_image, 0)


# A training step holds about twice what autograd saves (the gradients of the activations
# are made while the saved tensors are still alive). For the article's model at batch 128 on
# a CPU, saved_activation_bytes counts 0.54 GB in bf16 and 1.10 GB in fp32; bench_speed.py's
# peaks were 1.6 and 2.9 GB, the process's own few hundred MB included: 2-2.5x.
STEP_OVER_SAVED = 2.0
# Weights, their gradients, Adam's two moments and the EMA copy.
COPIES_OF_THE_WEIGHTS = 5


def free_bytes(device: torch.device) -> Optional[int]:
    """Memory free on `device` for a training step; None where it cannot be found out."""
    if device.type == "cuda":
        # The driver's free memory leaves out what PyTorch's caching allocator holds and no
        # tensor uses (a finished run's activations): this process reuses it first.
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int(torch.cuda.mem_get_info(device)[0]) + max(int(cached), 0)
    if device.type == "cpu":
        return available_bytes()
    return None  # MPS shares the system's memory in ways PyTorch does not report


def check_step_fits(per_image: int, fixed: int, weight_bytes: int, batch: int, free: Optional[int], where: str) -> None:
    """Raise OutOfMemory (one line, with the largest batch that fits) if a training step of
    `batch` images would need more than `free` bytes. On Linux a process that runs out of
    memory is killed by the kernel without a word, so this is said before the first step."""
    if free is None:
        return
    need = STEP_OVER_SAVED * (per_image * batch + fixed) + COPIES_OF_THE_WEIGHTS * weight_bytes
    if need <= free:
        return
    room = (free - COPIES_OF_THE_WEIGHTS * weight_bytes) / STEP_OVER_SAVED - fixed
    fits = int(room // per_image) if per_image else 0
    advice = f"use batch size {fits} or less" if fits >= 1 else "use a smaller image size or model"
    raise OutOfMemory(
        f"training at batch size {batch} would need about {human_bytes(need)} of {where} memory, and "
        f"{human_bytes(free)} is free: {advice}, or close other programs",
        batch_size=batch,
    )


def attention_bytes_per_score(autocast: Optional[torch.dtype], device: torch.device) -> int:
    """Bytes held at once for each attention score: the scores and their softmax (both live
    until the block returns). Under bf16 autocast a CUDA GPU computes softmax in fp32 and
    casts it back to bf16 for the next matmul; the CPU keeps it in bf16."""
    if autocast is None:
        return 4 + 4
    if device.type == "cuda":
        return 2 + 4 + 2
    return 2 + 2


def check_attention_fits(
    model, image_size: int, count: int, autocast: Optional[torch.dtype], device: torch.device, doing: str
) -> None:
    """Raise OutOfMemory (one line) if the U-Net's middle attention for `count` images could
    not fit in the free memory: it is the one part whose size grows with the 4th power of
    the image size (64 GB an image at 512 px with 2 levels), checked before a pass begins.
    `autocast`: the dtype the pass runs under autocast, None for fp32."""
    free = free_bytes(device)
    per_image = model.middle_attention_bytes(image_size, attention_bytes_per_score(autocast, device))
    if free is None or per_image * count <= free:
        return
    side = image_size // model.downsample_factor
    where = "GPU" if device.type == "cuda" else "computer"
    images = "1 image" if count == 1 else f"{count} images"
    raise OutOfMemory(
        f"{doing} {images}: the middle of the U-Net works on {side}×{side} pixels at this image size, "
        f"and its attention needs {human_bytes(per_image)} per image ({human_bytes(per_image * count)} in all), "
        f"more than the {human_bytes(free)} of {where} memory free: use a smaller image size, more levels or "
        "fewer images",
        batch_size=count,
    )
