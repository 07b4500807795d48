"""Property-based tests: every user-facing input either works or is refused with one line
a person can act on. Never a traceback, never another exception type.

Inputs covered: configuration dicts / JSON text / files (`RunConfig`), image files and
folders (`load_image`, `load_folder`), checkpoint files (random bytes and mutated real
checkpoints, through every reader), and the command line (`ddpm_core.cli.main`).

Every test draws a fixed number of examples (`settings(max_examples=...)`, no deadline,
derandomized so a run is repeatable), tallied in `EXAMPLES`: 1,910 generated inputs in
all, plus 15 explicit `@example`s (bugs found on the way, kept as regression cases).
"""

from __future__ import annotations

import atexit
import dataclasses
import io
import json
import math
import re
import shutil
import struct
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from ddpm_core.checkpoint import describe_checkpoint, load_checkpoint, read_checkpoint_config
from ddpm_core.cli import main as cli_main
from ddpm_core.config import DataConfig, ModelConfig, RunConfig, ScheduleConfig, TrainConfig
from ddpm_core.errors import CheckpointError, ConfigError, DataError
from ddpm_core.image_folder import load_folder, load_image
from ddpm_core.model_io import load_for_sampling


def _settings(n: int):
    # derandomize: the same examples every run (a property test must not be flaky);
    # no deadline: this machine is slow and shared, and the tests are not timed.
    return settings(
        max_examples=n,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    )


SECTIONS = {"model": ModelConfig, "schedule": ScheduleConfig, "data": DataConfig, "train": TrainConfig}
FIELD_PATHS = [f"{s}.{f.name}" for s, k in SECTIONS.items() for f in dataclasses.fields(k)]
_FIELD_RE = re.compile(r"\b(" + "|".join(re.escape(p) for p in sorted(FIELD_PATHS, key=len, reverse=True)) + r")\b")


def one_line(msg: str) -> str:
    assert msg and "\n" not in msg and "\r" not in msg, repr(msg)
    assert "Traceback" not in msg, msg
    return msg


# =====================================================================================
# configuration
# =====================================================================================

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["linear", "cosine", "huber", "ddim", "cpu", "auto", "folder", "shapes", "1", "", "\n"])
)
json_values = st.recursive(
    json_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
# values near the edges of the real ranges, more often than arbitrary JSON finds them
edge_numbers = st.sampled_from([0, 1, 2, 3, 4, 7, 8, 16, 28, 64, 255, 256, 512, 513, 1024, 1025, 10000, 10001,
                                -1, 2**31, 2**63, 2**63 - 1, 10**9, 10**9 + 1, 0.5, 1.0, 1e-9, 0.999999, 1.5,
                                float("nan"), float("inf"), -0.0, True, False, None])
field_values = json_values | edge_numbers | st.lists(edge_numbers, max_size=6)


def _well_typed(cfg: RunConfig) -> None:
    """A config that passed validation must hold values of the types the engine expects."""

    def is_int(v):
        return isinstance(v, int) and not isinstance(v, bool)

    def is_num(v):
        return (is_int(v) or isinstance(v, float)) and math.isfinite(v)

    m, s, d, t = cfg.model, cfg.schedule, cfg.data, cfg.train
    checks = {
        "model.dim": is_int(m.dim),
        "model.init_dim": m.init_dim is None or is_int(m.init_dim),
        "model.out_dim": m.out_dim is None or is_int(m.out_dim),
        "model.dim_mults": isinstance(m.dim_mults, tuple) and m.dim_mults and all(map(is_int, m.dim_mults)),
        "model.channels": is_int(m.channels) and m.channels in (1, 3),
        "model.self_condition": isinstance(m.self_condition, bool),
        "model.resnet_block_groups": is_int(m.resnet_block_groups),
        "schedule.name": isinstance(s.name, str),
        "schedule.timesteps": is_int(s.timesteps),
        "data.dataset": isinstance(d.dataset, str),
        "data.image_size": is_int(d.image_size),
        "data.channels": is_int(d.channels) and d.channels == m.channels,
        "data.root": d.root is None or isinstance(d.root, str),
        "data.flip": isinstance(d.flip, bool),
        "data.limit": d.limit is None or is_int(d.limit),
        "train.batch_size": is_int(t.batch_size),
        "train.lr": is_num(t.lr),
        "train.loss": isinstance(t.loss, str),
        "train.steps": t.steps is None or is_int(t.steps),
        "train.epochs": t.epochs is None or is_int(t.epochs),
        "train.ema": isinstance(t.ema, bool),
        "train.compile": isinstance(t.compile, bool),
        "train.ema_decay": is_num(t.ema_decay),
        "train.seed": is_int(t.seed),
        "train.device": isinstance(t.device, str),
    }
    for name in ("preview_every", "preview_count", "preview_steps", "checkpoint_every"):
        checks[f"train.{name}"] = is_int(getattr(t, name))
    bad = [k for k, ok in checks.items() if not ok]
    assert not bad, f"validated config holds badly typed {bad}: {cfg}"
    assert RunConfig.from_json(cfg.to_json()) == cfg  # what is saved reads back the same


def _check_config_outcome(build, mutated=None):
    """`build()` must give a valid RunConfig or a one-line ConfigError naming the culprit:
    one of the `mutated` field paths when given, else some field, section or the document."""
    try:
        cfg = build()
    except ConfigError as e:
        msg = one_line(str(e))
        named = set(_FIELD_RE.findall(msg))
        if mutated is None:
            assert (
                named
                or re.search(r"'(model|schedule|data|train)' section", msg)
                or "unknown configuration section" in msg
                or "unknown setting" in msg
                or "configuration must be a JSON object" in msg
                or "not valid JSON" in msg
            ), f"message names no field: {msg}"
        else:
            section = {p.split(".")[0] for p in mutated}
            assert (
                named & set(mutated)
                or any(f"'{s}' section" in msg for s in section)
                or "unknown" in msg and any(p in msg or f"'{p.split('.')[0]}'" in msg for p in mutated)
            ), f"message does not name the field ({mutated}): {msg}"
        return None
    _well_typed(cfg)
    return cfg


EXAMPLES = {}  # test name -> max_examples, for the record


def _count(name: str, n: int) -> int:
    EXAMPLES[name] = n
    return n


@_settings(_count("config_one_field", 400))
@given(path=st.sampled_from(FIELD_PATHS + ["model.colour", "train.speed", "extra.x"]), value=field_values)
def test_config_one_bad_field_is_named(path, value):
    section, name = path.split(".")
    d = RunConfig().to_dict()
    d.setdefault(section, {})[name] = value
    _check_config_outcome(lambda: RunConfig.from_dict(d), [path])


@_settings(_count("config_many_fields", 200))
@given(changes=st.dictionaries(st.sampled_from(FIELD_PATHS), field_values, min_size=2, max_size=6))
def test_config_several_fields_valid_or_one_line(changes):
    d = RunConfig().to_dict()
    for path, value in changes.items():
        section, name = path.split(".")
        d[section][name] = value
    _check_config_outcome(lambda: RunConfig.from_dict(d), list(changes))


@_settings(_count("config_any_json", 150))
@given(doc=json_values | st.dictionaries(st.sampled_from(list(SECTIONS) + ["x"]), json_values, max_size=4))
@example(doc=[])
@example(doc={"model": []})
@example(doc={"model": {"dim_mults": 5}})
@example(doc={"model": {"channels": 1.0}, "data": {"channels": 1.0}})
def test_config_arbitrary_json_document(doc):
    text = json.dumps(doc)  # NaN/Infinity become the JSON extensions Python reads back
    _check_config_outcome(lambda: RunConfig.from_json(text, source="cfg.json"))


@_settings(_count("config_file_bytes", 100))
@given(data=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
@example(data=b"[" * 100_000)  # nesting deeper than the JSON parser's recursion limit
@example(data=b"\xff\xfe{}")
@example(data=b'{"model": {"dim": 1e400}}')
def test_config_file_of_any_bytes(data):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cfg.json"
        path.write_bytes(data)
        try:
            RunConfig.load(path)
        except ConfigError as e:
            msg = one_line(str(e))
            assert str(path) in msg, msg  # which file: the user may pass several


# =====================================================================================
# image files and folders
# =====================================================================================


def _make_image(mode: str, w: int, h: int, seed: int, specials: bool = False) -> Image.Image:
    """A w×h image of `mode` with random pixels (for "F", NaN and ±inf when `specials`)."""
    rng = np.random.default_rng(seed)
    u8 = lambda *shape: rng.integers(0, 256, size=(h, w, *shape), dtype=np.uint8)  # noqa: E731
    if mode == "1":
        return Image.fromarray(rng.integers(0, 2, size=(h, w)).astype(bool))
    if mode in ("L", "P"):
        img = Image.fromarray(u8())
        return img.convert("P") if mode == "P" else img
    if mode in ("LA", "RGB", "RGBA", "RGBX", "CMYK", "LAB"):
        return Image.fromarray(u8(len(mode) if mode != "RGBX" else 4), mode)
    if mode in ("YCbCr", "HSV", "PA", "RGBa"):
        return Image.fromarray(u8(4), "RGBA").convert("RGB" if mode in ("YCbCr", "HSV") else mode).convert(mode)
    if mode == "I":
        return Image.fromarray(rng.integers(-(2**20), 2**20, size=(h, w), dtype=np.int32), "I")
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 2**16, size=(h, w), dtype=np.uint16))
    if mode == "I;16B":
        return Image.frombytes("I;16B", (w, h), rng.integers(0, 2**16, size=(h, w), dtype=np.uint16).astype(">u2").tobytes())
    if mode == "F":
        a = (rng.standard_normal((h, w)) * rng.choice([0.3, 300.0])).astype(np.float32)
        if specials:
            a.flat[rng.integers(0, a.size, size=3)] = [np.nan, np.inf, -np.inf]
        return Image.fromarray(a)
    raise ValueError(mode)


def _encode(img: Image.Image, fmt: str, transparency: bool = False) -> bytes:
    buf = io.BytesIO()
    kw = {"transparency": 0} if transparency and img.mode in ("P", "L") and fmt in ("PNG", "GIF") else {}
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _working_combos() -> list[tuple[str, str]]:
    """The (mode, format) pairs this Pillow can write, found by trying."""
    combos = []
    for mode in ("1", "L", "P", "LA", "PA", "RGB", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr", "LAB", "HSV",
                 "I", "I;16", "I;16B", "F"):
        for fmt in ("PNG", "GIF", "BMP", "TIFF", "JPEG", "WEBP"):
            try:
                _encode(_make_image(mode, 3, 2, 0), fmt)
            except (OSError, ValueError, KeyError, TypeError):
                continue
            combos.append((mode, fmt))
    return combos


IMAGE_COMBOS = _working_combos()
EXTENSION = {"PNG": ".png", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif", "JPEG": ".jpg", "WEBP": ".webp"}


@st.composite
def image_files(draw, damaged: bool = True):
    """(name, bytes, kind): a real image of any mode/format; or one cut short; or noise."""
    kind = draw(st.sampled_from(["image", "truncated", "noise"] if damaged else ["image"]))
    mode, fmt = draw(st.sampled_from(IMAGE_COMBOS))
    w, h = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    img = _make_image(mode, w, h, draw(st.integers(0, 2**32 - 1)), specials=draw(st.booleans()))
    data = _encode(img, fmt, transparency=draw(st.booleans()))
    if kind == "truncated":
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif kind == "noise":
        # noise, sometimes behind a real magic number so the decoder gets further
        data = draw(st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"\xff\xd8\xff", b"BM", b"II*\x00"]))
        data += draw(st.binary(max_size=300))
    return f"{mode.replace(';', '_')}-{kind}{EXTENSION[fmt]}", data, kind


def _check_image_tensor(x: torch.Tensor, size: int, channels: int) -> None:
    assert x.shape == (channels, size, size) and x.dtype == torch.float32
    assert torch.isfinite(x).all() and x.min() >= -1 and x.max() <= 1


@_settings(_count("image_files", 300))
@given(spec=image_files(), size=st.integers(4, 32), channels=st.sampled_from([1, 3]))
@example(spec=("F-nan.tif", _encode(_make_image("F", 6, 5, 1, specials=True), "TIFF"), "image"), size=8, channels=1)
@example(spec=("I_16-image.png", _encode(_make_image("I;16", 9, 4, 2), "PNG"), "image"), size=4, channels=3)
def test_image_file_loads_or_one_line_error(spec, size, channels):
    name, data, kind = spec
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning is stray output on the command line's stderr
        path = Path(tmp) / name
        path.write_bytes(data)
        try:
            x = load_image(path, size, channels)
        except DataError as e:
            msg = one_line(str(e))
            assert str(path) in msg and "choose" in msg, msg
            assert kind != "image", f"a valid {name} was refused: {msg}"
            return
        _check_image_tensor(x, size, channels)



@_settings(_count("image_folders", 60))
@given(
    specs=st.lists(image_files(), min_size=1, max_size=5),
    layout=st.lists(st.sampled_from(["", "cats", "dogs", "cats/deep"]), min_size=5, max_size=5),
    channels=st.sampled_from([1, 3]),
)
def test_image_folder_keeps_exactly_the_readable_files(specs, layout, channels):
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("error")
        root = Path(tmp) / "photos"
        readable, labels = 0, []
        for i, ((name, data, _), sub) in enumerate(zip(specs, layout)):
            path = root / sub / f"{i}-{name}"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            try:  # the single-file reader is the reference for "readable"
                load_image(path, 8, channels)
            except DataError:
                continue
            readable += 1
            labels.append(sub.split("/")[0])
        try:
            ds = load_folder(root, 8, channels)
        except DataError as e:
            msg = one_line(str(e))
            assert readable == 0 and str(root) in msg and "choose" in msg, msg
            return
        assert len(ds) == readable and ds.skipped == len(specs) - readable
        assert ds.images.dtype == torch.uint8 and ds.images.shape[1:] == (channels, 8, 8)
        assert sorted(ds.class_names[k] for k in ds.labels.tolist()) == sorted(labels)



@_settings(_count("idx_files", 100))
@given(
    shape=st.lists(st.integers(0, 5), min_size=1, max_size=3),
    cut=st.none() | st.integers(0, 80),
    noise=st.none() | st.binary(max_size=64),
    gz=st.booleans(),
)
def test_idx_dataset_file_reads_or_one_line_error(shape, cut, noise, gz):
    """The MNIST-style files a download leaves: damaged copies give a DataError saying what to do."""
    import gzip

    from ddpm_core.remote_datasets import read_idx

    raw = bytes([0, 0, 8, len(shape)]) + b"".join(d.to_bytes(4, "big") for d in shape) + bytes(math.prod(shape))
    if noise is not None:
        raw = noise
    if cut is not None:
        raw = raw[:cut]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train-images-idx3-ubyte.gz"
        path.write_bytes(gzip.compress(raw) if gz else raw)
        try:
            arr = read_idx(path)
        except DataError as e:
            msg = one_line(str(e))
            assert str(path) in msg and "delete" in msg, msg
            return
        assert arr.dtype == np.uint8 and arr.size == len(raw) - 4 - 4 * raw[3]

# =====================================================================================
# checkpoint files
# =====================================================================================


def tiny_config() -> RunConfig:
    cfg = RunConfig()
    cfg.model.dim, cfg.model.dim_mults = 4, (1, 2)
    cfg.data.image_size, cfg.schedule.timesteps = 8, 10
    cfg.train.batch_size, cfg.train.steps, cfg.train.preview_every, cfg.train.device = 4, 1, 0, "cpu"
    return cfg.validate()


_REAL = {}


def real_checkpoint() -> bytes:
    """A real checkpoint (a trained step, EMA, Adam state, RNG), made once per session."""
    if "bytes" not in _REAL:
        from ddpm_core.shapes import make_shapes
        from ddpm_core.training import Trainer

        trainer = Trainer(tiny_config(), images=make_shapes(8, 8, 1))
        for _ in trainer.steps():
            pass
        with tempfile.TemporaryDirectory() as tmp:
            _REAL["bytes"] = trainer.save(Path(tmp) / "real.safetensors").read_bytes()
    return _REAL["bytes"]


def _split(data: bytes) -> tuple[dict, bytes]:
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def _join(header: dict, body: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + body


READERS = {
    "load_checkpoint": load_checkpoint,
    "describe_checkpoint": describe_checkpoint,
    "read_checkpoint_config": read_checkpoint_config,
    "load_for_sampling": lambda p: load_for_sampling(p, device="cpu"),
}


def _check_readers(path: Path) -> dict:
    """Run every reader: each returns or raises a one-line CheckpointError naming `path`.
    Returns {reader: True if it succeeded}."""
    ok = {}
    for name, fn in READERS.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                fn(path)
            ok[name] = True
        except CheckpointError as e:
            msg = one_line(str(e))
            assert str(path) in msg, f"{name}: {msg}"
            ok[name] = False
    # A header that reads as complete must load: resuming trusts read_checkpoint_config.
    if ok["read_checkpoint_config"]:
        assert ok["load_checkpoint"], "read_checkpoint_config accepted a file load_checkpoint refuses"
    return ok


class Mutated:
    def __init__(self, how: str, detail: str, data: bytes):
        self.how, self.detail, self.data = how, detail, data

    def __repr__(self):  # not the data: a megabyte in a failure report helps nobody
        return f"Mutated({self.how}: {self.detail})"


@st.composite
def mutated_checkpoints(draw):
    how, data, detail = draw(_mutations())
    return Mutated(how, detail, data)


@st.composite
def _mutations(draw):
    """(how, bytes, what was done) for one kind of damage to a real checkpoint."""
    data = real_checkpoint()
    header, body = _split(data)
    how = draw(st.sampled_from(["truncate", "flip", "header-value", "metadata", "length", "append", "splice"]))
    if how == "truncate":  # cut anywhere, the first 200 bytes (the length and header start) often
        cut = draw(st.integers(0, 200) | st.integers(0, len(data) - 1))
        return how, data[:cut], f"cut at {cut} of {len(data)}"
    if how == "flip":  # random bytes overwritten, in the header or anywhere
        b = bytearray(data)
        changes = []
        for _ in range(draw(st.integers(1, 8))):
            end = len(b) if draw(st.booleans()) else 8 + len(json.dumps(header))
            pos, value = draw(st.integers(0, end - 1)), draw(st.integers(0, 255))
            b[pos] = value
            changes.append((pos, value))
        return how, bytes(b), f"bytes set {changes}"
    if how == "header-value":  # one tensor entry's field replaced (dtype, shape, offsets)
        name = draw(st.sampled_from(sorted(k for k in header if k != "__metadata__")))
        field = draw(st.sampled_from(["dtype", "shape", "data_offsets"]))
        value = draw(json_values | st.sampled_from(["F16", "I64", "U8", "X9", [], [1], [0, 0], [10**12, 10**12 + 4]]))
        header[name][field] = value
        return how, _join(header, body), f"{name}.{field} = {value!r}"
    if how == "metadata":  # one metadata value replaced by arbitrary (JSON) text
        key = draw(st.sampled_from(sorted(header["__metadata__"]) + ["format", "new-key"]))
        value = draw(json_values.map(json.dumps) | st.text(max_size=20) | st.just("[" * 5000))
        header["__metadata__"][key] = value
        return how, _join(header, body), f"metadata {key} = {value[:60]!r}"
    if how == "length":  # the 8-byte header length field lies
        n = draw(st.integers(0, 2**64 - 1) | st.integers(0, len(data)))
        return how, struct.pack("<Q", n) + data[8:], f"header length {n}"
    extra = draw(st.binary(min_size=1, max_size=64))
    if how == "append":
        return how, data + extra, f"{len(extra)} bytes appended"
    cut = draw(st.integers(8, len(data)))  # splice: bytes inserted in the middle
    return how, data[:cut] + extra + data[cut:], f"{len(extra)} bytes inserted at {cut}"


@_settings(_count("checkpoint_mutated", 150))
@given(case=mutated_checkpoints())
def test_mutated_real_checkpoint_loads_or_one_line_error(case):
    how, data = case.how, case.data
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "run" / "step_0000001.safetensors"
        path.parent.mkdir()
        path.write_bytes(data)
        ok = _check_readers(path)
        if how in ("truncate", "append", "splice", "length"):
            # the file's size no longer matches its header: never taken for a checkpoint
            assert not any(ok.values()), (how, ok)


@_settings(_count("checkpoint_random_bytes", 150))
@given(
    prefix=st.sampled_from([b"", b"PK\x03\x04", b"PK\x05\x06", b"\x80\x02", b"\x80\x04\x95", b"\x89PNG\r\n\x1a\n",
                            struct.pack("<Q", 40) + b"{", struct.pack("<Q", 2**62) + b"{", b"{", b"\xef\xbb\xbf"]),
    data=st.binary(max_size=400),
    suffix=st.sampled_from([".safetensors", ".pt", ".pth", ".ckpt", ""]),
)
@example(prefix=b"", data=b"", suffix=".safetensors")
@example(prefix=b"", data=b"\x00", suffix=".pt")
def test_random_bytes_are_never_a_checkpoint(prefix, data, suffix):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"file{suffix}"
        path.write_bytes(prefix + data)
        ok = _check_readers(path)
        assert not any(ok.values()), ok


# =====================================================================================
# the command line
# =====================================================================================

_CLI_DIR = {}


def cli_files() -> dict:
    """Files the command line is pointed at: a real checkpoint and run folder, bad
    checkpoints, images and configs (made once; the tests only read them)."""
    if not _CLI_DIR:
        root = Path(tempfile.mkdtemp(prefix="ddpm-cli-props-"))
        atexit.register(shutil.rmtree, root, True)  # made once per session, removed at its end
        real = root / "run" / "checkpoints" / "step_0000001.safetensors"
        real.parent.mkdir(parents=True)
        real.write_bytes(real_checkpoint())
        files = {
            "real.safetensors": real,
            "run-folder": root / "run",
            "empty-folder": root / "empty",
            "missing.safetensors": root / "missing.safetensors",
            "truncated.safetensors": root / "truncated.safetensors",
            "png-as-ckpt.safetensors": root / "png-as-ckpt.safetensors",
            "text.pt": root / "text.pt",
            "photo.png": root / "photo.png",
            "broken.png": root / "broken.png",
            "good.json": root / "good.json",
            "bad.json": root / "bad.json",
            "list.json": root / "list.json",
        }
        files["empty-folder"].mkdir()
        files["truncated.safetensors"].write_bytes(real_checkpoint()[:5000])
        png = _encode(_make_image("RGB", 12, 9, 0), "PNG")
        files["png-as-ckpt.safetensors"].write_bytes(png)
        files["photo.png"].write_bytes(png)
        files["broken.png"].write_bytes(png[:40])
        files["text.pt"].write_text("not a checkpoint\n")
        files["good.json"].write_text(tiny_config().to_json())
        files["bad.json"].write_text('{"model": {"dim": "wide"}}')
        files["list.json"].write_text("[1, 2]")
        _CLI_DIR.update({k: str(v) for k, v in files.items()})
    return _CLI_DIR


# Values any flag may get: numbers at and beyond the edges, non-numbers, odd text.
_no_nul = st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",))
flag_values = (
    st.sampled_from(["0", "-1", "1", "2", "3", "4", "8", "0.5", "1e3", "nan", "inf", "-inf", "1,2", "1,,2", "1,x",
                     "100000", "99999999999999999999999", "", " ", "0x10", "1_0", "\u0661", "cpu", "cuda", "auto",
                     "ddim", "cosine", "wiggly", "folder", "fp32", "bf16", "a\nb", "-"])
    | st.integers(-5, 12).map(str)
    | st.text(_no_nul, max_size=8)
)
# No value, or a value small enough that a valid run stays quick (the sizes are bounded
# by the parser; these tests check the refusals, not throughput).
_TRAIN_FLAGS = ["--dataset", "--data-root", "--image-size", "--channels", "--limit", "--dim", "--dim-mults",
                "--schedule", "--timesteps", "--loss", "--batch-size", "--lr", "--steps", "--epochs", "--ema-decay",
                "--preview-every", "--checkpoint-every", "--seed", "--device", "--precision", "--autosave-minutes"]
_SAMPLE_FLAGS = ["-n", "--sampler", "--steps", "--eta", "--seed", "--device", "--precision", "--image-size",
                 "--gif-index", "--gif-stride", "--gif-duration"]
_FORWARD_FLAGS = ["-n", "--image-size", "--channels", "--schedule", "--timesteps", "--frames", "--seed"]


def _flags(names):
    pair = st.tuples(st.sampled_from(names), flag_values).map(list)
    return st.lists(pair, max_size=4).map(lambda pairs: [x for p in pairs for x in p])


def run_cli(argv: list[str]) -> tuple[int, str]:
    """`ddpm argv` in this process: (exit code, stderr). Any exception but SystemExit
    escaping main() is a traceback the user would see, so it fails the test."""
    import contextlib

    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out), warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning would be a second line on stderr
        try:
            code = cli_main(argv)
        except SystemExit as e:  # argparse: usage errors (2) and --help (0)
            code = e.code
    return code, err.getvalue()


def _check_cli(argv: list[str]) -> int:
    code, err = run_cli(argv)
    event(f"exit code {code}")  # shown by --hypothesis-show-statistics: both outcomes are exercised
    assert code in (0, 2), (code, argv, err)
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    if code == 2:
        assert len(lines) == 1 and lines[0].startswith("ddpm"), (argv, err)
        assert "error:" in lines[0], err
    else:
        assert not lines, (argv, err)
    return code


@_settings(_count("cli_train", 120))
@given(
    flags=_flags(_TRAIN_FLAGS),
    switches=st.lists(st.sampled_from(["--no-flip", "--no-ema"]), max_size=2),
    config=st.sampled_from([None, "good.json", "bad.json", "list.json", "missing.safetensors", "photo.png",
                            "empty-folder"]),
)
def test_cli_train_flags_are_accepted_or_refused_in_one_line(flags, switches, config):
    files = cli_files()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cfg.json"
        argv = ["train", *flags, *switches, *(["--config", files[config]] if config else [])]
        # --save-config: write the resulting configuration and stop, never train
        if _check_cli(argv + ["--save-config", str(out)]) == 0:
            RunConfig.load(out)  # what it wrote is a valid configuration


@_settings(_count("cli_resume", 40))
@given(
    flags=_flags(_TRAIN_FLAGS),
    resume=st.sampled_from(["missing.safetensors", "truncated.safetensors", "png-as-ckpt.safetensors", "text.pt",
                            "empty-folder", "photo.png"]),
)
def test_cli_resume_from_a_bad_file_is_refused_in_one_line(flags, resume):
    assert _check_cli(["train", "--resume", cli_files()[resume], *flags]) == 2


@_settings(_count("cli_sample_info", 80))
@given(
    command=st.sampled_from(["sample", "info"]),
    target=st.sampled_from(["real.safetensors", "run-folder", "empty-folder", "missing.safetensors",
                            "truncated.safetensors", "png-as-ckpt.safetensors", "text.pt", "photo.png"]),
    flags=_flags(_SAMPLE_FLAGS),
    outputs=st.lists(st.sampled_from(["--png", "--gif"]), max_size=2, unique=True),
    out_kind=st.sampled_from(["file", "folder", "new-subfolder"]),
)
@example(command="sample", target="real.safetensors", flags=["--seed", "99999999999999999999999"], outputs=[],
         out_kind="file")  # was a ValueError traceback from torch.Generator.manual_seed
@example(command="sample", target="real.safetensors", flags=["-n", "1", "--sampler", "ddim", "--steps", "2"],
         outputs=["--png", "--gif"], out_kind="folder")  # the error named a hidden temporary file
def test_cli_sample_and_info_accept_or_refuse_in_one_line(command, target, flags, outputs, out_kind):
    files = cli_files()
    with tempfile.TemporaryDirectory() as tmp:
        argv = [command, files[target]]
        if command == "sample":
            argv += flags
            for flag in outputs or ["--png"]:  # never the default samples.png in the working folder
                where = {"file": Path(tmp) / f"o{flag[2:]}.x", "folder": Path(tmp), "new-subfolder": Path(tmp) / "a" / "b"}
                argv += [flag, str(where[out_kind])]
        code = _check_cli(argv)
        if target in ("real.safetensors", "run-folder") and command == "info":
            assert code == 0


@_settings(_count("cli_forward", 60))
@given(
    flags=_flags(_FORWARD_FLAGS),
    image=st.sampled_from([None, "photo.png", "broken.png", "missing.safetensors", "empty-folder", "text.pt"]),
)
@example(flags=["--seed", "99999999999999999999999", "--frames", "2"], image=None)
@example(flags=["-n", "100000"], image=None)  # was accepted: tens of GB of images
def test_cli_forward_accepts_or_refuses_in_one_line(flags, image):
    with tempfile.TemporaryDirectory() as tmp:
        argv = ["forward", *flags, "--gif", str(Path(tmp) / "f.gif")]
        if image:
            argv += ["--image", cli_files()[image]]
        code = _check_cli(argv)
        if code == 0:
            with Image.open(Path(tmp) / "f.gif") as im:
                assert im.n_frames >= 1
