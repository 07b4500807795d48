"""PNG grids and GIFs: exact pixel values, sizes, frame counts, looping."""

from __future__ import annotations


import errno

import numpy as np
import pytest
import torch

from ddpm_core.schedules import NoiseSchedule
from PIL import Image

import ddpm_core.atomic as atomic
from ddpm_core.errors import OutputError
from ddpm_core.export import (
    check_output,
    forward_timesteps,
    grid_image,
    save_forward_gif,
    save_png_grid,
    save_trajectory_gif,
    to_uint8,
    trajectory_frame_indices,
)


def rand_images(b, c, h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, c, h, w, generator=g) * 2 - 1


def gif_frames(path, mode):
    """Every frame of a GIF as a uint8 array, plus the per-frame durations."""
    frames, durations = [], []
    with Image.open(path) as im:
        for k in range(im.n_frames):
            im.seek(k)
            frames.append(np.asarray(im.convert(mode)))
            durations.append(im.info.get("duration"))
    return frames, durations


def expected_grid(x, **kw):
    return np.asarray(grid_image(x, **kw))


# ---- to_uint8 and grids ------------------------------------------------------------------


def test_to_uint8_known_values():
    x = torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0, 2.0, -3.0, float("nan")]).view(1, 1, 1, 8)
    want = np.array([0, 64, 128, 191, 255, 255, 0, 128], dtype=np.uint8)  # 127.5 rounds to even
    out = to_uint8(x)
    assert out.dtype == np.uint8 and out.shape == (1, 1, 8, 1)
    assert np.array_equal(out[0, 0, :, 0], want)
    assert np.array_equal(to_uint8(x.numpy()), out)  # numpy in, same answer
    rgb = rand_images(2, 3, 5, 4)
    assert to_uint8(rgb).shape == (2, 5, 4, 3)
    with pytest.raises(ValueError):
        to_uint8(torch.zeros(2, 5, 4, 3))  # channels last is a mistake, not 4-channel images


def test_grid_layout_and_pixels_grayscale():
    x = rand_images(5, 1, 4, 4)
    img = grid_image(x)  # nrow = ceil(sqrt(5)) = 3 images per row -> 3 x 2
    assert img.mode == "L"
    assert img.size == (3 * (4 + 2) + 2, 2 * (4 + 2) + 2)
    arr = np.asarray(img)
    u = to_uint8(x)
    for i in range(5):
        r, c = divmod(i, 3)
        y0, x0 = 2 + r * 6, 2 + c * 6
        assert np.array_equal(arr[y0 : y0 + 4, x0 : x0 + 4], u[i, :, :, 0])
    assert (arr[:2] == 0).all() and (arr[:, :2] == 0).all()  # padding
    assert (arr[2 + 6 : 2 + 6 + 4, 2 + 2 * 6 : 2 + 2 * 6 + 4] == 0).all()  # the empty sixth cell


def test_grid_scale_nrow_and_rgb():
    x = rand_images(4, 3, 3, 5)
    img = grid_image(x, nrow=4, scale=3)
    assert img.mode == "RGB"
    assert img.size == (4 * (15 + 2) + 2, 9 + 4)
    arr = np.asarray(img)
    big = to_uint8(x).repeat(3, axis=1).repeat(3, axis=2)  # nearest-neighbour upscaling
    for i in range(4):
        x0 = 2 + i * 17
        assert np.array_equal(arr[2 : 2 + 9, x0 : x0 + 15], big[i])
    single = grid_image(x[:1], scale=2)  # one image: no padding
    assert single.size == (10, 6)
    assert np.array_equal(np.asarray(single), big[0][::3, ::3].repeat(2, 0).repeat(2, 1))
    with pytest.raises(ValueError):
        grid_image(x, scale=0)


def test_save_png_grid(tmp_path):
    x = rand_images(6, 1, 7, 7)
    path = save_png_grid(x, tmp_path / "sub" / "grid.png", nrow=3, scale=2)
    assert path == tmp_path / "sub" / "grid.png"
    with Image.open(path) as im:
        assert im.format == "PNG" and im.mode == "L"
        assert im.size == (3 * (14 + 2) + 2, 2 * (14 + 2) + 2)
        assert np.array_equal(np.asarray(im), expected_grid(x, nrow=3, scale=2))
    rgb = rand_images(2, 3, 4, 4)
    with Image.open(save_png_grid(rgb, tmp_path / "rgb.png")) as im:
        assert im.mode == "RGB" and np.array_equal(np.asarray(im), expected_grid(rgb))
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(atomic.TEMP_SUFFIX)]


def test_a_file_that_cannot_be_written_is_told_in_one_line_with_what_to_do(tmp_path, monkeypatch):
    x = rand_images(2, 1, 4, 4)
    existing = tmp_path / "keep.png"
    existing.write_bytes(b"the old file")
    cases = {
        tmp_path: "give a file name, not a folder",  # a folder
        existing / "x.gif": "a part of the path is a file",  # its folder is a file
        tmp_path / ("n" * 300 + ".png"): "the name is too long",
    }
    for path, advice in cases.items():
        for save in (lambda: save_png_grid(x, path), lambda: save_trajectory_gif([x, x], path)):
            with pytest.raises(OutputError) as e:
                save()
            message = str(e.value)
            assert message.startswith("cannot write ") and str(path) in message and advice in message, message
            assert "\n" not in message
    # A full disk, as the system reports it at the write: the old file stays as it was.
    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", full)
    with pytest.raises(OutputError, match="No space left on device — the disk is full: free some space"):
        save_png_grid(x, existing)
    assert existing.read_bytes() == b"the old file"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(atomic.TEMP_SUFFIX)]


def test_checking_an_output_before_the_work_leaves_nothing_behind(tmp_path):
    # 'ddpm sample --png out/a/b/s.png' is checked before sampling; if the sampling then
    # fails, no empty folders stay. Writing makes them.
    path = tmp_path / "out" / "a" / "b" / "s.png"
    check_output(path, "PNG")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "kept").mkdir()
    check_output(tmp_path / "kept" / "new" / "s.png", "PNG")
    assert [p.name for p in tmp_path.iterdir()] == ["kept"] and list((tmp_path / "kept").iterdir()) == []
    blocked = tmp_path / "file"
    blocked.write_text("x")
    with pytest.raises(OutputError, match="a part of the path is a file"):
        check_output(blocked / "sub" / "s.png", "PNG")
    assert blocked.read_text() == "x"
    save_png_grid(rand_images(1, 1, 4, 4), path)
    assert path.is_file()


# ---- trajectory GIFs -------------------------------------------------------------------------


def trajectory(n=10, b=3, c=1, size=4, repeat_last=3):
    frames = [rand_images(b, c, size, size, seed=k) for k in range(n - repeat_last)]
    # The last denoising steps often change nothing in uint8; Pillow would merge these.
    frames += [frames[-1].clone() for _ in range(repeat_last)]
    return frames


@pytest.mark.parametrize("stride,kept", [(1, list(range(10))), (3, [0, 3, 6, 9]), (4, [0, 4, 8, 9]), (20, [0, 9])])
def test_trajectory_gif_frames_stride_and_loop(tmp_path, stride, kept):
    frames = trajectory()
    assert trajectory_frame_indices(len(frames), stride) == kept
    path = save_trajectory_gif(frames, tmp_path / "t.gif", stride=stride, scale=1, duration_ms=40, hold_last_ms=1000)
    with Image.open(path) as im:
        assert im.format == "GIF"
        assert im.n_frames == len(kept)  # identical frames are not merged
        assert im.info["loop"] == 0
    got, durations = gif_frames(path, "L")
    for frame, k in zip(got, kept):
        assert np.array_equal(frame, expected_grid(frames[k], scale=1)), k
    assert durations == [40] * (len(kept) - 1) + [1000]


def test_trajectory_gif_index_vs_grid_and_grayscale(tmp_path):
    frames = trajectory(n=5, b=4, size=6, repeat_last=0)
    grid = save_trajectory_gif(frames, tmp_path / "grid.gif", scale=2)
    one = save_trajectory_gif(frames, tmp_path / "one.gif", index=1, scale=2)
    last = save_trajectory_gif(frames, tmp_path / "last.gif", index=-1, scale=2)
    with Image.open(grid) as g, Image.open(one) as o:
        assert g.size == (2 * (12 + 2) + 2, 2 * (12 + 2) + 2)
        assert o.size == (12, 12) and o.n_frames == g.n_frames == 5
    rgb_frames, _ = gif_frames(one, "RGB")
    for k, f in enumerate(rgb_frames):
        assert (f[..., 0] == f[..., 1]).all() and (f[..., 1] == f[..., 2]).all()  # still gray
        want = to_uint8(frames[k][1:2])[0, :, :, 0].repeat(2, 0).repeat(2, 1)
        assert np.array_equal(f[..., 0], want)
    last_frames, _ = gif_frames(last, "L")
    assert np.array_equal(last_frames[0], expected_grid(frames[0][3:4], scale=2))
    with pytest.raises(IndexError):
        save_trajectory_gif(frames, tmp_path / "bad.gif", index=4)


def test_trajectory_gif_identical_frames_loop_options_and_numpy(tmp_path):
    still = [rand_images(2, 1, 4, 4).numpy()] * 6  # numpy input, all frames the same
    path = save_trajectory_gif(still, tmp_path / "still.gif", scale=1, loop=2, hold_last_ms=0, duration_ms=100)
    with Image.open(path) as im:
        assert im.n_frames == 6 and im.info["loop"] == 2
    _, durations = gif_frames(path, "L")
    assert durations == [100] * 6
    once = save_trajectory_gif(still, tmp_path / "once.gif", scale=1, loop=None)
    with Image.open(once) as im:
        assert "loop" not in im.info


def test_rgb_trajectory_gif(tmp_path):
    # few colours: stored exactly
    g = torch.Generator().manual_seed(1)
    few = [torch.randint(0, 3, (4, 3, 5, 5), generator=g).float() - 1 for _ in range(4)]
    path = save_trajectory_gif(few, tmp_path / "few.gif", scale=1)
    got, _ = gif_frames(path, "RGB")
    assert len(got) == 4
    for f, x in zip(got, few):
        assert np.array_equal(f, expected_grid(x))
    # many colours: quantised per frame, close to the truth
    many = [rand_images(4, 3, 12, 12, seed=k) for k in range(3)]
    path = save_trajectory_gif(many, tmp_path / "many.gif", scale=1)
    got, _ = gif_frames(path, "RGB")
    assert len(got) == 3
    for f, x in zip(got, many):
        err = np.abs(f.astype(int) - expected_grid(x).astype(int)).mean()
        assert err < 12, err


# ---- forward-process GIF ----------------------------------------------------------------------


def test_forward_gif(tmp_path):
    T = 100
    schedule = NoiseSchedule.from_name("linear", T)
    abar = schedule.alphas_cumprod
    x0 = rand_images(2, 1, 6, 6)
    eps = torch.randn(2, 1, 6, 6, generator=torch.Generator().manual_seed(5))
    ts = forward_timesteps(T, 7)
    assert ts[0] == 0 and ts[-1] == T - 1 and len(ts) == 7 and ts == sorted(ts)

    path = save_forward_gif(x0, schedule, tmp_path / "forward.gif", num_frames=7, noise=eps, scale=1)
    with Image.open(path) as im:
        assert im.n_frames == 7 and im.info["loop"] == 0
    got, durations = gif_frames(path, "L")
    assert durations == [60] * 7
    for f, t in zip(got, ts):
        xt = abar[t].sqrt() * x0 + (1 - abar[t]).sqrt() * eps
        assert np.array_equal(f, expected_grid(xt))
    assert np.abs(got[0].astype(int) - expected_grid(x0)).max() <= 8  # t = 0 is nearly clean

    # the same generator seed gives the same noise, hence the same file content
    a = save_forward_gif(x0, schedule, tmp_path / "a.gif", num_frames=5, generator=torch.Generator().manual_seed(1))
    b = save_forward_gif(x0, schedule, tmp_path / "b.gif", num_frames=5, generator=torch.Generator().manual_seed(1))
    assert a.read_bytes() == b.read_bytes()
    with Image.open(a) as im:
        assert im.n_frames == 5 and im.size == (2 * (24 + 2) + 2, 24 + 4)


def test_forward_gif_more_frames_than_steps(tmp_path):
    schedule = NoiseSchedule(torch.full((3,), 0.1))
    path = save_forward_gif(rand_images(1, 3, 4, 4), schedule, tmp_path / "f.gif", num_frames=8, scale=1)
    with Image.open(path) as im:
        assert im.n_frames == 8  # repeated t values give identical frames, still all kept


# ---- loop and frame count, read back two independent ways -------------------------------------


def gif_structure(data: bytes) -> dict:
    """Walk a GIF's blocks by the GIF89a spec, independently of Pillow and of export.py:
    the number of image descriptors (frames) and the NETSCAPE2.0 loop count (None if absent)."""
    assert data[:6] in (b"GIF87a", b"GIF89a"), data[:6]
    pos = 13
    if data[10] & 0x80:  # global colour table
        pos += 3 * 2 ** ((data[10] & 7) + 1)
    frames, loop = 0, None

    def skip_sub_blocks(pos):
        while data[pos]:
            pos += data[pos] + 1
        return pos + 1

    while True:
        block = data[pos]
        if block == 0x3B:  # trailer
            assert pos == len(data) - 1, "bytes after the GIF trailer"
            return {"frames": frames, "loop": loop}
        if block == 0x21:  # extension: introducer, label, sub-blocks
            label = data[pos + 1]
            if label == 0xFF and data[pos + 2] == 11 and data[pos + 3 : pos + 14] == b"NETSCAPE2.0":
                sub = pos + 14
                assert data[sub] == 3 and data[sub + 1] == 1
                loop = int.from_bytes(data[sub + 2 : sub + 4], "little")
            pos = skip_sub_blocks(pos + 2)
        elif block == 0x2C:  # image descriptor, optional local colour table, LZW data
            frames += 1
            packed = data[pos + 9]
            pos += 10
            if packed & 0x80:
                pos += 3 * 2 ** ((packed & 7) + 1)
            pos = skip_sub_blocks(pos + 1)  # +1: LZW minimum code size
        else:
            raise AssertionError(f"unexpected GIF block 0x{block:02x} at byte {pos}")


def test_gif_structure_reader_counts_what_pillow_writes(tmp_path):
    # the reader above is itself checked: Pillow's own animated GIF, distinct frames
    frames = [Image.new("L", (4, 4), v) for v in (0, 80, 160, 240)]
    frames[0].save(tmp_path / "p.gif", save_all=True, append_images=frames[1:], loop=0, duration=50)
    assert gif_structure((tmp_path / "p.gif").read_bytes()) == {"frames": 4, "loop": 0}
    frames[0].save(tmp_path / "once.gif", save_all=True, append_images=frames[1:], duration=50)
    assert gif_structure((tmp_path / "once.gif").read_bytes())["loop"] is None


def test_pillow_alone_would_merge_identical_frames(tmp_path):
    # Why export.py writes GIFs itself: with Pillow, 5 identical frames come out as 1.
    same = [Image.new("L", (4, 4), 7) for _ in range(5)]
    same[0].save(tmp_path / "p.gif", save_all=True, append_images=same[1:], loop=0, duration=40)
    with Image.open(tmp_path / "p.gif") as im:
        assert im.n_frames < 5


@pytest.mark.parametrize("rgb", [False, True], ids=["grey", "rgb"])
def test_identical_frames_all_kept_and_gif_loops_forever(tmp_path, rgb):
    c = 3 if rgb else 1
    still = rand_images(2, c, 5, 5, seed=3)
    moving = [rand_images(2, c, 5, 5, seed=k) for k in range(3)]
    frames = [still] * 6 + moving + [moving[-1]] * 4  # 13 frames, 9 of them repeats
    cases = {
        "all": (save_trajectory_gif(frames, tmp_path / "all.gif", scale=1), len(frames)),
        "stride": (save_trajectory_gif(frames, tmp_path / "s.gif", stride=2, scale=1),
                   len(trajectory_frame_indices(len(frames), 2))),
        "one image": (save_trajectory_gif(frames, tmp_path / "i.gif", index=1, scale=1), len(frames)),
        "all identical": (save_trajectory_gif([still] * 9, tmp_path / "same.gif", scale=1), 9),
        "forward, T < frames": (
            save_forward_gif(still, NoiseSchedule(torch.full((3,), 0.1)), tmp_path / "f.gif", num_frames=11,
                             noise=torch.zeros_like(still), scale=1),
            11,
        ),
    }
    for name, (path, want) in cases.items():
        with Image.open(path) as im:
            assert im.n_frames == want, name
            assert im.info.get("loop") == 0, name
        assert gif_structure(path.read_bytes()) == {"frames": want, "loop": 0}, name
