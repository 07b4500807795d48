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
from typing import Optional

from .errors import DataError

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
    """e.g. '812 bytes', '1.3 MB', '6.3 GB' (powers of 1024, as file managers show sizes)."""
    for unit in ("bytes", "KB", "MB"):
        if n < 1024:
            return f"{n:.0f} bytes" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def check_images_fit(count: int, image_size: int, channels: int, what: str, free: Optional[int] = None) -> None:
    """Raise DataError (one line) if `count` uint8 images of `image_size`² × `channels` would
    take more than DATASET_SHARE of the free memory (`free`: bytes, None to look it up)."""
    need = count * channels * image_size * image_size
    free = available_bytes() if free is None else free
    if free is None or need <= DATASET_SHARE * free:
        return
    raise DataError(
        f"{what}: {count:,} images at {image_size}×{image_size} would take {human_bytes(need)} of memory, "
        f"more than half of the {human_bytes(free)} this computer has free — choose a smaller image size "
        "or use fewer images"
    )
