"""Making the same math run faster: precision, memory allocator and backend switches.

Nothing here changes what is computed, only how; `tests/core/test_speed_paths.py` checks
every switch against the plain fp32 path within a stated tolerance.

- bf16 autocast: convolutions and matmuls in bfloat16 where the hardware does them fast
  (CUDA GPUs with bf16; CPUs with AVX-512 BF16 or AMX), reductions (norms, softmax, the
  loss) stay in fp32. On a CPU without fast bf16, autocast is slower, so 'auto' keeps fp32.
- glibc's allocator: by default it hands large freed blocks (every activation of a
  training step) back to the OS and page-faults them in again on the next step. Raising
  its mmap and trim thresholds keeps them in the process (peak memory is unchanged).
- CUDA: TF32 matmuls, cuDNN autotuning, fused Adam, and CUDA graphs (`cuda_graphs.py`).
  Not channels_last: measured on an H100, a training step was 1.13x slower with it (copies
  took a fifth of the GPU's time); on a 2-core CPU (bf16) 1.25x slower.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import sys
from typing import Optional

import torch

from .errors import ConfigError

_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
_allocator_tuned: Optional[bool] = None


def tune_allocator() -> bool:
    """Keep freed activation memory in the process instead of returning it to the OS.

    Only glibc (Linux) has `mallopt`; elsewhere this does nothing. Safe to call often.
    Returns whether the allocator is tuned.
    """
    global _allocator_tuned
    if _allocator_tuned is not None:
        return _allocator_tuned
    _allocator_tuned = False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    # 32 MiB is glibc's largest mmap threshold on 64-bit: blocks below it come from the
    # heap and are reused; the trim threshold stops the heap's top being given back.
    ok = mallopt(_M_MMAP_THRESHOLD, 32 * 2**20) == 1
    ok &= mallopt(_M_TRIM_THRESHOLD, 2**30) == 1
    ok &= mallopt(_M_TOP_PAD, 64 * 2**20) == 1
    _allocator_tuned = bool(ok)
    return _allocator_tuned


def bf16_is_fast(device: torch.device | str) -> bool:
    """Whether bf16 matmuls/convolutions beat fp32 on this device."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        cpu = getattr(torch, "cpu", None)
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)
    return False  # MPS: bf16 support varies by macOS version; fp32 is the safe choice


def autocast_dtype(precision: str, device: torch.device | str) -> Optional[torch.dtype]:
    """The autocast dtype for a precision setting ('auto', 'fp32', 'bf16'); None means fp32."""
    device = torch.device(device)
    if precision == "fp32":
        return None
    if precision == "bf16":
        if device.type == "mps":
            raise ConfigError("bf16 is not supported on Apple MPS here: use precision fp32 or auto")
        return torch.bfloat16
    if precision == "auto":
        # On a GPU the article-sized U-Net is bound by kernel launches, not arithmetic:
        # measured on an H100 (scripts/device_check.sh), fp32 with TF32 matmuls trained as
        # fast as bf16 autocast and sampled 1.34x faster, bf16's casts costing more than
        # they save. So 'auto' is bf16 only on CPUs with fast bf16; 'bf16' still asks for it.
        return torch.bfloat16 if device.type == "cpu" and bf16_is_fast(device) else None
    raise ConfigError(f"unknown precision {precision!r}: choose auto, fp32 or bf16")


def describe_precision(dtype: Optional[torch.dtype]) -> str:
    return "bf16 autocast" if dtype == torch.bfloat16 else "fp32"


def autocast(device: torch.device | str, dtype: Optional[torch.dtype], cache: bool = True):
    """A context that runs the model in `dtype` (None: plain fp32, no autocast).

    cache=False: weights are cast again at every use (needed while a CUDA graph records).
    """
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype, cache_enabled=cache)


def configure_backend(device: torch.device | str) -> None:
    """Process-wide switches that only change speed: TF32 and cuDNN autotuning on CUDA."""
    if torch.device(device).type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True  # input shapes are fixed during a run
    else:
        tune_allocator()
