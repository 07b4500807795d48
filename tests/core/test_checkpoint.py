"""Checkpoints: exact round trips, atomic writes, and refusing everything that is not a
safe checkpoint with a one-line CheckpointError that names the file."""

from __future__ import annotations

import errno
import io
import os
import pickle
import random
import stat
import subprocess
import sys
import warnings
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn

import ddpm_core.atomic as atomic
from ddpm_core.atomic import atomic_write, atomic_write_text, remove_stale_temp_files
from ddpm_core.checkpoint import (
    CHECKPOINT_SUFFIX,
    describe_checkpoint,
    load_checkpoint,
    read_checkpoint_config,
    save_checkpoint,
)
from ddpm_core.config import RunConfig
from ddpm_core.errors import CheckpointError
from ddpm_core.state_dict_fit import check_state_dict_fits, state_dict_mismatch


class Tiny(nn.Module):
    """A stand-in for the U-Net: convs, a norm with buffers-free params, biases."""

    def __init__(self, width: int = 4):
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, padding=1)
        self.norm = nn.GroupNorm(2, width)
        self.conv2 = nn.Conv2d(width, 1, 3, padding=1)

    def forward(self, x):
        return self.conv2(torch.relu(self.norm(self.conv1(x))))


def make_model(seed: int, width: int = 4) -> Tiny:
    torch.manual_seed(seed)
    return Tiny(width)


def train_step(model, opt, gen):
    x = torch.randn(4, 1, 8, 8, generator=gen)
    noise = torch.randn(4, 1, 8, 8, generator=gen)
    loss = (model(x + noise) - noise).square().mean()
    opt.zero_grad()
    loss.backward()
    opt.step()


def temp_leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.endswith(atomic.TEMP_SUFFIX)]


def assert_one_line_error(excinfo, path):
    msg = str(excinfo.value)
    assert str(path) in msg, msg
    assert "\n" not in msg, msg
    return msg


@pytest.fixture
def saved(tmp_path):
    """A checkpoint of a briefly trained Tiny model, and the live objects that made it."""
    model = make_model(0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(123)
    for _ in range(3):
        train_step(model, opt, gen)
    ema = {k: v.detach() * 0.5 for k, v in model.state_dict().items()}
    path = save_checkpoint(
        tmp_path / f"ckpt{CHECKPOINT_SUFFIX}",
        config=RunConfig().to_dict(),
        model=model.state_dict(),
        ema=ema,
        optimizer=opt.state_dict(),
        rng={"train": gen.get_state()},
        step=3,
        epoch=1,
        extra={"loss_tail": [0.5, 0.25], "note": "hi", "pair": (1, 2)},
    )
    return path, model, opt, gen, ema


# ---- round trip ------------------------------------------------------------------------


@pytest.mark.parametrize("make_opt", [
    lambda ps: torch.optim.Adam(ps, lr=1e-3),
    lambda ps: torch.optim.AdamW(ps, lr=1e-2, betas=(0.8, 0.99), weight_decay=0.1),
    lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9),
], ids=["adam", "adamw", "sgd-momentum"])
def test_resume_is_bit_identical_to_never_stopping(tmp_path, make_opt):
    model = make_model(0)
    opt = make_opt(model.parameters())
    gen = torch.Generator().manual_seed(7)
    for _ in range(3):
        train_step(model, opt, gen)
    path = save_checkpoint(
        tmp_path / "a.safetensors", config={}, model=model, optimizer=opt, rng={"train": gen}, step=3
    )
    train_step(model, opt, gen)  # the run that never stopped

    ck = load_checkpoint(path)
    fresh = make_model(99)  # different initial weights, to be overwritten
    fresh_opt = make_opt(fresh.parameters())
    check_state_dict_fits(fresh, ck.model, str(path))
    fresh.load_state_dict(ck.model)
    fresh_opt.load_state_dict(ck.optimizer)
    fresh_gen = torch.Generator()
    fresh_gen.set_state(ck.rng["train"])
    train_step(fresh, fresh_opt, fresh_gen)

    for (name, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), name
    assert str(fresh_opt.state_dict()) == str(opt.state_dict())


def test_everything_round_trips(saved):
    path, model, opt, gen, ema = saved
    ck = load_checkpoint(path)
    assert ck.kind == "ddpm-studio" and ck.path == path
    assert ck.step == 3 and ck.epoch == 1
    assert ck.config == RunConfig().to_dict()
    RunConfig.from_dict(ck.config)  # valid as stored
    assert ck.extra == {"loss_tail": [0.5, 0.25], "note": "hi", "pair": (1, 2)}
    for k, v in model.state_dict().items():
        assert torch.equal(ck.model[k], v) and ck.model[k].dtype == v.dtype
        assert torch.equal(ck.ema[k], ema[k])
    assert torch.equal(ck.rng["train"], gen.get_state()) and ck.rng["train"].dtype == torch.uint8

    want = opt.state_dict()
    assert ck.optimizer["param_groups"] == want["param_groups"]
    assert isinstance(ck.optimizer["param_groups"][0]["betas"], tuple)
    assert ck.optimizer["state"].keys() == want["state"].keys()
    for idx, state in want["state"].items():
        for name, value in state.items():
            got = ck.optimizer["state"][idx][name]
            assert got.dtype == value.dtype and got.shape == value.shape
            assert torch.equal(got, value), (idx, name)
    assert want["state"][0]["step"].dim() == 0  # Adam's step: a scalar tensor, kept as one
    assert read_checkpoint_config(path) == RunConfig().to_dict()


def test_optional_parts_and_modules(tmp_path):
    model = make_model(1)
    path = save_checkpoint(tmp_path / "w.safetensors", config=RunConfig(), model=model)
    ck = load_checkpoint(path)
    assert ck.ema is None and ck.optimizer is None and ck.rng == {} and ck.extra == {}
    assert ck.step == 0 and ck.epoch == 0 and ck.config == RunConfig().to_dict()


def test_shared_and_strided_tensors_are_stored(tmp_path):
    base = torch.arange(12.0)
    sd = {"a": base[:6], "b": base[6:], "t": base.view(3, 4).t(), "same": base}
    path = save_checkpoint(tmp_path / "s.safetensors", config={}, model=sd, ema=sd)
    ck = load_checkpoint(path)
    for k, v in sd.items():
        assert torch.equal(ck.model[k], v) and torch.equal(ck.ema[k], v)


def test_describe_checkpoint(saved):
    path = saved[0]
    text = describe_checkpoint(path)
    n_params = sum(p.numel() for p in saved[1].parameters())
    assert str(path) in text
    assert "step 3" in text and "epoch 1" in text
    assert f"{n_params:,} parameters" in text
    assert "EMA weights: yes" in text and "optimizer:   yes" in text
    assert "linear, T=300" in text
    assert len(text.splitlines()) >= 6


# ---- atomic writes -----------------------------------------------------------------------


def test_atomic_write_failure_midway_keeps_old_file(tmp_path):
    target = tmp_path / "file.bin"
    target.write_bytes(b"old content")

    def half_then_fail(f):
        f.write(b"new half")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        atomic_write(target, half_then_fail)
    assert target.read_bytes() == b"old content"
    assert temp_leftovers(tmp_path) == []

    def interrupted(f):
        f.write(b"new half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, interrupted)
    assert target.read_bytes() == b"old content"
    assert temp_leftovers(tmp_path) == []

    atomic_write(target, lambda f: f.write(b"new content"))
    assert target.read_bytes() == b"new content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.bin"]


@pytest.mark.skipif(os.name == "nt", reason="POSIX permissions")
def test_atomic_write_follows_links_and_never_replaces_a_device_or_pipe(tmp_path):
    real = tmp_path / "real.png"
    real.write_bytes(b"old")
    link = tmp_path / "link.png"
    link.symlink_to(real)
    atomic.atomic_write_bytes(link, b"new")
    assert link.is_symlink() and real.read_bytes() == b"new"  # the link stays a link
    # A write killed midway leaves its temporary file beside the real file: found from the link.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "far.png").write_bytes(b"far")
    far_link = tmp_path / "far_link.png"
    far_link.symlink_to(elsewhere / "far.png")
    left = elsewhere / (".far.png.x1" + atomic.TEMP_SUFFIX)
    left.write_bytes(b"half")
    assert atomic.remove_stale_temp_files(far_link) == [left] and not left.exists()
    if hasattr(os, "mkfifo"):
        pipe = tmp_path / "out.png"
        os.mkfifo(pipe)
        with pytest.raises(OSError, match="a device, a pipe or a socket") as e:
            atomic.atomic_write_bytes(pipe, b"x")
        assert e.value.errno == errno.EINVAL and e.value.filename == str(pipe)
        assert stat.S_ISFIFO(os.stat(pipe).st_mode)  # still a pipe, not a file
    with pytest.raises(IsADirectoryError):
        atomic.atomic_write_bytes(tmp_path, b"x")


def test_atomic_write_keeps_permissions(tmp_path):
    target = tmp_path / "t.txt"
    target.write_text("a")
    target.chmod(0o640)
    atomic_write_text(target, "b")
    assert target.read_text() == "b"
    assert target.stat().st_mode & 0o777 == 0o640


def test_checkpoint_save_failure_keeps_previous_checkpoint(saved, monkeypatch):
    path = saved[0]
    before = path.read_bytes()

    def no_space(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", no_space)
    with pytest.raises(CheckpointError) as e:
        save_checkpoint(path, config={}, model=make_model(5), step=99)
    assert "No space left" in assert_one_line_error(e, path)
    monkeypatch.undo()

    assert path.read_bytes() == before
    assert load_checkpoint(path).step == 3
    assert temp_leftovers(path.parent) == []

    def replace_fails(src, dst):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(atomic.os, "replace", replace_fails)
    with pytest.raises(CheckpointError):
        save_checkpoint(path, config={}, model=make_model(5), step=99)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert temp_leftovers(path.parent) == []


@pytest.mark.skipif(os.name == "nt", reason="SIGKILL")
def test_sigkill_mid_write_keeps_old_file(tmp_path):
    target = tmp_path / "latest.safetensors"
    target.write_bytes(b"old checkpoint")
    # Load atomic.py by path so the child does not pay for importing torch.
    child = (
        "import importlib.util, sys, time\n"
        "spec = importlib.util.spec_from_file_location('atomic', sys.argv[1])\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "def w(f):\n"
        "    f.write(b'new, half written'); f.flush(); print('ready', flush=True); time.sleep(60)\n"
        "m.atomic_write(sys.argv[2], w)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", child, atomic.__file__, str(target)], stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == b"ready"
    finally:
        proc.kill()
        proc.wait(timeout=10)
        proc.stdout.close()
    assert target.read_bytes() == b"old checkpoint"
    assert len(temp_leftovers(tmp_path)) == 1  # what a kill leaves; never the target itself
    assert len(remove_stale_temp_files(target)) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.safetensors"]


# ---- files that are not checkpoints --------------------------------------------------------


def _png_bytes() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (255, 0, 0)).save(buf, format="PNG")
    return buf.getvalue()


def _bad_files(tmp_path: Path, good: bytes) -> dict:
    torch_buf = io.BytesIO()
    torch.save(make_model(0).state_dict(), torch_buf)
    corrupt_header = bytearray(good)
    corrupt_header[12] = ord("#")
    rng = random.Random(0)
    cases = {
        "empty.safetensors": b"",
        "tiny.safetensors": b"\x01\x02",
        "truncated-half.safetensors": good[: len(good) // 2],
        "truncated-header.safetensors": good[:40],
        "truncated-last-byte.safetensors": good[:-1],
        "trailing-garbage.safetensors": good + b"junk",
        "corrupt-header.safetensors": bytes(corrupt_header),
        "random.safetensors": b"\x17" + rng.randbytes(4095),
        "random-pickle.pt": b"\x80\xff" + rng.randbytes(4094),
        "random-zip.pt": b"PK\x03\x04" + rng.randbytes(4092),
        "truncated.pt": torch_buf.getvalue()[: len(torch_buf.getvalue()) // 2],
        "image.png": _png_bytes(),
        "config.json": RunConfig().to_json().encode(),
        "notes.txt": b"just some text, nothing to see here\n",
    }
    paths = {}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        paths[name] = tmp_path / name
    paths["missing.safetensors"] = tmp_path / "missing.safetensors"
    paths["a-folder"] = tmp_path / "a-folder"
    paths["a-folder"].mkdir()
    return paths


def test_bad_files_raise_one_line_checkpoint_error(saved, tmp_path):
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    for name, path in _bad_files(bad_dir, saved[0].read_bytes()).items():
        for fn in (load_checkpoint, describe_checkpoint):
            with pytest.raises(CheckpointError) as e:
                fn(path)
            msg = assert_one_line_error(e, path)
            assert "Traceback" not in msg
            if name.startswith("truncated") and name.endswith(".safetensors"):
                assert "truncated" in msg, msg
            if name == "image.png":
                assert "PNG" in msg
            if name == "config.json":
                assert "JSON" in msg and "not a checkpoint" in msg
            if name.startswith("missing"):
                assert "does not exist" in msg
            if name.startswith("empty"):
                assert "empty" in msg


def test_foreign_or_newer_safetensors_are_refused(tmp_path):
    import safetensors.torch

    foreign = tmp_path / "hf.safetensors"
    safetensors.torch.save_file({"w": torch.zeros(2)}, str(foreign), metadata={"format": "pt"})
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(foreign)
    assert "not a DDPM Studio checkpoint" in assert_one_line_error(e, foreign)

    bare = tmp_path / "bare.safetensors"
    safetensors.torch.save_file({"w": torch.zeros(2)}, str(bare))
    with pytest.raises(CheckpointError, match="no format marker"):
        load_checkpoint(bare)

    newer = tmp_path / "newer.safetensors"
    safetensors.torch.save_file(
        {"model.w": torch.zeros(2)}, str(newer), metadata={"format": "ddpm-studio", "version": "99"}
    )
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(newer)
    assert "newer DDPM Studio" in assert_one_line_error(e, newer)


# ---- pickles ---------------------------------------------------------------------------------


class Evil:
    """Unpickling this runs code: it creates `marker`."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


def test_the_malicious_payload_really_runs_code(tmp_path):
    marker = tmp_path / "pwned-by-plain-pickle"
    pickle.loads(pickle.dumps(Evil(marker)))
    assert marker.exists()  # so the refusals below are meaningful


@pytest.mark.parametrize("how", ["zip", "legacy", "raw-protocol-4"])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, monkeypatch, how):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    payload = {"conv.weight": torch.zeros(2), "x": Evil(marker)}
    if how == "zip":
        torch.save(payload, path)
    elif how == "legacy":
        torch.save(payload, path, _use_new_zipfile_serialization=False)
    else:  # STACK_GLOBAL imports; no tensor (pickle.dumps of a tensor is itself refused)
        path.write_bytes(pickle.dumps({"x": Evil(marker)}, protocol=4))

    def must_not_be_called(*a, **k):
        raise AssertionError("torch.load was reached with an unsafe file")

    monkeypatch.setattr(torch, "load", must_not_be_called)
    for fn in (load_checkpoint, describe_checkpoint, read_checkpoint_config):
        with pytest.raises(CheckpointError) as e:
            fn(path)
        msg = assert_one_line_error(e, path)
        assert msg.startswith("refused:") and "builtins.exec" in msg and "re-save as safetensors" in msg
    assert not marker.exists()


def test_allowed_stack_global_passes_the_scan(tmp_path, monkeypatch):
    # STACK_GLOBAL naming an allowed class (OrderedDict) is resolved and let through to
    # torch.load (stubbed here: torch's own unpickler does not take protocol 4 frames).
    path = tmp_path / "od.pt"
    path.write_bytes(pickle.dumps(OrderedDict(a=1), protocol=4))
    calls = []
    monkeypatch.setattr(torch, "load", lambda *a, **k: calls.append(k) or {"w": torch.zeros(1)})
    assert list(load_checkpoint(path).model) == ["w"]
    assert calls == [{"map_location": "cpu", "weights_only": True}]


@pytest.mark.parametrize("how", ["zip", "legacy"])
def test_bare_state_dict_from_the_notebook_loads(tmp_path, how):
    model = make_model(3)
    path = tmp_path / ("model.pt" if how == "zip" else "model.pth")
    torch.save(model.state_dict(), path, _use_new_zipfile_serialization=(how == "zip"))
    ck = load_checkpoint(path)
    assert ck.kind == "state_dict" and ck.config == {} and ck.step == 0 and ck.epoch == 0
    assert ck.ema is None and ck.optimizer is None and ck.rng == {} and ck.extra == {}
    assert ck.model.keys() == model.state_dict().keys()
    fresh = make_model(4)
    check_state_dict_fits(fresh, ck.model, str(path))
    fresh.load_state_dict(ck.model)
    for k, v in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v)
    assert read_checkpoint_config(path) == {}
    assert "state_dict" in describe_checkpoint(path)


def test_wrapped_and_prefixed_state_dicts_load(tmp_path):
    sd = make_model(3).state_dict()
    wrappers = {
        "model": {"model": sd, "epoch": 3, "optimizer_name": "adam"},
        "state_dict": {"state_dict": sd},
        "module": {f"module.{k}": v for k, v in sd.items()},
        "parameters": dict(make_model(3).named_parameters()),  # nn.Parameter values
    }
    for name, obj in wrappers.items():
        path = tmp_path / f"{name}.pt"
        torch.save(obj, path)
        ck = load_checkpoint(path)
        assert set(ck.model) <= set(sd), name
        for k, v in ck.model.items():
            assert type(v) is torch.Tensor and torch.equal(v, sd[k]), (name, k)

    path = tmp_path / "list.pt"
    torch.save([1, 2, 3], path)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path)
    assert "not a model state_dict" in assert_one_line_error(e, path)


# ---- does it fit the model? ------------------------------------------------------------------


def test_check_state_dict_fits_messages():
    model = make_model(0, width=4)
    assert state_dict_mismatch(model, model.state_dict(), "x.safetensors") is None
    check_state_dict_fits(model, model.state_dict(), "x.safetensors")

    wide = make_model(0, width=8).state_dict()
    with pytest.raises(CheckpointError) as e:
        check_state_dict_fits(model, wide, "x.safetensors")
    msg = str(e.value)
    assert msg.startswith("x.safetensors does not fit this model: ")
    assert "5 weights have other shapes" in msg
    assert "first: conv1.weight is (8, 1, 3, 3) in the file, (4, 1, 3, 3) in the model" in msg
    assert msg.endswith("— open it with its own configuration") and "\n" not in msg

    sd = dict(model.state_dict())
    del sd["conv2.bias"]
    sd["extra.weight"] = torch.zeros(1)
    msg = state_dict_mismatch(model, sd, "y.pt")
    assert "1 weight of the model missing from the file (first: conv2.bias)" in msg
    assert "1 weight in the file not in the model (first: extra.weight)" in msg


def test_import_hidden_behind_the_memo_is_refused(tmp_path, monkeypatch):
    # Hand-made protocol 4: push "builtins" and "exec", memoize, pop both, fetch them back
    # from the memo and STACK_GLOBAL them, so the names never sit right before the import.
    marker = tmp_path / "pwned"
    code = f"open({str(marker)!r}, 'w').close()".encode()
    data = (
        b"\x80\x04"
        + b"\x8c\x08builtins\x94" + b"\x8c\x04exec\x94"  # SHORT_BINUNICODE + MEMOIZE
        + b"00"  # POP POP
        + b"h\x00h\x01\x93"  # BINGET 0, BINGET 1, STACK_GLOBAL
        + b"\x8c" + bytes([len(code)]) + code + b"\x85R."  # TUPLE1 REDUCE STOP
    )
    path = tmp_path / "sneaky.pt"
    path.write_bytes(data)
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load reached"))
    with pytest.raises(CheckpointError, match=r"^refused: .*\(builtins\.exec\)"):
        load_checkpoint(path)
    assert not marker.exists()
    pickle.loads(data)  # the payload is real: plain pickle runs it
    assert marker.exists()


# ---- "Trust": every way a file can be wrong, through every reader --------------------------

from ddpm_core.model_io import load_for_sampling  # noqa: E402
from ddpm_core.run_folder import latest_checkpoint  # noqa: E402

READERS = {
    "load_checkpoint": load_checkpoint,
    "describe_checkpoint": describe_checkpoint,
    "read_checkpoint_config": read_checkpoint_config,
    "load_for_sampling": lambda p: load_for_sampling(p, device="cpu"),
}


def tiny_run_config() -> RunConfig:
    cfg = RunConfig()
    cfg.model.dim, cfg.model.dim_mults = 4, (1, 2)
    cfg.data.image_size, cfg.schedule.timesteps = 8, 10
    cfg.train.batch_size, cfg.train.steps, cfg.train.preview_every, cfg.train.device = 4, 1, 0, "cpu"
    return cfg.validate()


@pytest.fixture(scope="module")
def real_ckpt(tmp_path_factory):
    """A real one-step checkpoint from the Trainer (weights, EMA, Adam, RNG), as bytes."""
    from ddpm_core.shapes import make_shapes
    from ddpm_core.training import Trainer

    trainer = Trainer(tiny_run_config(), images=make_shapes(8, 8, 1))
    for _ in trainer.steps():
        pass
    path = trainer.save(tmp_path_factory.mktemp("real") / "real.safetensors")
    return path.read_bytes()


def _refused_by_every_reader(path: Path) -> list[str]:
    """Each reader raises a one-line CheckpointError naming `path`; returns the messages."""
    msgs = []
    for name, fn in READERS.items():
        with pytest.raises(CheckpointError) as e:
            fn(path)
        msg = assert_one_line_error(e, path)
        assert "Traceback" not in msg, (name, msg)
        msgs.append(msg)
    return msgs


def test_truncated_at_many_offsets_is_refused_by_every_reader(real_ckpt, tmp_path):
    header_end = 8 + int.from_bytes(real_ckpt[:8], "little")
    rng = random.Random(1)
    offsets = sorted(
        set(range(0, 40))  # the length field and the header's start
        | {rng.randrange(40, header_end) for _ in range(40)}  # inside the JSON header
        | {header_end - 1, header_end, header_end + 1}
        | {rng.randrange(header_end, len(real_ckpt)) for _ in range(40)}  # inside the tensor data
        | {len(real_ckpt) - 1}
    )
    path = tmp_path / "cut.safetensors"
    for n in offsets:
        path.write_bytes(real_ckpt[:n])
        for msg in _refused_by_every_reader(path):
            want = "empty" if n == 0 else "too short" if n < 9 else "truncated"
            assert want in msg, (n, msg)
    assert len(offsets) > 100


def _unrelated_files(tmp_path: Path, real: bytes) -> dict:
    """name -> (path, a word the message must contain)."""
    import safetensors.torch

    out = {}

    def put(name, data, needle):
        (tmp_path / name).write_bytes(data)
        out[name] = (tmp_path / name, needle)

    rng = random.Random(2)
    put("empty.safetensors", b"", "empty")
    put("one-byte.safetensors", b"\x00", "too short")
    put("random.safetensors", rng.randbytes(5000), "not a checkpoint")
    put("huge-header-length.safetensors", (2**62).to_bytes(8, "little") + real[8:], "damaged safetensors header")
    put("header-longer-than-file.safetensors", (len(real) * 2).to_bytes(8, "little") + real[8:], "truncated")
    put("picture.png", _png_bytes(), "PNG")
    buf = io.BytesIO()
    Image.new("L", (3, 3)).save(buf, format="JPEG")
    put("photo.jpg.safetensors", buf.getvalue(), "JPEG")
    zbuf = io.BytesIO()
    with __import__("zipfile").ZipFile(zbuf, "w") as z:
        z.writestr("readme.txt", "hello")
    put("archive.zip", zbuf.getvalue(), "no data.pkl")
    put("notes.txt", b"just some notes\n", "text file")
    put("run-config.json", RunConfig().to_json().encode(), "--config")
    foreign = tmp_path / "other-program.safetensors"
    safetensors.torch.save_file({"w": torch.zeros(3)}, str(foreign), metadata={"format": "pt"})
    out[foreign.name] = (foreign, "not a DDPM Studio checkpoint")
    for name, obj, needle in [
        ("list.pt", [1, 2, 3], "not a model state_dict"),
        ("tensor.pt", torch.zeros(3), "not a model state_dict"),
        ("strings.pt", {"a": "b"}, "not a model state_dict"),
    ]:
        torch.save(obj, tmp_path / name)
        out[name] = (tmp_path / name, needle)
    legacy = io.BytesIO()
    torch.save(make_model(0).state_dict(), legacy, _use_new_zipfile_serialization=False)
    put("legacy-truncated.pt", legacy.getvalue()[:300], "not a valid PyTorch file")
    folder = tmp_path / "a-folder.safetensors"
    folder.mkdir()
    out[folder.name] = (folder, "folder")
    out["missing.safetensors"] = (tmp_path / "missing.safetensors", "does not exist")
    if hasattr(os, "mkfifo"):  # opening a FIFO for reading would block forever
        os.mkfifo(tmp_path / "pipe.safetensors")
        out["pipe.safetensors"] = (tmp_path / "pipe.safetensors", "not a regular file")
    return out


def test_unrelated_and_corrupt_files_are_refused_by_every_reader(real_ckpt, tmp_path):
    cases = _unrelated_files(tmp_path, real_ckpt)
    assert len(cases) >= 18
    for name, (path, needle) in cases.items():
        for msg in _refused_by_every_reader(path):
            assert needle in msg, (name, msg)


def test_not_a_unet_state_dict_loads_but_cannot_be_sampled(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"weight": torch.zeros(2, 2), "downs.0.x": torch.zeros(1)}, path)
    assert list(load_checkpoint(path).model) == ["weight", "downs.0.x"]  # a state_dict, just not ours
    with pytest.raises(CheckpointError) as e:
        load_for_sampling(path, device="cpu")
    assert "not a U-Net" in assert_one_line_error(e, path)


def test_stored_configuration_that_does_not_validate_names_the_file(real_ckpt, tmp_path):
    import json
    import struct

    n = struct.unpack("<Q", real_ckpt[:8])[0]
    header = json.loads(real_ckpt[8 : 8 + n])
    config = json.loads(header["__metadata__"]["config"])
    config["model"]["dim"] = 6  # not a multiple of the GroupNorm groups
    config["train"]["turbo"] = True  # a setting from a newer version
    header["__metadata__"]["config"] = json.dumps(config)
    raw = json.dumps(header).encode()
    path = tmp_path / "edited.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + real_ckpt[8 + n :])
    for msg in _refused_by_every_reader(path):
        assert "configuration this DDPM Studio cannot use" in msg and "train.turbo" in msg, msg


# ---- resuming picks the newest complete checkpoint -------------------------------------------


def _run_folder_with(tmp_path: Path, real: bytes, steps=(2, 4, 6)) -> Path:
    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    for s in steps:
        (folder / f"step_{s:07d}.safetensors").write_bytes(real)
    return folder


@pytest.mark.parametrize("damage", ["cut-in-data", "cut-one-byte", "cut-in-header", "empty", "garbage-appended",
                                    "not-a-checkpoint", "folder"])
def test_latest_checkpoint_skips_an_incomplete_newest(real_ckpt, tmp_path, damage):
    folder = _run_folder_with(tmp_path, real_ckpt)
    newest = folder / "step_0000006.safetensors"
    header_end = 8 + int.from_bytes(real_ckpt[:8], "little")
    data = {
        "cut-in-data": real_ckpt[: (header_end + len(real_ckpt)) // 2],
        "cut-one-byte": real_ckpt[:-1],
        "cut-in-header": real_ckpt[: header_end // 2],
        "empty": b"",
        "garbage-appended": real_ckpt + b"\0" * 16,
        "not-a-checkpoint": _png_bytes(),
    }.get(damage)
    if data is None:
        newest.unlink()
        newest.mkdir()
    else:
        newest.write_bytes(data)
    # what killed saves leave behind, and other files that are not checkpoints
    (folder / ".step_0000008.safetensors.k3j4h5.tmp").write_bytes(real_ckpt[:1000])
    (folder / ".step_0000010.safetensors.a1b2c3.tmp").write_bytes(real_ckpt)  # complete, but never renamed
    (folder / "step_0000012.safetensors.partial").write_bytes(real_ckpt)
    (folder / "notes.txt").write_text("hi")
    picked = latest_checkpoint(tmp_path / "run")
    assert picked == folder / "step_0000004.safetensors"
    assert load_checkpoint(picked).step == 1  # and it loads in full


def test_latest_checkpoint_takes_the_newest_when_complete(real_ckpt, tmp_path):
    folder = _run_folder_with(tmp_path, real_ckpt, steps=(9, 10, 100))  # by number, not by name order
    assert latest_checkpoint(tmp_path / "run") == folder / "step_0000100.safetensors"


def test_latest_checkpoint_with_nothing_loadable_says_so(real_ckpt, tmp_path):
    folder = _run_folder_with(tmp_path, real_ckpt)
    for p in folder.iterdir():
        p.write_bytes(p.read_bytes()[:-10])
    (folder / ".step_0000008.safetensors.x.tmp").write_bytes(real_ckpt)
    with pytest.raises(CheckpointError) as e:
        latest_checkpoint(tmp_path / "run")
    msg = assert_one_line_error(e, folder)
    assert "none of the 3 checkpoints" in msg and "truncated" in msg and "start a new run" in msg

    for p in list(folder.iterdir()):
        p.unlink()
    with pytest.raises(CheckpointError, match="no checkpoint in .*start a new run"):
        latest_checkpoint(tmp_path / "run")
    with pytest.raises(CheckpointError, match="not a run folder"):
        latest_checkpoint(tmp_path)


# ---- pickles that would run code ------------------------------------------------------------


def _legacy_torch_file(*pickles: bytes) -> bytes:
    """torch.save's legacy layout: magic number, protocol, sys info, object, storage keys."""
    from torch.serialization import MAGIC_NUMBER, PROTOCOL_VERSION

    head = [pickle.dumps(MAGIC_NUMBER, protocol=2), pickle.dumps(PROTOCOL_VERSION, protocol=2),
            pickle.dumps({"protocol_version": PROTOCOL_VERSION, "little_endian": True}, protocol=2)]
    return b"".join(head + list(pickles) + [pickle.dumps([], protocol=2)])


def _zip_torch_file(payload: bytes) -> bytes:
    """A real torch.save zip whose data.pkl is replaced by `payload`."""
    import zipfile

    buf = io.BytesIO()
    torch.save(make_model(0).state_dict(), buf)
    src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = payload if info.filename.endswith("data.pkl") else src.read(info)
            dst.writestr(info, data)
    return out.getvalue()


class _Reduce:
    """Pickles as `func(*args)`: what an attacker's __reduce__ returns."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _payloads(marker: Path) -> dict:
    """name -> pickle bytes that create `marker` when unpickled by plain pickle."""
    import subprocess as sp

    import torch.storage

    touch = f"touch {marker}"
    py = f"open({str(marker)!r}, 'w').close()"
    nested = pickle.dumps(_Reduce(exec, py), protocol=2)  # for the loaders that unpickle again
    nested_torch = io.BytesIO()
    torch.save(_Reduce(exec, py), nested_torch)
    return {
        # GLOBAL (protocols 0-3) and STACK_GLOBAL (4+) imports of the classics
        "GLOBAL os.system": f"cos\nsystem\n(S'{touch}'\ntR.".encode(),
        "GLOBAL posix.system, protocol 2": pickle.dumps(_Reduce(os.system, touch), protocol=2),
        "STACK_GLOBAL builtins.eval": pickle.dumps(_Reduce(eval, py), protocol=4),
        "STACK_GLOBAL builtins.exec, protocol 5": pickle.dumps(_Reduce(exec, py), protocol=5),
        "GLOBAL __builtin__.eval (Python 2 name)": f"c__builtin__\neval\n(V{py}\ntR.".encode(),
        "STACK_GLOBAL subprocess.call": pickle.dumps(_Reduce(sp.call, ["touch", str(marker)]), protocol=4),
        "GLOBAL subprocess.check_output": pickle.dumps(_Reduce(sp.check_output, ["touch", str(marker)]), protocol=2),
        # REDUCE through functions of torch itself, which look like what a checkpoint needs
        "REDUCE torch.storage._load_from_bytes": pickle.dumps(
            _Reduce(torch.storage._load_from_bytes, nested_torch.getvalue()), protocol=2
        ),
        "REDUCE pickle.loads": pickle.dumps(_Reduce(pickle.loads, nested), protocol=2),
        # INST and OBJ build an object by calling what they import
        "INST os.system": f"(S'{touch}'\nios\nsystem\n.".encode(),
        "OBJ os.system": f"(cos\nsystem\nS'{touch}'\no.".encode(),
    }


def _wrap(kind: str, payload: bytes) -> bytes:
    if kind == "zip":
        return _zip_torch_file(payload)
    if kind == "legacy":
        return _legacy_torch_file(payload)
    # legacy layout with the payload as the *second* pickle (the protocol number), which
    # a scan that stops at the first pickle not starting with \x80 used to let through
    from torch.serialization import MAGIC_NUMBER

    return pickle.dumps(MAGIC_NUMBER, protocol=2) + payload + b"\x80\x02]q\x00." * 3


@pytest.mark.parametrize("kind", ["zip", "legacy", "legacy-second-pickle"])
def test_code_in_every_pickle_position_is_refused_before_torch_load(tmp_path, monkeypatch, kind):
    marker = tmp_path / "pwned"
    payloads = _payloads(marker)
    assert len(payloads) == 11
    for name, payload in payloads.items():
        path = tmp_path / f"evil-{len(name)}.pt"
        path.write_bytes(_wrap(kind, payload))

        # the file is a real attack: torch.load without weights_only runs it
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                torch.load(path, weights_only=False)
            except Exception:
                pass  # after the payload ran, the rest of the file need not make sense
        assert marker.exists(), f"{name}: the payload does not run under torch.load"
        marker.unlink()

        with monkeypatch.context() as m:
            m.setattr(torch, "load", lambda *a, **k: pytest.fail(f"torch.load reached with {name}"))
            for msg in _refused_by_every_reader(path):
                assert msg.startswith("refused: "), (name, msg)
                assert "re-save as safetensors" in msg, (name, msg)
        assert not marker.exists(), f"{name}: code ran"


def test_refusal_names_the_import(tmp_path, monkeypatch):
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load reached"))
    for name, payload in _payloads(tmp_path / "pwned").items():
        path = tmp_path / "evil.pt"
        path.write_bytes(_wrap("zip", payload))
        with pytest.raises(CheckpointError) as e:
            load_checkpoint(path)
        dotted = name.split()[1].rstrip(",")
        module, attr = dotted.rsplit(".", 1)
        if module == "__builtin__":
            module = "builtins"  # reported under the name Python 3 imports
        if name.startswith("GLOBAL posix"):
            module = os.system.__module__
        assert f"({module}.{attr})" in str(e.value), (name, str(e.value))


def test_legacy_tar_format_is_refused(tmp_path, monkeypatch):
    import tarfile

    path = tmp_path / "old.pt"
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT, encoding="latin-1") as tar:
        info = tarfile.TarInfo("\x80pickle")  # starts with \x80: looks like a pickle at first
        data = pickle.dumps({"w": 1}, protocol=2)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    assert path.read_bytes()[:1] == b"\x80"
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load reached"))
    for msg in _refused_by_every_reader(path):
        assert "legacy tar format" in msg


# ---- a checkpoint whose configuration does not fit ---------------------------------------------

MISMATCHES = {
    # what the stored configuration says, for weights of the tiny 1-channel (1, 2) U-Net
    "channels": lambda c: (setattr(c.model, "channels", 3), setattr(c.data, "channels", 3)),
    "levels": lambda c: setattr(c.model, "dim_mults", (1, 2, 2)),
    "width": lambda c: setattr(c.model, "dim", 8),
    "self-conditioning": lambda c: setattr(c.model, "self_condition", True),
    # a U-Net of some 10^11 parameters (terabytes), were it built
    "huge": lambda c: (setattr(c.model, "dim", 1024), setattr(c.model, "dim_mults", (64, 64))),
}


def _with_config(real: bytes, tmp_path: Path, change) -> Path:
    """The real checkpoint's weights and state, saved under a changed configuration."""
    src = tmp_path / "src.safetensors"
    src.write_bytes(real)
    ck = load_checkpoint(src)
    cfg = RunConfig.from_dict(ck.config)
    change(cfg)
    return save_checkpoint(
        tmp_path / "mismatch.safetensors", config=cfg.validate().to_dict(), model=ck.model, ema=ck.ema,
        optimizer=ck.optimizer, rng=ck.rng, step=ck.step, epoch=ck.epoch, extra=ck.extra,
    )


@pytest.mark.parametrize("kind", sorted(MISMATCHES))
def test_config_that_does_not_fit_the_weights_gives_a_mismatch_message(real_ckpt, tmp_path, kind, monkeypatch):
    from ddpm_core import model_io
    from ddpm_core.shapes import make_shapes
    from ddpm_core.training import Trainer, read_training_checkpoint

    path = _with_config(real_ckpt, tmp_path, MISMATCHES[kind])
    cfg = RunConfig.from_dict(load_checkpoint(path).config)
    images = make_shapes(8, cfg.data.image_size, cfg.data.channels)
    # Found out before the model the configuration describes is built, or the data loaded.
    monkeypatch.setattr(Trainer, "__init__", lambda *a, **k: pytest.fail("built the trainer"))
    monkeypatch.setattr(model_io, "build_unet", lambda *a: pytest.fail("built the model"))
    for load in (lambda: Trainer.from_checkpoint(path, images=images, device="cpu"),
                 lambda: read_training_checkpoint(path),
                 lambda: load_for_sampling(path, device="cpu")):
        with pytest.raises(CheckpointError) as e:
            load()
        msg = assert_one_line_error(e, path)
        assert "does not fit this model" in msg and "first:" in msg and "the file is damaged or was edited" in msg


@pytest.mark.parametrize("size,channels", [(16, 1), (8, 3)], ids=["image-size", "channels"])
def test_training_data_that_does_not_fit_the_checkpoint(real_ckpt, tmp_path, size, channels):
    from ddpm_core.errors import ConfigError
    from ddpm_core.shapes import make_shapes
    from ddpm_core.training import Trainer

    path = tmp_path / "c.safetensors"
    path.write_bytes(real_ckpt)
    with pytest.raises(ConfigError) as e:
        Trainer.from_checkpoint(path, images=make_shapes(8, size, channels), device="cpu")
    msg = str(e.value)
    assert "\n" not in msg and f"({channels}, {size}, {size})" in msg and "(1, 8, 8)" in msg


def test_bare_state_dict_needs_an_image_size_that_fits(tmp_path):
    from ddpm_core.config import ModelConfig
    from ddpm_core.errors import ConfigError
    from ddpm_core.unet import build_unet

    path = tmp_path / "notebook.pt"
    torch.save(build_unet(ModelConfig(dim=4, dim_mults=(1, 2, 2, 2))).state_dict(), path)
    with pytest.raises(CheckpointError) as e:  # the 28-pixel default cannot be halved 3 times
        load_for_sampling(path, device="cpu")
    msg = assert_one_line_error(e, path)
    assert "4 levels" in msg and "a multiple of 8" in msg
    with pytest.raises(ConfigError, match=r"data.image_size=30 must be divisible by 8"):
        load_for_sampling(path, device="cpu", image_size=30)
    loaded = load_for_sampling(path, device="cpu", image_size=32)
    assert loaded.config.model.dim_mults == (1, 2, 2, 2) and loaded.config.data.image_size == 32
