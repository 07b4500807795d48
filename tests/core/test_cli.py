"""The `ddpm` command line, end to end on the built-in data with a tiny model."""

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from ddpm_core.cli import main

TINY = [
    "--dim", "8", "--dim-mults", "1,2", "--image-size", "8", "--timesteps", "20",
    "--batch-size", "8", "--limit", "64", "--preview-every", "3", "--checkpoint-every", "4", "--device", "cpu",
]  # fmt: skip


def run_cli(*args, cwd=None):
    """Run the real entry point in a fresh interpreter, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "ddpm_core.cli", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def test_train_then_sample_png_and_gif(tmp_path):
    run = tmp_path / "run"
    r = run_cli("train", *TINY, "--steps", "6", "--out", run)
    assert r.returncode == 0, r.stderr
    assert "step 6/6" in r.stdout and "done: step 6" in r.stdout
    assert (run / "config.json").is_file()
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [1, 2, 3, 4, 5, 6]
    assert sorted(p.name for p in (run / "previews").iterdir()) == ["step_0000003.png", "step_0000006.png"]
    ckpts = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert ckpts == ["step_0000004.safetensors", "step_0000006.safetensors"]

    png, gif = tmp_path / "s.png", tmp_path / "d.gif"
    r = run_cli("sample", run, "--png", png, "--gif", gif, "-n", "4", "--sampler", "ddim", "--steps", "5", "--seed", "3")
    assert r.returncode == 0, r.stderr
    with Image.open(png) as im:
        im.verify()
    with Image.open(png) as im:
        assert im.format == "PNG" and im.width > 16
    with Image.open(gif) as im:
        assert im.format == "GIF" and im.n_frames == 6  # 5 DDIM steps' x_t, then the final x_0
        assert im.info.get("loop") == 0

    r = run_cli("info", run / "checkpoints" / "step_0000006.safetensors")
    assert r.returncode == 0 and "6" in r.stdout


def test_resume_continues_the_run(tmp_path):
    run = tmp_path / "run"
    assert main(["train", *TINY, "--steps", "4", "--preview-every", "0", "--out", str(run)]) == 0
    assert main(["train", "--resume", str(run), "--steps", "6"]) == 0
    rows = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows == [1, 2, 3, 4, 5, 6]


def test_same_seed_same_samples(tmp_path):
    run = tmp_path / "run"
    assert main(["train", *TINY, "--steps", "2", "--preview-every", "0", "--out", str(run)]) == 0
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    for out in (a, b):
        assert main(["sample", str(run), "--png", str(out), "-n", "2", "--sampler", "ddim", "--steps", "3"]) == 0
    assert a.read_bytes() == b.read_bytes()


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["train", "--lr", "abc"], "invalid float"),
        (["train", "--steps", "0"], "at least 1"),
        (["train", "--dim-mults", "1,x"], "comma-separated"),
        (["train", "--schedule", "wiggly", "--steps", "1"], "schedule.name"),
        (["train", "--dataset", "folder", "--steps", "1"], "data.root"),
        (["train", "--image-size", "30", "--dim-mults", "1,2,4", "--steps", "1"], "divisible"),
        (["train", "--config", "/nonexistent/cfg.json"], "does not exist"),
        (["sample", "/nonexistent/model.safetensors"], "nonexistent"),
        (["train", "--device", "cuda", "--steps", "1"], "cuda"),
        (["bogus"], "invalid choice"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_2(argv, needle, capsys):
    with pytest.raises(SystemExit) as exc:
        code = main(argv)
        raise SystemExit(code)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert needle in err
    assert "Traceback" not in err


def test_bad_config_file(tmp_path, capsys):
    cfg = tmp_path / "c.json"
    cfg.write_text('{"train": {"batch_size": -3}}')
    assert main(["train", "--config", str(cfg)]) == 2
    assert "train.batch_size" in capsys.readouterr().err
    cfg.write_text("{not json")
    assert main(["train", "--config", str(cfg)]) == 2
    assert "not valid JSON" in capsys.readouterr().err


def test_compile_on_the_cpu_trains_without_it_and_says_so(tmp_path, capsys):
    assert main(["train", *TINY, "--steps", "1", "--compile", "--out", str(tmp_path / "run")]) == 0
    assert "compiling (--compile, train.compile) is used on CUDA GPUs only" in capsys.readouterr().out


def test_save_config_round_trip(tmp_path):
    out = tmp_path / "cfg.json"
    assert main(["train", *TINY, "--schedule", "cosine", "--save-config", str(out)]) == 0
    d = json.loads(out.read_text())
    assert d["schedule"]["name"] == "cosine" and d["model"]["dim_mults"] == [1, 2]
    assert d["train"]["compile"] is False
    assert main(["train", *TINY, "--compile", "--save-config", str(out)]) == 0
    assert json.loads(out.read_text())["train"]["compile"] is True
    assert main(["train", "--config", str(out), "--no-compile", "--save-config", str(out)]) == 0
    assert json.loads(out.read_text())["train"]["compile"] is False


def test_forward_gif_from_shapes_and_from_an_image(tmp_path):
    out = tmp_path / "f.gif"
    assert main(["forward", "--gif", str(out), "-n", "2", "--image-size", "16", "--frames", "7"]) == 0
    with Image.open(out) as im:
        assert im.n_frames == 7
    photo = tmp_path / "photo.png"
    Image.new("RGB", (40, 30), (200, 40, 40)).save(photo)
    assert main(["forward", "--image", str(photo), "--gif", str(out), "--schedule", "cosine", "--frames", "4"]) == 0
    with Image.open(out) as im:
        assert im.n_frames == 4
    assert main(["forward", "--image", str(tmp_path / "missing.png"), "--gif", str(out)]) == 2


# ---- "Trust": bad checkpoints, incomplete run folders, mismatches: one line, exit 2 ----------

import io  # noqa: E402
import random  # noqa: E402
import zipfile  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from ddpm_core.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from ddpm_core.config import RunConfig  # noqa: E402


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run folder trained for 4 steps with checkpoints at steps 2 and 4."""
    run = tmp_path_factory.mktemp("trained") / "run"
    argv = ["train", *TINY, "--steps", "4", "--preview-every", "0", "--checkpoint-every", "2", "--out", str(run)]
    assert main(argv) == 0
    return run


def one_line_exit_2(argv, capsys, *needles):
    capsys.readouterr()
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:  # argparse refusals
        code = e.code
    err = capsys.readouterr().err
    assert code == 2, (argv, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert str(needle) in lines[0], (needle, lines[0])
    return lines[0]


def _bad_checkpoints(folder: Path, real: bytes) -> dict:
    header_end = 8 + int.from_bytes(real[:8], "little")
    rng = random.Random(3)
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w") as z:
        z.writestr("a.txt", "x")
    png = io.BytesIO()
    Image.new("RGB", (4, 4)).save(png, format="PNG")
    evil = io.BytesIO()
    torch.save({"w": torch.zeros(1), "x": _Exec("open('/never', 'w')")}, evil)
    files = {
        "empty.safetensors": b"",
        "one-byte.safetensors": b"\x07",
        "cut-in-header.safetensors": real[: header_end // 2],
        "cut-in-data.safetensors": real[: (header_end + len(real)) // 2],
        "cut-last-byte.safetensors": real[:-1],
        "huge-header-length.safetensors": (2**63).to_bytes(8, "little") + real[8:],
        "random.safetensors": rng.randbytes(3000),
        "image.png": png.getvalue(),
        "archive.zip": zbuf.getvalue(),
        "notes.txt": b"hello\n",
        "evil.pt": evil.getvalue(),
    }
    out = {}
    for name, data in files.items():
        (folder / name).write_bytes(data)
        out[name] = folder / name
    import safetensors.torch

    out["other-program.safetensors"] = folder / "other-program.safetensors"
    safetensors.torch.save_file({"w": torch.zeros(2)}, str(out["other-program.safetensors"]))
    torch.save([1, 2], folder / "list.pt")
    out["list.pt"] = folder / "list.pt"
    (folder / "not-a-run").mkdir()
    out["not-a-run"] = folder / "not-a-run"
    return out


class _Exec:
    def __init__(self, code):
        self.code = code

    def __reduce__(self):
        return exec, (self.code,)


def test_bad_checkpoint_files_on_the_command_line(trained, tmp_path, capsys):
    real = (trained / "checkpoints" / "step_0000004.safetensors").read_bytes()
    cases = _bad_checkpoints(tmp_path, real)
    assert len(cases) == 14
    for name, path in cases.items():
        for argv in (["sample", path, "--png", tmp_path / "s.png"], ["info", path], ["train", "--resume", path]):
            one_line_exit_2(argv, capsys, path)
    assert not (tmp_path / "s.png").exists() and not Path("/never").exists()


def test_resume_and_sample_take_the_newest_complete_checkpoint(trained, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained, run)
    newest = run / "checkpoints" / "step_0000004.safetensors"
    newest.write_bytes(newest.read_bytes()[:-100])  # cut in the tensor data: the header is intact
    (run / "checkpoints" / ".step_0000006.safetensors.zz9.tmp").write_bytes(b"killed mid-save")

    capsys.readouterr()
    assert main(["info", str(run)]) == 0
    assert "step_0000002.safetensors" in capsys.readouterr().out
    assert main(["train", "--resume", str(run), "--steps", "3"]) == 0
    out = capsys.readouterr().out
    assert f"resuming {run / 'checkpoints' / 'step_0000002.safetensors'} at step 2" in out
    assert load_checkpoint(run / "checkpoints" / "step_0000003.safetensors").step == 3
    assert not list((run / "checkpoints").glob(".*.tmp"))  # the run folder cleaned up after the kill

    for p in (run / "checkpoints").iterdir():
        p.write_bytes(b"")
    one_line_exit_2(["sample", run, "--png", tmp_path / "s.png"], capsys, "none of the", "complete")
    one_line_exit_2(["train", "--resume", run], capsys, "none of the", "start a new run")


def test_checkpoint_that_does_not_fit_on_the_command_line(trained, tmp_path, capsys):
    good = trained / "checkpoints" / "step_0000004.safetensors"
    ck = load_checkpoint(good)
    cfg = RunConfig.from_dict(ck.config)
    cfg.model.channels = cfg.data.channels = 3  # says RGB; the weights are greyscale
    bad = save_checkpoint(tmp_path / "rgb.safetensors", config=cfg.to_dict(), model=ck.model, ema=ck.ema,
                          optimizer=ck.optimizer, rng=ck.rng, step=ck.step, extra=ck.extra)
    one_line_exit_2(["sample", bad, "--png", tmp_path / "s.png"], capsys, bad, "does not fit this model")
    one_line_exit_2(["train", "--resume", bad], capsys, bad, "does not fit this model")
    # changing the architecture of a run on resume
    one_line_exit_2(["train", "--resume", good, "--channels", "3"], capsys, "model settings")
    one_line_exit_2(["train", "--resume", good, "--dim-mults", "1,2,4"], capsys, "model settings")
    # an image size the U-Net cannot halve down
    one_line_exit_2(["sample", good, "--image-size", "7", "--png", tmp_path / "s.png"], capsys, "divisible")


@pytest.mark.parametrize("argv,needle", [
    (["sample", "X", "-n", "5000"], "more than 1,024"),
    (["sample", "X", "--seed", str(2**64)], "not a seed"),
    (["sample", "X", "--seed", "-1"], "not a seed"),
    (["sample", "X", "--image-size", "4096"], "more than 512"),
    (["forward", "--image-size", "100000"], "more than 512"),
    (["forward", "-n", "100000"], "more than 256"),
    (["forward", "--frames", "100000"], "more than 1,000"),
    (["forward", "--timesteps", "10000000"], "more than 10,000"),
    (["forward", "--seed", str(2**70)], "not a seed"),
    (["sample", "X", "--gif-duration", "10000000"], "more than 655,350"),
])
def test_absurd_sizes_and_seeds_are_refused_before_any_work(argv, needle, capsys, tmp_path):
    argv = [str(tmp_path / "none.safetensors") if a == "X" else a for a in argv]
    one_line_exit_2(argv, capsys, needle)


def test_output_path_errors_name_the_path_not_a_temp_file(trained, tmp_path, capsys):
    good = trained / "checkpoints" / "step_0000004.safetensors"
    folder = tmp_path / "out"
    folder.mkdir()
    line = one_line_exit_2(["sample", good, "-n", "1", "--sampler", "ddim", "--steps", "2", "--png", folder],
                           capsys, folder, "is a folder")
    assert ".tmp" not in line
    line = one_line_exit_2(["forward", "--frames", "2", "--image-size", "8", "-n", "1", "--gif", folder],
                           capsys, folder, "is a folder")
    assert ".tmp" not in line
    assert list(folder.iterdir()) == []  # no temporary file left behind either


def test_error_for_a_file_name_with_a_line_break_stays_on_one_line(tmp_path, capsys):
    odd = tmp_path / "two\nlines.safetensors"
    odd.write_bytes(b"")
    one_line_exit_2(["info", odd], capsys, "two\\nlines", "empty")


def test_bad_image_folders_on_the_command_line(tmp_path, capsys):
    broken = tmp_path / "broken"
    (broken / "cats").mkdir(parents=True)
    (broken / "cats" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (broken / "b.jpg").write_bytes(b"")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    cases = {
        tmp_path / "missing": "does not exist",
        tmp_path / "notes.txt": "is a file, not a folder",
        empty: "no images found",
        broken: "none of the 2 image files",
    }
    (tmp_path / "notes.txt").write_text("x")
    for root, needle in cases.items():
        capsys.readouterr()
        argv = ["train", "--dataset", "folder", "--data-root", str(root), *TINY, "--steps", "1",
                "--out", str(tmp_path / "run")]
        assert main(argv) == 2
        err = capsys.readouterr().err
        # a progress line may come first ("reading images (0/2)"), but ends before the error
        last = err.rstrip("\n").split("\n")[-1]
        assert last.startswith("ddpm train: error: ") and needle in last and str(root) in last, err
        assert "MB" not in err and "Traceback" not in err, err  # file counts are not megabytes


def _hashes(folder: Path) -> dict:
    return {p.relative_to(folder): hashlib.sha1(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()}


def test_a_new_run_never_writes_into_another_runs_folder(trained, tmp_path, capsys, monkeypatch):
    # --out at an existing run: its checkpoints would be pruned, its config and metrics
    # replaced; refused before any data is loaded, and every file stays as it was.
    before = _hashes(trained)
    one_line_exit_2(["train", *TINY, "--steps", "1", "--out", trained], capsys,
                    trained, "already holds a run", f"--resume {trained}")
    assert _hashes(trained) == before
    afile = tmp_path / "notes.txt"
    afile.write_text("mine")
    one_line_exit_2(["train", *TINY, "--steps", "1", "--out", afile], capsys, afile, "is a file")
    # Two runs started in the same second get two folders.
    monkeypatch.chdir(tmp_path)
    assert main(["train", *TINY, "--steps", "1", "--preview-every", "0"]) == 0
    assert main(["train", *TINY, "--steps", "1", "--preview-every", "0"]) == 0
    assert len(list((tmp_path / "runs").iterdir())) == 2


def test_a_run_killed_before_its_first_checkpoint_is_named_as_such(tmp_path, capsys):
    # Its folder has a config and metrics but nothing to resume from: "continue it with
    # --resume" would be a dead end, so the message says what can be done instead.
    killed = tmp_path / "killed"
    (killed / "checkpoints").mkdir(parents=True)
    (killed / "config.json").write_text("{}")
    (killed / "metrics.jsonl").write_text('{"step": 1}\n')
    before = _hashes(killed)
    one_line_exit_2(["train", *TINY, "--steps", "1", "--out", killed], capsys,
                    killed, "saved no checkpoint", "cannot be resumed", "choose another --out", f"delete {killed}")
    assert _hashes(killed) == before


def test_new_run_folders_are_claimed_when_made(tmp_path, monkeypatch):
    # Two runs started in the same second, in two processes: each mkdir claims its name.
    import datetime

    from ddpm_core import run_folder

    class SameSecond(datetime.datetime):
        @classmethod
        def now(cls, tz=None):
            return cls(2026, 11, 26, 12, 0, 0)

    monkeypatch.setattr(run_folder.datetime, "datetime", SameSecond)
    made = [run_folder.new_run_folder(tmp_path / "runs") for _ in range(3)]
    assert [p.name for p in made] == ["20261126-120000", "20261126-120000-2", "20261126-120000-3"]
    assert all(p.is_dir() for p in made)


def test_resume_by_a_relative_name_inside_checkpoints(trained, tmp_path, capsys, monkeypatch):
    # 'ddpm train --resume step_0000004.safetensors' typed in the run's checkpoints/ folder
    # continues that run: no new run folder is made inside checkpoints/.
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    monkeypatch.chdir(run / "checkpoints")
    assert main(["train", "--resume", "step_0000004.safetensors", "--steps", "5", "--preview-every", "0"]) == 0
    assert "not in a run folder" not in capsys.readouterr().out
    assert (run / "checkpoints" / "step_0000005.safetensors").is_file()
    assert not (run / "checkpoints" / "runs").exists()


def test_resuming_a_loose_checkpoint_leaves_its_folder_alone(trained, tmp_path, capsys, monkeypatch):
    # A checkpoint copied into a folder of one's own: the resumed run's files go to a new
    # run folder, not beside it (its config.json and metrics.jsonl would be replaced).
    mine = tmp_path / "mine"
    mine.mkdir()
    shutil.copy(trained / "checkpoints" / "step_0000004.safetensors", mine / "model.safetensors")
    (mine / "config.json").write_text('{"my": "settings"}')
    before = _hashes(mine)
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["train", "--resume", str(mine / "model.safetensors"), "--steps", "5", "--preview-every", "0"]) == 0
    out = capsys.readouterr().out
    assert "not in a run folder" in out
    assert _hashes(mine) == before
    (run,) = (tmp_path / "runs").iterdir()
    assert (run / "checkpoints" / "step_0000005.safetensors").is_file()


def test_resume_and_sample_flags_that_would_be_ignored_are_refused(trained, tmp_path, capsys):
    good = trained / "checkpoints" / "step_0000004.safetensors"
    before = _hashes(trained)
    one_line_exit_2(["train", "--resume", trained], capsys, "is at step 4", "--steps more than 4")
    one_line_exit_2(["train", "--resume", trained, "--config", tmp_path / "c.json"], capsys, "--config", "new runs")
    assert _hashes(trained) == before
    one_line_exit_2(["sample", good, "--sampler", "ddpm", "--steps", "5"], capsys, "--steps is for --sampler ddim")


def test_an_output_that_cannot_be_written_is_refused_before_the_work(trained, tmp_path, capsys, monkeypatch):
    from ddpm_core import samplers

    monkeypatch.setattr(samplers, "sample_loop", lambda *a, **k: pytest.fail("sampled first"))
    good = trained / "checkpoints" / "step_0000004.safetensors"
    one_line_exit_2(["sample", good, "--png", tmp_path], capsys, "cannot write PNG", "give a file name")
    afile = tmp_path / "a.txt"
    afile.write_text("x")
    one_line_exit_2(["sample", good, "--gif", afile / "d.gif"], capsys, "cannot write GIF", "a part of the path is a file")
    if hasattr(os, "mkfifo"):
        pipe = tmp_path / "pipe.gif"
        os.mkfifo(pipe)
        one_line_exit_2(["forward", "--frames", "2", "--image-size", "8", "--gif", pipe], capsys,
                        "a device, a pipe or a socket")
        assert stat.S_ISFIFO(os.stat(pipe).st_mode)


def test_numbers_of_thousands_of_digits_get_a_short_message(trained, tmp_path, capsys):
    # Python refuses to convert integers of over 4,300 digits (a ValueError of its own) and
    # to print them; the messages must still be one short line.
    huge = "9" * 5000
    config = tmp_path / "big.json"
    config.write_text('{"model": {"dim": ' + huge + "}}")
    line = one_line_exit_2(["train", "--config", config], capsys, config)
    assert len(line) < 300
    line = one_line_exit_2(["train", "--seed", huge], capsys, "is not a whole number")
    assert len(line) < 300
    config.write_text('{"model": {"dim": ' + "9" * 4000 + "}}")  # converts, is out of range
    line = one_line_exit_2(["train", "--config", config], capsys, "model.dim=a number of about 4,000 digits")
    assert len(line) < 300
    # In a checkpoint's stored configuration: refused, and a run folder's newest good
    # checkpoint is still found past it.
    ck = load_checkpoint(trained / "checkpoints" / "step_0000004.safetensors")
    raw = bytearray((trained / "checkpoints" / "step_0000004.safetensors").read_bytes())
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    cfg = json.loads(header["__metadata__"]["config"])
    header["__metadata__"]["config"] = json.dumps(cfg).replace('"dim": 8', '"dim": ' + huge)
    text = json.dumps(header).encode()
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(len(text).to_bytes(8, "little") + text + bytes(raw[8 + n :]))
    line = one_line_exit_2(["info", bad], capsys, bad, "corrupt header")
    assert len(line) < 400
    assert ck.step == 4


def test_running_out_of_memory_outside_a_training_step_is_one_line(tmp_path, capsys, monkeypatch):
    from ddpm_core import training

    def no_room(*args, **kwargs):  # as PyTorch's CPU allocator says it, building a huge model
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 154618822656 bytes.")

    monkeypatch.setattr(training.Trainer, "__init__", no_room)
    one_line_exit_2(["train", *TINY, "--steps", "1", "--out", tmp_path / "run"], capsys,
                    "ran out of memory", "smaller image size")


def test_weights_that_are_not_numbers_are_refused_for_sampling(trained, tmp_path, capsys):
    ck = load_checkpoint(trained / "checkpoints" / "step_0000004.safetensors")
    weights = dict(ck.model)
    weights["final_conv.weight"] = torch.full_like(weights["final_conv.weight"], float("nan"))
    bad = tmp_path / "diverged.pt"
    torch.save(weights, bad)
    one_line_exit_2(["sample", bad, "--image-size", "8", "--png", tmp_path / "s.png"], capsys,
                    "not numbers", "final_conv.weight")


# ---- first use: default file names, help texts, output sizes, the screenshot script -------------

FAST_SAMPLE = ["-n", "1", "--sampler", "ddim", "--steps", "2"]


def test_sample_without_an_output_never_replaces_a_file(trained, tmp_path, capsys, monkeypatch):
    # `ddpm sample RUN` writes samples.png by default; a second run, or a samples.png of the
    # user's, must not be replaced: the next free samples-N.png is written and named.
    good = trained / "checkpoints" / "step_0000004.safetensors"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "samples.png").write_bytes(b"mine")
    (tmp_path / "samples-2.png").symlink_to(tmp_path / "elsewhere.png")  # dangling: still taken
    capsys.readouterr()
    assert main(["sample", str(good), *FAST_SAMPLE]) == 0
    assert "wrote samples-3.png (samples.png already exists and was kept)" in capsys.readouterr().out
    assert main(["sample", str(good), *FAST_SAMPLE]) == 0
    assert "wrote samples-4.png" in capsys.readouterr().out
    assert (tmp_path / "samples.png").read_bytes() == b"mine"
    assert not (tmp_path / "elsewhere.png").exists()
    for name in ("samples-3.png", "samples-4.png"):
        with Image.open(tmp_path / name) as im:
            assert im.format == "PNG"
    # A name the user gives is replaced, as asked.
    assert main(["sample", str(good), *FAST_SAMPLE, "--png", "samples.png"]) == 0
    with Image.open(tmp_path / "samples.png") as im:
        assert im.format == "PNG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["samples-2.png", "samples-3.png", "samples-4.png",
                                                          "samples.png"]


def test_a_default_png_that_fails_to_write_leaves_no_empty_file(trained, tmp_path, capsys, monkeypatch):
    from ddpm_core import export
    from ddpm_core.errors import OutputError

    def full_disk(*args, **kwargs):
        raise OutputError("cannot write PNG samples.png: No space left on device — the disk is full")

    monkeypatch.setattr(export, "save_png_grid", full_disk)
    monkeypatch.chdir(tmp_path)
    one_line_exit_2(["sample", trained / "checkpoints" / "step_0000004.safetensors", *FAST_SAMPLE], capsys,
                    "the disk is full")
    assert list(tmp_path.iterdir()) == []  # the name it had taken is given back


def _help_entries(text: str) -> dict:
    """argparse help -> {"--flag": "its whole entry on one line"} (entries wrap over lines)."""
    entries, current = {}, None
    for line in text.splitlines():
        if line.startswith("  -"):
            current = line.split()[0].rstrip(",")
            entries[current] = line
        elif current is not None and line.startswith("   "):
            entries[current] += " " + line
        else:
            current = None
    return {flag: " ".join(entry.split()) for flag, entry in entries.items()}


def test_train_help_names_the_built_in_defaults(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--help"])
    assert exc.value.code == 0
    entries = _help_entries(capsys.readouterr().out)
    cfg = RunConfig()
    expected = {
        "--dataset": cfg.data.dataset,
        "--image-size": cfg.data.image_size,
        "--channels": cfg.data.channels,
        "--limit": "all",  # None in the config: every image
        "--dim": cfg.model.dim,
        "--dim-mults": ",".join(map(str, cfg.model.dim_mults)),  # as it is typed: 1,2
        "--schedule": cfg.schedule.name,
        "--timesteps": cfg.schedule.timesteps,
        "--loss": cfg.train.loss,
        "--batch-size": cfg.train.batch_size,
        "--lr": f"{cfg.train.lr:g}",
        "--steps": cfg.train.steps,
        "--ema-decay": f"{cfg.train.ema_decay:g}",
        "--preview-every": cfg.train.preview_every,
        "--checkpoint-every": cfg.train.checkpoint_every,
        "--seed": cfg.train.seed,
        "--device": cfg.train.device,
        "--precision": cfg.train.precision,
        "--compile": "on" if cfg.train.compile else "off",
        "--autosave-minutes": f"{cfg.train.autosave_minutes:g}",
        "--no-flip": f"flips {'on' if cfg.data.flip else 'off'}",
        "--no-ema": f"EMA {'on' if cfg.train.ema else 'off'}",
    }
    for flag, value in expected.items():
        assert f"(default: {value})" in entries[flag], (flag, entries[flag])


def test_sample_and_forward_help_show_their_defaults(capsys):
    for command, flag, value in [("sample", "--num", 16), ("sample", "--gif-duration", 40),
                                 ("forward", "--image-size", 64), ("forward", "--timesteps", 300)]:
        with pytest.raises(SystemExit):
            main([command, "--help"])
        entries = _help_entries(capsys.readouterr().out)
        entry = next(e for f, e in entries.items() if f == flag or f"{flag} " in e)
        assert f"(default: {value})" in entry, (command, flag, entry)


def test_sample_png_grid_is_as_large_as_the_gif(trained, tmp_path, monkeypatch):
    good = trained / "checkpoints" / "step_0000004.safetensors"
    png, gif = tmp_path / "s.png", tmp_path / "d.gif"
    assert main(["sample", str(good), "-n", "4", "--sampler", "ddim", "--steps", "2",
                 "--png", str(png), "--gif", str(gif)]) == 0
    with Image.open(png) as p, Image.open(gif) as g:
        assert p.size == g.size
        assert p.width > 2 * 8 * 2 + 6  # enlarged more than twice: 2 images of 8 px a row, padding 2
    monkeypatch.chdir(tmp_path)
    assert main(["sample", str(good), "-n", "4", "--sampler", "ddim", "--steps", "2"]) == 0
    with Image.open(tmp_path / "samples.png") as p, Image.open(gif) as g:
        assert p.size == g.size


SCREENSHOT = Path(__file__).resolve().parents[2] / "scripts" / "screenshot.py"


def test_screenshot_script_help_writes_nothing(tmp_path):
    r = subprocess.run([sys.executable, str(SCREENSHOT), "--help"], capture_output=True, text=True, cwd=tmp_path,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert "usage:" in r.stdout and "wait_s" in r.stdout
    assert list(tmp_path.iterdir()) == []  # no file named --help


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the display check is for Linux")
def test_screenshot_script_without_a_display_says_to_use_xvfb(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    r = subprocess.run([sys.executable, str(SCREENSHOT), str(tmp_path / "s.png"), "1"], capture_output=True,
                       text=True, cwd=tmp_path, env=env, timeout=60)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "xvfb-run -a" in lines[0], r.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_sample_line_printed_after_training_works_as_copied(tmp_path, capsys):
    # The suggestion writes into the run's own folder (quoted: here its name has a space),
    # so pasting it never replaces a samples.png of the user's.
    import shlex

    run = tmp_path / "my run"
    assert main(["train", *TINY, "--steps", "2", "--preview-every", "0", "--out", str(run)]) == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("sample it:"))
    argv = shlex.split(line.split(":", 1)[1])
    assert argv[:2] == ["ddpm", "sample"]
    assert main(argv[1:] + ["-n", "2", "--sampler", "ddim", "--steps", "2"]) == 0
    assert (run / "samples.png").is_file() and (run / "denoise.gif").is_file()


def test_the_command_line_starts_without_torch_so_ctrl_c_is_clean():
    # `import torch` takes seconds; done while the entry point itself is being imported, a
    # Ctrl+C there could only end in a traceback. The commands import it inside main(),
    # whose handler turns the interrupt into one line and exit 130.
    code = "import sys, ddpm_core.cli, ddpm_core; print('torch' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "False", r.stderr
