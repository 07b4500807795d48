"""Choosing and describing the compute device: CUDA, Apple MPS or the CPU."""

from __future__ import annotations

import torch

from .errors import ConfigError


def pick_device(name: str = "auto") -> torch.device:
    """'auto' takes CUDA, then MPS, then the CPU; a named device must be available."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("device 'cuda' is not available on this machine (no NVIDIA GPU found): use 'auto' or 'cpu'")
        return torch.device("cuda")
    if name == "mps":
        if not _mps_available():
            raise ConfigError("device 'mps' is not available on this machine (it needs Apple silicon): use 'auto' or 'cpu'")
        return torch.device("mps")
    raise ConfigError(f"unknown device {name!r}: choose auto, cpu, cuda or mps")


def describe_device(device: torch.device | str) -> str:
    """A short human description, e.g. 'CUDA: NVIDIA H100 80GB HBM3' or 'CPU (2 threads)'."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"CUDA: {torch.cuda.get_device_name(device)}"
    if device.type == "mps":
        return "Apple MPS"
    n = torch.get_num_threads()
    return f"CPU ({n} thread{'s' if n != 1 else ''})"


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


# How a failed allocation reads where it is not a torch.OutOfMemoryError: CUDA and MPS
# ("out of memory"), PyTorch's CPU allocator on Linux and macOS ("can't allocate memory")
# and on Windows ("not enough memory").
_OUT_OF_MEMORY_TEXTS = ("out of memory", "can't allocate memory", "not enough memory")


def is_out_of_memory(error: BaseException) -> bool:
    """True for a failed allocation on any device: CUDA's OutOfMemoryError, Python's
    MemoryError (numpy, PIL), and the RuntimeErrors the other allocators raise."""
    if isinstance(error, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and any(t in text for t in _OUT_OF_MEMORY_TEXTS)


def out_of_memory_message(
    device: torch.device | str, batch_size: int, doing: str = "training", setting: str = "batch size"
) -> str:
    """What to tell a person whose batch did not fit, with a concrete smaller one.

    `setting` names what to lower: 'batch size' for training, e.g. 'number of images'."""
    device = torch.device(device)
    smaller = max(1, batch_size // 2)
    where = "GPU" if device.type in ("cuda", "mps") else "computer"
    return (
        f"{doing} ran out of {where} memory at {setting} {batch_size}: "
        f"try {setting} {smaller}, a smaller model, or close other programs using the {where}"
    )


def free_cached_memory(device: torch.device | str) -> None:
    """Give cached blocks back after an out-of-memory error, so the app can go on."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps" and hasattr(torch, "mps"):
        torch.mps.empty_cache()
