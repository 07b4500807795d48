"""Export images as PNG grids and animated GIFs (the article's `diffusion.gif`).

Images arrive as tensors or numpy arrays in [-1, 1], shaped (B, C, H, W) with C = 1 or 3.
Grayscale stays grayscale (mode "L"), RGB stays RGB. All files are written atomically.

GIF frames and Pillow's frame merging
-------------------------------------
`Image.save(..., save_all=True)` silently drops a frame that is identical to the one
before it and adds its duration to the previous frame (Pillow >= 9; Pillow 13 still does
it and has no switch to turn it off). Late denoising steps often change an image by less
than one grey level, so whole runs of uint8 frames are identical and a 300-step
trajectory could come out with, say, 250 frames. That breaks "one GIF frame per kept
step" (the GUI scrubs by frame number; tests count `n_frames`).

So this module assembles the GIF container itself: Pillow encodes each frame as a
single-image GIF (its LZW encoder and, for RGB, our palette), and `_GifWriter` copies
each frame's image block into one GIF89a file, with that frame's palette as a local
colour table, a graphic control extension carrying its delay, and the NETSCAPE2.0 loop
extension. Every frame asked for is written, pixels unchanged, so
`Image.open(gif).n_frames` equals the number of frames kept and each decoded frame
equals `to_uint8` of its input (RGB: when the frame has at most 256 colours; otherwise
it is quantised to 256 colours per frame: fast octree, no dithering).

GIF delays are whole centiseconds: durations are rounded to 10 ms. Browsers show delays
under 20 ms as 100 ms, so keep duration_ms >= 20.
"""

from __future__ import annotations

import io
import math
import struct
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image

from .atomic import atomic_write, check_writable, write_error_message
from .errors import OutputError

__all__ = [
    "to_uint8",
    "grid_image",
    "save_png_grid",
    "save_trajectory_gif",
    "save_forward_gif",
    "forward_timesteps",
    "trajectory_frame_indices",
]

PathLike = Union[str, Path]
ImageBatch = Union[torch.Tensor, np.ndarray]


# ---- pixels ---------------------------------------------------------------------------


def _as_batch(x: Any) -> torch.Tensor:
    """(B, C, H, W) float32 CPU tensor; a single (C, H, W) image becomes a batch of one."""
    if isinstance(x, np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(x))
    elif isinstance(x, torch.Tensor):
        t = x.detach()
    else:
        raise TypeError(f"expected a torch tensor or numpy array of images, not {type(x).__name__}")
    if t.dim() == 3:
        t = t.unsqueeze(0)
    if t.dim() != 4 or t.shape[1] not in (1, 3) or t.shape[0] < 1:
        raise ValueError(f"expected images shaped (B, C, H, W) with C = 1 or 3, got {tuple(t.shape)}")
    return t.to(device="cpu", dtype=torch.float32)


def to_uint8(x: ImageBatch) -> np.ndarray:
    """[-1, 1] images (B, C, H, W) -> uint8 array (B, H, W, C): clamp, (x+1)/2*255, round.

    NaN becomes mid-grey and ±inf the extremes, so a diverged model still exports.
    """
    t = _as_batch(x)
    t = torch.nan_to_num(t, nan=0.0, posinf=1.0, neginf=-1.0)
    t = ((t.clamp(-1.0, 1.0) + 1.0) / 2.0 * 255.0).round().to(torch.uint8)
    return t.permute(0, 2, 3, 1).contiguous().numpy()


def _check_scale(scale: Any) -> int:
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be a whole number >= 1, not {scale!r}")
    return scale


def grid_image(x: ImageBatch, nrow: Optional[int] = None, padding: int = 2, scale: int = 1,
               pad_value: int = 0) -> Image.Image:
    """All B images tiled in a grid (torchvision's make_grid), as a PIL image.

    `nrow` is the number of images per row (default ceil(sqrt(B)), a near-square grid).
    `scale` enlarges each image by an integer factor with nearest-neighbour (28-pixel
    images are tiny) before tiling, so the `padding` between images stays thin. A single
    image gets no padding. Mode "L" for 1 channel, "RGB" for 3.
    """
    from torchvision.utils import make_grid  # local: torchvision is slow to import

    scale = _check_scale(scale)
    u = torch.from_numpy(to_uint8(x)).permute(0, 3, 1, 2)  # (B, C, H, W) uint8
    b, c = u.shape[0], u.shape[1]
    if scale > 1:
        u = u.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
    if nrow is None:
        nrow = math.ceil(math.sqrt(b))
    if isinstance(nrow, bool) or not isinstance(nrow, int) or nrow < 1:
        raise ValueError(f"nrow must be a whole number >= 1, not {nrow!r}")
    g = make_grid(u, nrow=nrow, padding=padding, pad_value=pad_value)  # uint8 stays uint8
    if c == 1:
        g = g[:1]  # make_grid turns one channel into three identical ones
    arr = g.permute(1, 2, 0).numpy()
    return Image.fromarray(arr[:, :, 0] if c == 1 else np.ascontiguousarray(arr))


def save_png_grid(x: ImageBatch, path: PathLike, nrow: Optional[int] = None, scale: int = 1,
                  padding: int = 2) -> Path:
    """Write the grid of images `x` as a PNG, atomically; parent folders are created."""
    img = grid_image(x, nrow=nrow, padding=padding, scale=scale)
    return _write(Path(path), "PNG", lambda f: img.save(f, format="PNG"))


# ---- GIFs -----------------------------------------------------------------------------


def trajectory_frame_indices(n: int, stride: int = 1) -> list[int]:
    """Every `stride`-th of n frames, starting with the first and always ending with the last."""
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ValueError(f"stride must be a whole number >= 1, not {stride!r}")
    if n < 1:
        return []
    keep = list(range(0, n, stride))
    if keep[-1] != n - 1:
        keep.append(n - 1)  # the final sample is the point of the animation
    return keep


def save_trajectory_gif(
    frames: Sequence[ImageBatch],
    path: PathLike,
    *,
    index: Optional[int] = None,
    stride: int = 1,
    duration_ms: int = 40,
    loop: Optional[int] = 0,
    hold_last_ms: Optional[int] = 1000,
    scale: int = 4,
    nrow: Optional[int] = None,
    padding: int = 2,
) -> Path:
    """Animate a denoising trajectory: `frames[k]` is x_t after step k, (B, C, H, W).

    index=None shows all B images as a grid per frame; index=i only image i (negative
    counts from the end). Keeps every `stride`-th frame plus always the last one, so the
    GIF has exactly `len(trajectory_frame_indices(len(frames), stride))` frames.
    Each frame shows for `duration_ms`; the last one for `hold_last_ms` (None/0: the
    same). loop=0 repeats forever, loop=n plays n+1 times, None plays once.
    """
    frames = list(frames) if not isinstance(frames, (torch.Tensor, np.ndarray)) else frames
    keep = trajectory_frame_indices(len(frames), stride)
    if not keep:
        raise ValueError("save_trajectory_gif needs at least one frame")
    images = []
    first_shape = None
    for k in keep:
        x = _as_batch(frames[k])
        if first_shape is None:
            first_shape = x.shape
        elif x.shape != first_shape:
            raise ValueError(f"frame {k} has shape {tuple(x.shape)}, frame {keep[0]} has {tuple(first_shape)}")
        if index is not None:
            x = _select(x, index)
        images.append(grid_image(x, nrow=nrow, padding=padding, scale=scale))
    durations = [duration_ms] * len(images)
    if hold_last_ms:
        durations[-1] = hold_last_ms
    return _save_gif(images, durations, path, loop)


def forward_timesteps(num_timesteps: int, num_frames: int) -> list[int]:
    """The t shown by each frame of `save_forward_gif`: evenly spaced from 0 to T-1."""
    if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
        raise ValueError(f"num_frames must be a whole number >= 1, not {num_frames!r}")
    if num_frames == 1:
        return [0]
    return [round(i * (num_timesteps - 1) / (num_frames - 1)) for i in range(num_frames)]


def save_forward_gif(
    x_start: ImageBatch,
    schedule,
    path: PathLike,
    *,
    num_frames: int = 50,
    noise: Optional[ImageBatch] = None,
    generator: Optional[torch.Generator] = None,
    duration_ms: int = 60,
    loop: Optional[int] = 0,
    scale: int = 4,
    nrow: Optional[int] = None,
    hold_last_ms: Optional[int] = 0,
) -> Path:
    """Animate the forward process q(x_t | x_0) of a `NoiseSchedule` (`diffusion.q_sample`).

    One fixed ε (given as `noise`, else drawn with `generator`) for all frames, so the
    image dissolves smoothly instead of flickering; t = `forward_timesteps(T, num_frames)`.
    Writes exactly `num_frames` frames.
    """
    from .diffusion import q_sample  # local: export stays importable without the math

    x0 = _as_batch(x_start)
    schedule = schedule.to("cpu")
    if noise is None:
        device = generator.device if generator is not None else "cpu"
        eps = torch.randn(tuple(x0.shape), generator=generator, device=device).cpu()
    else:
        eps = _as_batch(noise)
        if eps.shape != x0.shape:
            raise ValueError(f"noise has shape {tuple(eps.shape)}, x_start has {tuple(x0.shape)}")
    images = []
    for t in forward_timesteps(schedule.num_timesteps, num_frames):
        xt = q_sample(schedule, x0, torch.full((x0.shape[0],), t, dtype=torch.long), noise=eps)
        images.append(grid_image(xt, nrow=nrow, scale=scale))
    durations = [duration_ms] * len(images)
    if hold_last_ms:
        durations[-1] = hold_last_ms
    return _save_gif(images, durations, path, loop)


def _select(x: torch.Tensor, index: int) -> torch.Tensor:
    b = x.shape[0]
    if isinstance(index, bool) or not isinstance(index, int) or not -b <= index < b:
        raise IndexError(f"index {index!r} is out of range for a batch of {b} images")
    i = index % b
    return x[i : i + 1]


def _to_palette(img: Image.Image) -> Image.Image:
    """An RGB frame as a "P" image: exact when it has <= 256 colours, else quantised."""
    colours = img.getcolors(256)  # None when there are more than 256
    if colours is not None:
        palette = Image.new("P", (1, 1))
        palette.putpalette(b"".join(bytes(rgb) for _, rgb in colours))
        return img.quantize(palette=palette, dither=Image.Dither.NONE)
    # Fast octree: ~20x faster than median cut at about the same error on these images.
    # No dithering: on noisy diffusion frames it adds yet more noise and makes every
    # frame shimmer differently.
    return img.quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)


def _save_gif(images: list[Image.Image], durations: list, path: PathLike, loop: Optional[int]) -> Path:
    if loop is not None and (isinstance(loop, bool) or not isinstance(loop, int) or not 0 <= loop <= 65535):
        raise ValueError(f"loop must be None or a whole number from 0 to 65535, not {loop!r}")

    def write(f):
        w = _GifWriter(f, images[0].size, loop)
        for img, ms in zip(images, durations):
            w.add(img if img.mode == "L" else _to_palette(img), ms)
        w.close()

    return _write(Path(path), "GIF", write)


def check_output(path: PathLike, what: str) -> None:
    """Raise OutputError (one line) now if the `what` ("PNG", "GIF") could not be written to
    `path`, before the work that makes it (folders missing on the way are fine: writing
    makes them)."""
    try:
        check_writable(path)
    except OSError as e:
        raise OutputError(write_error_message(what, path, e)) from None


def _write(p: Path, what: str, write_fn) -> Path:
    """Create p's folders and write p atomically; OSError becomes a one-line OutputError."""
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        return atomic_write(p, write_fn)
    except OSError as e:
        raise OutputError(write_error_message(what, p, e)) from None


class _GifWriter:
    """Concatenates single-frame GIFs (encoded by Pillow) into one animated GIF89a.

    Spec: https://www.w3.org/Graphics/GIF/spec-gif89a.txt. Each frame keeps its own colour
    table as a local table; nothing is merged, cropped or skipped.
    """

    def __init__(self, f, size: tuple[int, int], loop: Optional[int]):
        self.f, self.size, self.loop = f, size, loop
        self.started = False

    def add(self, img: Image.Image, duration_ms: Any) -> None:
        if img.size != self.size:
            raise ValueError(f"GIF frames must all be {self.size}, got {img.size}")
        buf = io.BytesIO()
        img.save(buf, format="GIF", interlace=False)
        table, descriptor, lzw = _parse_single_gif(buf.getvalue())
        bits = _table_bits(table)
        if not self.started:
            # The first frame's table doubles as the global table, for old viewers that
            # paint the background from it.
            self.f.write(b"GIF89a" + struct.pack("<HHBBB", *self.size, 0x80 | 0x70 | bits, 0, 0) + table)
            if self.loop is not None:
                self.f.write(b"!\xff\x0bNETSCAPE2.0\x03\x01" + struct.pack("<H", self.loop) + b"\x00")
            self.started = True
        delay = max(0, min(65535, round(float(duration_ms or 0) / 10.0)))  # centiseconds
        # graphic control extension: disposal 1 (leave in place), no transparency
        self.f.write(b"!\xf9\x04" + struct.pack("<BHBB", 1 << 2, delay, 0, 0))
        x, y, w, h, packed = struct.unpack("<HHHHB", descriptor)
        packed = 0x80 | (packed & 0x40) | bits  # local colour table + keep interlace flag
        self.f.write(b"," + struct.pack("<HHHHB", x, y, w, h, packed) + table + lzw)

    def close(self) -> None:
        if not self.started:
            raise ValueError("a GIF needs at least one frame")
        self.f.write(b";")


def _table_bits(table: bytes) -> int:
    n = len(table) // 3  # 2 ** (bits + 1) colours
    bits = max(0, n.bit_length() - 2)
    if 3 * (2 ** (bits + 1)) != len(table):
        raise ValueError(f"unexpected GIF colour table length {len(table)}")
    return bits


def _parse_single_gif(data: bytes) -> tuple[bytes, bytes, bytes]:
    """(colour table, 9-byte image descriptor, LZW data incl. terminator) of a one-frame GIF."""
    if data[:6] not in (b"GIF87a", b"GIF89a"):
        raise ValueError("Pillow did not write a GIF")
    packed = data[10]
    pos = 13
    gct = b""
    if packed & 0x80:
        n = 3 * (2 ** ((packed & 7) + 1))
        gct, pos = data[pos : pos + n], pos + n
    while pos < len(data):
        block = data[pos]
        if block == 0x21:  # extension: label, then sub-blocks up to a zero length
            pos += 2
            while data[pos]:
                pos += data[pos] + 1
            pos += 1
        elif block == 0x2C:  # image descriptor
            descriptor = data[pos + 1 : pos + 10]
            ipacked = descriptor[8]
            pos += 10
            table = gct
            if ipacked & 0x80:
                n = 3 * (2 ** ((ipacked & 7) + 1))
                table, pos = data[pos : pos + n], pos + n
            start = pos
            pos += 1  # LZW minimum code size
            while data[pos]:
                pos += data[pos] + 1
            pos += 1
            if not table:
                raise ValueError("GIF frame without a colour table")
            return table, descriptor, data[start:pos]
        else:
            break
    raise ValueError("no image in the GIF Pillow wrote")
