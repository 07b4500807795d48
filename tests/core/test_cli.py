"""The `ddpm` command line, end to end on the built-in data with a tiny model."""

import json
import subprocess
import sys

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


def test_save_config_round_trip(tmp_path):
    out = tmp_path / "cfg.json"
    assert main(["train", *TINY, "--schedule", "cosine", "--save-config", str(out)]) == 0
    d = json.loads(out.read_text())
    assert d["schedule"]["name"] == "cosine" and d["model"]["dim_mults"] == [1, 2]


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
