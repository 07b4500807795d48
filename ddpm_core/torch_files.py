"""Bare `torch.save` files (the article's `torch.save(model.state_dict(), "x.pt")`), read safely.

Those files are pickles, and unpickling can run arbitrary code. So the pickle opcodes are
scanned first, and anything that imports more than tensors, storages and OrderedDict is
refused; only then is the file handed to `torch.load(..., weights_only=True)` (which has
had CVEs of its own, hence the extra check). Every refusal is a one-line CheckpointError.
"""

from __future__ import annotations

import _compat_pickle
import io
import pickle
import pickletools
import struct
import tarfile
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional

import torch
from torch import Tensor, nn

from .errors import CheckpointError, as_one_line

_MAX_PICKLE = 256 * 1024 * 1024  # a state_dict's data.pkl is a few KB; refuse absurd ones

# Exactly what a plain (possibly wrapped) state_dict needs, and nothing that can run code.
_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"),
    ("torch._utils", "_rebuild_tensor"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_tensor_v3"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"),
    ("torch", "Size"),
    ("torch", "device"),
    ("torch.storage", "UntypedStorage"),
    ("builtins", "set"),
    ("builtins", "complex"),
    ("builtins", "bytearray"),
    ("_codecs", "encode"),  # how protocol 2 pickles bytes
}
_DTYPE_NAMES = {
    "float16", "float32", "float64", "bfloat16", "half", "float", "double",
    "int8", "int16", "int32", "int64", "uint8", "short", "int", "long", "bool",
    "complex64", "complex128", "cfloat", "cdouble",
}  # fmt: skip


def _canonical(module: str, name: str) -> tuple[str, str]:
    """Python 2 names as the unpickler maps them for protocols < 3 (`__builtin__` -> `builtins`)."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


def _global_allowed(module: str, name: str) -> bool:
    if (module, name) in _ALLOWED_GLOBALS:
        return True
    if module == "torch":
        # legacy storage classes (torch.FloatStorage, ...) name each tensor's storage type
        if name.endswith("Storage") and name.isidentifier():
            return True
        return name in _DTYPE_NAMES
    return False


_STRING_OPS = {
    "STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE",
    "SHORT_BINUNICODE", "BINUNICODE8",
}  # fmt: skip
_NEUTRAL_OPS = {"MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT", "FRAME", "PROTO"}  # no stack change


def _scan_pickle(stream: io.BytesIO, p: Path) -> None:
    """Refuse a pickle that imports anything outside the allow-list.

    Imports happen only through GLOBAL/INST (name in the opcode), STACK_GLOBAL (name from
    the two values on top of the stack) and EXT1/2/4 (the copyreg registry). For
    STACK_GLOBAL the two top values are tracked conservatively: only plain string pushes
    (directly or through the memo) count as known; anything else makes the import
    unverifiable, which is refused too.
    """
    recent: list[Optional[str]] = []  # what each stack-changing opcode pushed, if a known string
    memo: dict[int, Optional[str]] = {}
    for op, arg, _pos in pickletools.genops(stream):
        name = op.name
        if name in ("GLOBAL", "INST"):
            module, _, attr = str(arg).partition(" ")
            _require_allowed(p, module, attr)
            recent.append(None)
        elif name == "STACK_GLOBAL":
            if len(recent) < 2 or recent[-1] is None or recent[-2] is None:
                raise CheckpointError(
                    f"refused: {p} contains code (an import this check cannot verify) — "
                    "only load checkpoints you trust / re-save as safetensors"
                )
            _require_allowed(p, recent[-2], recent[-1])
            recent.append(None)
        elif name in ("EXT1", "EXT2", "EXT4"):
            raise CheckpointError(
                f"refused: {p} contains code (copyreg extension {arg}) — "
                "only load checkpoints you trust / re-save as safetensors"
            )
        elif name in _STRING_OPS:
            recent.append(arg if isinstance(arg, str) else None)
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            recent.append(memo.get(arg))
        elif name == "MEMOIZE":
            memo[len(memo)] = recent[-1] if recent else None
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[arg] = recent[-1] if recent else None
        elif name not in _NEUTRAL_OPS:
            recent.append(None)
        if len(recent) > 64:
            del recent[:-2]


def _require_allowed(p: Path, module: str, name: str) -> None:
    module, name = _canonical(module, name)
    if not _global_allowed(module, name):
        raise CheckpointError(
            f"refused: {p} contains code ({module}.{name}) — only load checkpoints you trust / re-save as safetensors"
        )


def _scan_torch_file(p: Path, kind: str) -> None:
    try:
        if kind == "zip":
            try:
                with zipfile.ZipFile(p) as z:
                    pickles = [i for i in z.infolist() if i.filename.endswith(".pkl")]
                    if not pickles:
                        raise CheckpointError(
                            f"{p} is a zip file but not a PyTorch checkpoint (no data.pkl) — "
                            "choose a .safetensors or .pt checkpoint"
                        )
                    for info in pickles:  # every one, so a duplicate entry cannot hide code
                        if info.file_size > _MAX_PICKLE:
                            raise CheckpointError(f"refused: {p} has an implausibly large pickle ({info.filename})")
                        _scan_pickle(io.BytesIO(z.read(info)), p)
            except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as e:
                raise CheckpointError(
                    f"{p} is damaged or truncated (not a readable zip archive: {as_one_line(e)}) — use another checkpoint"
                ) from None
        else:
            # Legacy torch.save writes five pickles back to back (magic number, protocol,
            # sys info, the object, storage keys), then raw tensor bytes; torch.load
            # unpickles all five. Each is scanned whatever its first byte: a protocol 0/1
            # pickle has no \x80 in front, and stopping at one would let it through.
            # BytesIO (not the file) so a bogus length field cannot make read() allocate GBs.
            data = p.read_bytes()
            if tarfile.is_tarfile(io.BytesIO(data)):
                # torch.load's even older tar format, a past route around weights_only
                raise CheckpointError(
                    f"refused: {p} is in PyTorch's legacy tar format, which is not loaded — "
                    "re-save it with a current PyTorch or as safetensors"
                )
            stream = io.BytesIO(data)
            for _ in range(5):
                if stream.tell() >= len(data):
                    break  # a bare pickle.dumps file holds one pickle
                _scan_pickle(stream, p)
    except CheckpointError:
        raise
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {p}: {e.strerror or e}") from None
    except (ValueError, MemoryError, struct.error, UnicodeDecodeError) as e:
        raise CheckpointError(
            f"{p} is not a valid PyTorch file (damaged pickle: {as_one_line(e)}) — use another checkpoint"
        ) from None


_MODEL_KEYS = ("model", "state_dict", "model_state_dict", "net")
_EMA_KEYS = ("ema", "ema_model", "ema_state_dict")


def load_torch_file(p: Path, kind: str, map_location: Any) -> tuple[dict, Optional[dict]]:
    """The model weights and the EMA weights (None if absent) of a bare torch.save file
    whose first bytes say `kind` ("zip" or "pickle"), scanned before torch.load reads it."""
    _scan_torch_file(p, kind)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "pickle protocol 4": the error below says it better
            obj = torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's own weights_only unpickler said no (after our scan said yes)
        text = str(e)
        marker = "WeightsUnpickler error:"
        detail = text.split(marker, 1)[1].strip().split("\n")[0] if marker in text else text
        raise CheckpointError(
            f"refused: {p} holds pickle content the safe loader rejects ({as_one_line(detail)}) — "
            "only load checkpoints you trust / re-save as safetensors"
        ) from None
    except Exception as e:  # corrupt zip members, bad magic number, ...
        raise CheckpointError(
            f"{p} cannot be read as a PyTorch file ({as_one_line(e)}) — use another checkpoint"
        ) from None

    model = _tensor_map(obj)
    ema = None
    if model is None and isinstance(obj, Mapping):
        # the common wrappers: {"model": state_dict, "ema": state_dict, "optimizer": ...}
        model = next((m for k in _MODEL_KEYS if (m := _tensor_map(obj.get(k))) is not None), None)
        ema = next((m for k in _EMA_KEYS if (m := _tensor_map(obj.get(k))) is not None), None)
    if model is None:
        raise CheckpointError(
            f"{p} holds a {type(obj).__name__} that is not a model state_dict — save it with "
            "torch.save(model.state_dict(), path) or use a DDPM Studio .safetensors checkpoint"
        )
    return model, ema


def _tensor_map(obj: Any) -> Optional[dict]:
    """A non-empty str -> Tensor mapping as a plain dict, wrapper prefixes removed; else None."""
    if not isinstance(obj, Mapping) or not obj:
        return None
    if not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()):
        return None
    out = {k: v.detach() if isinstance(v, nn.Parameter) else v for k, v in obj.items()}
    # nn.DataParallel and torch.compile wrap the module and prefix every key
    for prefix in ("module.", "_orig_mod."):
        if all(k.startswith(prefix) for k in out):
            out = {k[len(prefix):]: v for k, v in out.items()}
    return out
