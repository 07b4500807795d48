"""Checkpoints: exact round trips, atomic writes, and refusing everything that is not a
safe checkpoint with a one-line CheckpointError that names the file."""

from __future__ import annotations

import io
import os
import pickle
import random
import subprocess
import sys
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
    check_state_dict_fits,
    describe_checkpoint,
    load_checkpoint,
    read_checkpoint_config,
    save_checkpoint,
    state_dict_mismatch,
)
from ddpm_core.config import RunConfig
from ddpm_core.errors import CheckpointError


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
