"""Checkpoints that cannot run code: one safetensors file per checkpoint.

Layout of a DDPM Studio checkpoint (`*.safetensors`, format version 1)
-------------------------------------------------------------------------
Tensors (all of them; safetensors stores raw bytes + dtype + shape, nothing executable):

    model.<state_dict key>              the model weights
    ema.<state_dict key>                the EMA weights (only if saved)
    optim.state.<param_idx>.<name>      optimizer state, e.g. optim.state.0.exp_avg, .step
    optim.param_groups.<i>.<key>        only if a hyperparameter is a tensor (rare)
    rng.<name>                          RNG states (uint8, from Generator.get_state())
    extra.<path>                        only if `extra` contains tensors

Header metadata (safetensors allows only str -> str, so structured values are JSON):

    format="ddpm-studio", version="1", config=<RunConfig.to_dict() JSON>, step, epoch,
    has_ema, optim_state / optim_param_groups (JSON skeletons, see `_encode`), extra,
    saved_at, torch_version

Loading also accepts a bare state_dict saved by the article's notebook with
`torch.save(model.state_dict(), "x.pt")`, after a scan of its pickle (`torch_files.py`).
Whether the weights fit a model is `state_dict_fit.py`'s question.

Every problem becomes a one-line `CheckpointError` naming the file and what to do.
"""

from __future__ import annotations

import datetime
import json
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import torch
from torch import Tensor, nn

from .atomic import atomic_write, write_error_message
from .config import RunConfig
from .errors import CheckpointError, ConfigError, as_one_line
from .memory import human_bytes
from .torch_files import load_torch_file

__all__ = [
    "Checkpoint",
    "save_checkpoint",
    "load_checkpoint",
    "describe_checkpoint",
    "read_checkpoint_config",
    "CHECKPOINT_SUFFIX",
    "FORMAT_NAME",
    "FORMAT_VERSION",
]

PathLike = Union[str, Path]

FORMAT_NAME = "ddpm-studio"
FORMAT_VERSION = 1
CHECKPOINT_SUFFIX = ".safetensors"  # e.g. runs/shapes/latest.safetensors, step-003000.safetensors

_MAX_HEADER = 100_000_000  # same limit the safetensors library enforces


@dataclass
class Checkpoint:
    config: dict  # RunConfig.to_dict() form; {} for a bare state_dict (validate in the caller)
    model: dict  # str -> Tensor, on map_location
    ema: Optional[dict]  # str -> Tensor, on map_location, or None
    optimizer: Optional[dict]  # ready for optimizer.load_state_dict (tensors on CPU)
    rng: dict  # name -> uint8 CPU tensor, ready for Generator.set_state
    step: int
    epoch: int
    extra: dict
    path: Path
    kind: str = "ddpm-studio"  # or "state_dict" for a bare torch.save'd state_dict
    metadata: dict = field(default_factory=dict)  # raw safetensors header metadata


# =====================================================================================
# saving
# =====================================================================================


def save_checkpoint(
    path: PathLike,
    *,
    config: Any,
    model: Any,
    ema: Any = None,
    optimizer: Any = None,
    rng: Optional[Mapping[str, Any]] = None,
    step: int = 0,
    epoch: int = 0,
    extra: Optional[dict] = None,
) -> Path:
    """Write one checkpoint file atomically and return its path.

    `config` is a `RunConfig.to_dict()` dict (a RunConfig is accepted too). `model` and
    `ema` are state_dicts (an nn.Module is accepted). `optimizer` is an optimizer
    `state_dict()` (an Optimizer is accepted). `rng` maps a name to a uint8 tensor from
    `Generator.get_state()` (a Generator is accepted). `extra` is JSON-like data; tuples
    and tensors inside it survive the round trip.

    The file is written with safetensors whatever its name; `.safetensors` is the
    suggested extension. Parent folders are created. Raises CheckpointError if the file
    cannot be written (the previous file at `path`, if any, is then left untouched).
    """
    p = Path(path)
    if hasattr(config, "to_dict"):
        config = config.to_dict()
    if not isinstance(config, dict):
        raise TypeError(f"config must be a dict (RunConfig.to_dict()), not {type(config).__name__}")
    for name, v in (("step", step), ("epoch", epoch)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"{name} must be a non-negative int, not {v!r}")

    tensors: dict[str, Tensor] = {}
    for key, t in _as_state_dict(model, "model").items():
        tensors[f"model.{key}"] = t
    if ema is not None:
        for key, t in _as_state_dict(ema, "ema").items():
            tensors[f"ema.{key}"] = t
    for name, state in (rng or {}).items():
        if isinstance(state, torch.Generator):
            state = state.get_state()
        if not isinstance(state, Tensor) or state.dtype != torch.uint8:
            raise TypeError(f"rng[{name!r}] must be a uint8 tensor from Generator.get_state()")
        tensors[f"rng.{name}"] = state

    metadata = {
        "format": FORMAT_NAME,
        "version": str(FORMAT_VERSION),
        "config": _dumps(config, "config"),
        "step": str(step),
        "epoch": str(epoch),
        "has_ema": "true" if ema is not None else "false",
        "saved_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch_version": str(torch.__version__),
    }
    if optimizer is not None:
        if not isinstance(optimizer, Mapping) and hasattr(optimizer, "state_dict"):
            optimizer = optimizer.state_dict()
        if not isinstance(optimizer, Mapping) or "state" not in optimizer or "param_groups" not in optimizer:
            raise TypeError("optimizer must be an optimizer state_dict() with 'state' and 'param_groups'")
        metadata["optim_state"] = _dumps(_encode(optimizer["state"], "optim.state", tensors), "optimizer state")
        metadata["optim_param_groups"] = _dumps(
            _encode(optimizer["param_groups"], "optim.param_groups", tensors), "optimizer param_groups"
        )
    metadata["extra"] = _dumps(_encode(dict(extra or {}), "extra", tensors), "extra")

    import safetensors.torch  # local: keeps `import ddpm_core` light

    data = safetensors.torch.save(_storable(tensors), metadata=metadata)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(p, lambda f: f.write(data))
    except OSError as e:
        raise CheckpointError(write_error_message("checkpoint", p, e)) from None
    return p


def _as_state_dict(obj: Any, what: str) -> dict:
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if not isinstance(obj, Mapping):
        raise TypeError(f"{what} must be a state_dict (str -> Tensor), not {type(obj).__name__}")
    for k, v in obj.items():
        if not isinstance(k, str) or not isinstance(v, Tensor):
            raise TypeError(f"{what} state_dict entry {k!r} is not a tensor ({type(v).__name__})")
    return dict(obj)


def _storable(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """CPU, contiguous, each owning its own memory.

    safetensors refuses tensors that share storage (tied weights, slices of one buffer,
    the same tensor saved as model and EMA), so any such tensor gets a private copy.
    """
    out: dict[str, Tensor] = {}
    seen: set[int] = set()
    for k, t in tensors.items():
        t = t.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        t = t.contiguous()
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        owns_all = t.storage_offset() == 0 and storage.nbytes() == t.numel() * t.element_size()
        if t.numel() and (ptr in seen or not owns_all):
            t = t.clone()
            ptr = t.untyped_storage().data_ptr()
        if t.numel():
            seen.add(ptr)
        out[k] = t
    return out


def _dumps(obj: Any, what: str) -> str:
    try:
        # key order kept: state_dicts are ordered, and load_state_dict should get them back as given
        return json.dumps(obj)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{what} cannot be stored as JSON: {e}") from None


# Tags for values JSON has no type for. Tensors move into the safetensors body and are
# referenced by key; tuples and int-keyed dicts (optimizer state is keyed by param index)
# are tagged so `optimizer.load_state_dict` gets back exactly what `state_dict` gave.
_T_TENSOR, _T_TUPLE, _T_INTKEYS = "__tensor__", "__tuple__", "__intkeys__"


def _encode(obj: Any, key: str, tensors: dict[str, Tensor]) -> Any:
    if isinstance(obj, Tensor):
        if key in tensors:
            raise ValueError(f"two values would be stored under the same key {key!r}")
        tensors[key] = obj
        return {_T_TENSOR: key}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, tuple):
        return {_T_TUPLE: [_encode(v, f"{key}.{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, f"{key}.{i}", tensors) for i, v in enumerate(obj)]
    if isinstance(obj, Mapping):
        if all(isinstance(k, str) for k in obj):
            return {k: _encode(v, f"{key}.{k}", tensors) for k, v in obj.items()}
        if all(isinstance(k, int) and not isinstance(k, bool) for k in obj):
            return {_T_INTKEYS: {str(k): _encode(v, f"{key}.{k}", tensors) for k, v in obj.items()}}
        raise TypeError(f"{key}: dict keys must be all str or all int")
    raise TypeError(f"{key}: cannot store a {type(obj).__name__} in a checkpoint")


def _decode(obj: Any, tensors: Mapping[str, Tensor]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if len(obj) == 1:
            (tag, val), = obj.items()
            if tag == _T_TENSOR:
                if val not in tensors:
                    raise KeyError(f"tensor {val!r} is missing")
                return tensors[val]
            if tag == _T_TUPLE:
                return tuple(_decode(v, tensors) for v in val)
            if tag == _T_INTKEYS:
                return {int(k): _decode(v, tensors) for k, v in val.items()}
        return {k: _decode(v, tensors) for k, v in obj.items()}
    return obj


# =====================================================================================
# loading
# =====================================================================================


def load_checkpoint(path: PathLike, map_location: Any = "cpu") -> Checkpoint:
    """Read a DDPM Studio checkpoint, or a bare state_dict saved with torch.save.

    Model and EMA weights go to `map_location`; optimizer state and RNG states stay on
    the CPU (`optimizer.load_state_dict` moves state to each parameter's device itself,
    and `Generator.set_state` wants a CPU tensor). Raises CheckpointError (one line,
    naming the file) for anything that is not a readable, safe checkpoint.
    """
    p = Path(path)
    kind = _sniff(p)
    if kind == "safetensors":
        return _load_safetensors(p, map_location)
    return _load_torch_file(p, kind, map_location)


def read_checkpoint_config(path: PathLike) -> dict:
    """The stored configuration, reading only the file header ({} for a bare state_dict)."""
    p = Path(path)
    kind = _sniff(p)
    if kind != "safetensors":
        _load_torch_file(p, kind, "cpu")  # still validate it
        return {}
    header, meta, _ = _read_header(p)
    config, *_ = _read_meta(p, header, meta)
    return config


def _sniff(p: Path) -> str:
    """Decide what the file is from its first bytes (never from its extension)."""
    try:
        if not p.exists():
            raise CheckpointError(f"checkpoint {p} does not exist — check the path")
        if p.is_dir():
            raise CheckpointError(f"{p} is a folder, not a checkpoint file — choose a .safetensors file")
        if not p.is_file():
            # a FIFO or device would block or never end
            raise CheckpointError(f"{p} is not a regular file — choose a .safetensors checkpoint file")
        size = p.stat().st_size
        with p.open("rb") as f:
            head = f.read(16)
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {p}: {e.strerror or e}") from None

    if size == 0:
        raise CheckpointError(
            f"{p} is empty (0 bytes) — the save was interrupted or the copy failed; use another checkpoint"
        )
    if size < 9:
        raise CheckpointError(
            f"{p} is too short to be a checkpoint ({size} bytes) — it is truncated or not a checkpoint; "
            "use another file"
        )
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "zip"  # torch.save's default format
    if head[:1] == b"\x80":
        return "pickle"  # torch.save(_use_new_zipfile_serialization=False) or a raw pickle
    if len(head) >= 9:
        n = struct.unpack("<Q", head[:8])[0]
        if 2 <= n <= _MAX_HEADER and head[8:9] == b"{":
            return "safetensors"
    what = _guess_other(head)
    raise CheckpointError(
        f"{p} is not a checkpoint ({what}) — choose a .safetensors file saved by DDPM Studio "
        "or a .pt/.pth state_dict"
    )


def _guess_other(head: bytes) -> str:
    if head.startswith(b"\x89PNG"):
        return "it is a PNG image"
    if head.startswith(b"GIF8"):
        return "it is a GIF image"
    if head.startswith(b"\xff\xd8\xff"):
        return "it is a JPEG image"
    if len(head) >= 9 and head[8:9] == b"{":
        # starts like safetensors, but the header length in the first 8 bytes is absurd
        n = struct.unpack("<Q", head[:8])[0]
        return f"it has a damaged safetensors header: it claims a {n:,}-byte header"
    stripped = head.lstrip()
    if stripped[:1] in (b"{", b"["):
        return "it is a JSON/text file; a configuration file goes to --config"
    if len(head) >= 8 and head[:8] != b"\0" * 8 and struct.unpack("<Q", head[:8])[0] <= _MAX_HEADER:
        return "it has a damaged safetensors header"
    try:
        text = head.decode("utf-8")
        if all(c.isprintable() or c.isspace() for c in text):
            return "it is a text file"
    except UnicodeDecodeError:
        pass  # a multi-byte character cut at byte 16 also lands here; the message still fits
    return "unknown format: neither safetensors nor a PyTorch file"


def _read_header(p: Path) -> tuple[dict, dict, int]:
    """Parse and sanity-check the safetensors header without reading the tensors.

    Returns (tensor entries, metadata, total size). Truncation is detected here: the
    header says where the last tensor ends, the file must be exactly that long.
    """
    try:
        size = p.stat().st_size
        with p.open("rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            if 8 + n > size:
                raise CheckpointError(
                    f"{p} is truncated ({size} bytes, the header alone needs {8 + n}) — "
                    "the save was interrupted; use an earlier checkpoint"
                )
            raw = f.read(n)
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {p}: {e.strerror or e}") from None
    try:
        header = json.loads(raw.decode("utf-8"))
        if not isinstance(header, dict):
            raise ValueError("the header is not a JSON object")
        meta = header.pop("__metadata__", None) or {}
        if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
            raise ValueError("the metadata is not a str -> str map")
        spans = []
        for name, entry in header.items():
            off = entry["data_offsets"]
            shape = entry["shape"]
            if not (isinstance(entry["dtype"], str) and isinstance(shape, list)
                    and all(isinstance(d, int) and d >= 0 for d in shape)
                    and isinstance(off, list) and len(off) == 2
                    and all(isinstance(o, int) for o in off) and 0 <= off[0] <= off[1]):
                raise ValueError(f"bad entry for tensor {name!r}")
            itemsize = _ST_ITEMSIZE.get(entry["dtype"])
            if itemsize is not None and off[1] - off[0] != math.prod(shape) * itemsize:
                need = math.prod(shape) * itemsize
                raise ValueError(f"tensor {name!r} has {off[1] - off[0]} bytes, its shape needs {need}")
            spans.append((off[0], off[1], name))
        # The tensors must tile the data part without gaps or overlaps (safetensors' own
        # rule), so the last offset is the data part's exact size: checking it against
        # the file size finds a file cut anywhere, without reading the tensors.
        end = 0
        for start, stop, name in sorted(spans):
            if start != end:
                raise ValueError(f"tensor {name!r} starts at byte {start}, expected {end}")
            end = stop
    except CheckpointError:
        raise
    except RecursionError:
        raise CheckpointError(
            f"{p} has a corrupt safetensors header (nested too deeply) — the file is damaged; use another checkpoint"
        ) from None
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise CheckpointError(
            f"{p} has a corrupt safetensors header ({as_one_line(e)}) — the file is damaged; use another checkpoint"
        ) from None
    body = size - 8 - n
    if end > body:
        raise CheckpointError(
            f"{p} is truncated ({size} bytes, expected {8 + n + end}) — "
            "the save was interrupted or the copy is incomplete; use an earlier checkpoint"
        )
    if end < body:
        raise CheckpointError(
            f"{p} is damaged ({body - end} unexpected bytes after the tensors) — use another checkpoint"
        )
    return header, meta, size


def _check_marker(p: Path, meta: dict) -> int:
    fmt = meta.get("format")
    if fmt != FORMAT_NAME:
        found = "no format marker" if fmt is None else f"format marker {fmt!r}"
        raise CheckpointError(
            f"{p} is a safetensors file but not a DDPM Studio checkpoint ({found}) — "
            "choose a checkpoint saved by DDPM Studio"
        )
    try:
        version = int(meta.get("version", ""))
    except ValueError:
        raise CheckpointError(
            f"{p} has a corrupt header (version {meta.get('version')!r}) — use another checkpoint"
        ) from None
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{p} was written by a newer DDPM Studio (format version {version}, this one reads "
            f"up to {FORMAT_VERSION}) — update DDPM Studio to open it"
        )
    return version


def _meta_json(p: Path, meta: dict, key: str, typ: type, default: Any = None) -> Any:
    if key not in meta:
        if default is not None:
            return default
        raise CheckpointError(f"{p} has a corrupt header ('{key}' is missing) — use another checkpoint")
    try:
        value = json.loads(meta[key])
    except json.JSONDecodeError as e:
        raise CheckpointError(
            f"{p} has a corrupt header ('{key}' is not JSON: {e.msg}) — use another checkpoint"
        ) from None
    except ValueError as e:  # e.g. an integer of more digits than Python converts
        raise CheckpointError(
            f"{p} has a corrupt header ('{key}': {as_one_line(e, 120)}) — use another checkpoint"
        ) from None
    except RecursionError:
        raise CheckpointError(f"{p} has a corrupt header ('{key}' is nested too deeply) — use another checkpoint") from None
    if not isinstance(value, typ):
        raise CheckpointError(
            f"{p} has a corrupt header ('{key}' is a {type(value).__name__}) — use another checkpoint"
        )
    return value


def _check_config(p: Path, config: dict) -> None:
    """Refuse a stored configuration this version cannot build a run from, naming the file
    (the caller's RunConfig.from_dict would raise the same problem without it)."""
    if not config:
        return  # weights only: the caller supplies or infers the configuration
    try:
        RunConfig.from_dict(config)
    except ConfigError as e:
        raise CheckpointError(
            f"{p} holds a configuration this DDPM Studio cannot use ({e}) — update DDPM Studio or use another checkpoint"
        ) from None


def _meta_int(p: Path, meta: dict, key: str) -> int:
    try:
        value = int(meta.get(key, "0"))
        if value < 0:
            raise ValueError
        return value
    except ValueError:
        raise CheckpointError(f"{p} has a corrupt header ({key}={meta.get(key)!r}) — use another checkpoint") from None


_GROUPS = ("model", "ema", "rng")  # tensor name prefixes that are not referenced from the JSON


def _stand_ins(header: dict) -> dict:
    """The tensors the JSON skeletons may reference, by name only (for header-only checks)."""
    return {k: None for k in header if k.partition(".")[0] not in _GROUPS}


def _read_meta(
    p: Path, header: dict, meta: dict, other: Optional[Mapping[str, Any]] = None
) -> tuple[dict, int, int, Optional[dict], dict]:
    """(config, step, epoch, optimizer state, extra) from the header, all checked.

    `other` maps the names of the optim.* / extra.* tensors to the loaded tensors (None:
    only the header is read, names stand in). Every reader runs this same check, so a
    file `read_checkpoint_config` accepts is one `load_checkpoint` loads.
    """
    _check_marker(p, meta)
    for name, entry in header.items():
        # after the marker check: a foreign file with an exotic dtype is "not ours", not "damaged"
        if entry["dtype"] not in _ST_ITEMSIZE:
            raise CheckpointError(
                f"{p} has a corrupt header (tensor {name!r} has unknown dtype {entry['dtype']!r}) — "
                "use another checkpoint"
            )
    if other is None:
        other = _stand_ins(header)
    config = _meta_json(p, meta, "config", dict)
    _check_config(p, config)
    step = _meta_int(p, meta, "step")
    epoch = _meta_int(p, meta, "epoch")
    try:
        optimizer = None
        if "optim_state" in meta:
            optimizer = {
                "state": _decode(_meta_json(p, meta, "optim_state", dict), other),
                "param_groups": _decode(_meta_json(p, meta, "optim_param_groups", list), other),
            }
        extra = _decode(_meta_json(p, meta, "extra", dict, default={}), other)
    except (KeyError, ValueError, TypeError, AttributeError, RecursionError) as e:
        raise CheckpointError(
            f"{p} has a corrupt optimizer/extra section ({as_one_line(e)}) — use another checkpoint"
        ) from None
    return config, step, epoch, optimizer, extra


def _load_safetensors(p: Path, map_location: Any) -> Checkpoint:
    header, meta, _ = _read_header(p)
    _read_meta(p, header, meta)  # a damaged header fails before the data is read

    import safetensors.torch

    try:
        # Read into memory rather than memory-map: a mapped file stays locked on Windows,
        # which would make the next atomic save onto the same path fail.
        tensors = safetensors.torch.load(p.read_bytes())
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {p}: {e.strerror or e}") from None
    except Exception as e:  # SafetensorError and friends: damaged body
        raise CheckpointError(f"{p} is damaged ({as_one_line(e)}) — use another checkpoint") from None

    groups: dict[str, dict[str, Tensor]] = {name: {} for name in _GROUPS}
    other: dict[str, Tensor] = {}
    for key, t in tensors.items():
        prefix, _, rest = key.partition(".")
        if prefix in groups:
            groups[prefix][rest] = t
        else:
            other[key] = t  # optim.* and extra.*, referenced from the JSON skeletons

    def move(d: dict) -> dict:
        if map_location is None or str(map_location) == "cpu":
            return d
        return {k: v.to(map_location) for k, v in d.items()}

    config, step, epoch, optimizer, extra = _read_meta(p, header, meta, other)
    has_ema = meta.get("has_ema") == "true"
    return Checkpoint(
        config=config,
        model=move(groups["model"]),
        ema=move(groups["ema"]) if has_ema else None,
        optimizer=optimizer,
        rng=groups["rng"],
        step=step,
        epoch=epoch,
        extra=extra,
        path=p,
        kind=FORMAT_NAME,
        metadata=dict(meta),
    )


# ---- bare torch.save files (scanned in torch_files.py) ----------------------------


def _load_torch_file(p: Path, kind: str, map_location: Any) -> Checkpoint:
    model, ema = load_torch_file(p, kind, map_location)
    return Checkpoint(
        config={}, model=model, ema=ema, optimizer=None, rng={}, step=0, epoch=0, extra={},
        path=p, kind="state_dict",
    )


# =====================================================================================
# describing
# =====================================================================================


def describe_checkpoint(path: PathLike) -> str:
    """A multi-line human summary (for `ddpm info`). Reads only the header of a
    safetensors checkpoint; a bare .pt is loaded (after the safety scan)."""
    p = Path(path)
    kind = _sniff(p)
    if kind != "safetensors":
        ck = _load_torch_file(p, kind, "cpu")
        n = sum(t.numel() for t in ck.model.values())
        return "\n".join([
            f"file:        {p} ({human_bytes(p.stat().st_size)})",
            "format:      bare PyTorch state_dict (torch.save pickle, loaded safely)",
            f"weights:     {len(ck.model)} tensors, {n:,} parameters{_dtype_note(ck.model.values())}",
            f"EMA weights: {'yes' if ck.ema is not None else 'no'}",
            "config:      none stored — the model configuration must be given separately",
        ])

    header, meta, size = _read_header(p)
    config, step, epoch, _, _ = _read_meta(p, header, meta)
    version = _check_marker(p, meta)

    def count(prefix: str) -> tuple[int, int]:
        entries = [e for k, e in header.items() if k.startswith(prefix)]
        return len(entries), sum(math.prod(e["shape"]) for e in entries)

    n_model, p_model = count("model.")
    n_ema, _ = count("ema.")
    model_dtypes = sorted({_ST_DTYPES.get(e["dtype"], e["dtype"]) for k, e in header.items() if k.startswith("model.")})
    rng_names = sorted(k[4:] for k in header if k.startswith("rng."))

    def sec(name: str) -> dict:
        v = config.get(name)
        return v if isinstance(v, dict) else {}

    m, s, d, t = sec("model"), sec("schedule"), sec("data"), sec("train")
    ema_note = f"yes ({n_ema} tensors, decay {t.get('ema_decay')})" if meta.get("has_ema") == "true" else "no"
    lines = [
        f"file:        {p} ({human_bytes(size)})",
        f"format:      DDPM Studio checkpoint v{version} (safetensors)"
        + (f", saved {meta['saved_at']}" if "saved_at" in meta else "")
        + (f" with torch {meta['torch_version']}" if "torch_version" in meta else ""),
        f"progress:    step {step:,}, epoch {epoch:,}",
        f"model:       U-Net dim={m.get('dim')} dim_mults={m.get('dim_mults')} channels={m.get('channels')}"
        f" — {n_model} tensors, {p_model:,} parameters ({', '.join(model_dtypes) or 'no weights'})",
        f"schedule:    {s.get('name')}, T={s.get('timesteps')}",
        f"data:        {d.get('dataset')}, {d.get('image_size')}×{d.get('image_size')}, "
        f"{d.get('channels')} channel(s)",
        f"training:    batch {t.get('batch_size')}, lr {t.get('lr')}, loss {t.get('loss')}, "
        f"steps {t.get('steps')}, epochs {t.get('epochs')}, seed {t.get('seed')}",
        f"EMA weights: {ema_note}",
        f"optimizer:   {'yes' if 'optim_state' in meta else 'no'}",
        f"RNG states:  {', '.join(rng_names) or 'none'}",
    ]
    try:
        extra = json.loads(meta.get("extra", "{}"))
        if isinstance(extra, dict) and extra:
            lines.append(f"extra:       {', '.join(sorted(extra))}")
    except (ValueError, RecursionError):
        pass  # `extra` is a courtesy line; load_checkpoint reports a damaged one
    return "\n".join(lines)


# Bytes per element of each safetensors dtype. A DDPM Studio checkpoint with any other
# dtype is refused (`_read_meta`); a foreign file is refused by its format marker first.
_ST_ITEMSIZE = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
    "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1, "F8_E5M2": 1, "F8_E4M3": 1,
}  # fmt: skip

_ST_DTYPES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
    "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool",
}  # fmt: skip


def _dtype_note(tensors) -> str:
    dtypes = sorted({str(t.dtype).replace("torch.", "") for t in tensors})
    return f" ({', '.join(dtypes)})" if dtypes else ""
