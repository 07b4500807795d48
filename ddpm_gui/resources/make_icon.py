"""Draws the app icon (icon_<size>.png): a pixel-art disc that emerges from noise, left
to right, the way DDPM's reverse process turns x_T into x_0.

Run `python ddpm_gui/resources/make_icon.py` to regenerate the PNGs next to this file;
the output depends only on the fixed seed below.
"""

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

GRID = 16  # pixels of the pixel-art image
SIZES = (16, 24, 32, 48, 64, 128, 256)
BACKGROUND = np.array([24, 30, 58], dtype=np.float64)  # deep indigo
FOREGROUND = np.array([255, 178, 64], dtype=np.float64)  # warm amber


def pixel_art(seed: int = 7) -> np.ndarray:
    """(GRID, GRID, 3) uint8: x_t = √ᾱ·x0 + √(1−ᾱ)·ε with ᾱ rising from left to right."""
    c = (np.arange(GRID) + 0.5) / GRID
    x, y = np.meshgrid(c, c)
    x0 = np.where((x - 0.5) ** 2 + (y - 0.5) ** 2 < 0.34**2, 1.0, -1.0)  # a disc, in [-1, 1]
    eps = np.random.default_rng(seed).standard_normal((GRID, GRID))
    alpha_bar = np.clip((x - 0.05) / 0.6, 0.0, 1.0) ** 2  # noisy on the left, clean on the right
    xt = np.sqrt(alpha_bar) * x0 + np.sqrt(1 - alpha_bar) * eps
    w = np.clip((xt + 1) / 2, 0, 1)[..., None]
    return (BACKGROUND * (1 - w) + FOREGROUND * w).round().astype(np.uint8)


def icon(size: int) -> Image.Image:
    big = 256
    art = Image.fromarray(pixel_art()).resize((big, big), Image.NEAREST)
    mask = Image.new("L", (big, big), 0)
    ImageDraw.Draw(mask).rounded_rectangle((0, 0, big - 1, big - 1), radius=big // 5, fill=255)
    out = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    out.paste(art, (0, 0), mask)
    return out if size == big else out.resize((size, size), Image.LANCZOS)


if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    for s in SIZES:
        icon(s).save(here / f"icon_{s}.png", optimize=True)
