"""The built-in shapes dataset: anti-aliased circles, squares, triangles and crosses.

Generated on the fly (no download), deterministic for a given seed.
"""

from __future__ import annotations

import torch

from .image_set import ImageSet

SHAPE_CLASSES = ("circle", "square", "triangle", "cross")
SHAPES_COUNT = 8000  # enough variety for a small U-Net, small enough to generate instantly
SHAPES_TITLE = "Built-in shapes"
CHUNK_PIXELS = 2**24  # drawn this many pixels at a time: 64 MB per float temporary

# Saturated colours for channels=3; few and distinct, so a small model learns them fast.
_PALETTE = (
    (1.00, 0.25, 0.20),  # red
    (1.00, 0.80, 0.15),  # yellow
    (0.30, 0.90, 0.30),  # green
    (0.25, 0.80, 1.00),  # sky blue
    (0.40, 0.45, 1.00),  # blue
    (1.00, 0.40, 0.90),  # pink
)
_SQRT3_2 = 3**0.5 / 2


def _sdf_circle(px, py, r):
    return torch.sqrt(px * px + py * py) - r


def _sdf_square(px, py, r):
    h = 0.85 * r  # a bit smaller than the circle so both cover similar areas
    return torch.maximum(px.abs(), py.abs()) - h


def _sdf_triangle(px, py, r):
    # Equilateral, pointing up (image y grows downwards). Circumradius R; the centroid
    # is moved down by R/4 so the triangle is centred in its bounding box. The distance
    # is the largest of the three edge half-plane distances (exact near the edges, which
    # is all the 1-pixel anti-aliasing needs).
    R = 1.15 * r
    q = py - R / 4
    d = torch.maximum(q, torch.maximum(_SQRT3_2 * px - q / 2, -_SQRT3_2 * px - q / 2))
    return d - R / 2


def _sdf_cross(px, py, r):
    arm, half_width = 0.95 * r, 0.3 * r
    ax, ay = px.abs(), py.abs()
    horizontal = torch.maximum(ax - arm, ay - half_width)
    vertical = torch.maximum(ax - half_width, ay - arm)
    return torch.minimum(horizontal, vertical)


_SDFS = {"circle": _sdf_circle, "square": _sdf_square, "triangle": _sdf_triangle, "cross": _sdf_cross}


def make_shapes(
    n: int, image_size: int, channels: int, seed: int = 0, count: int | None = None, progress=None
) -> ImageSet:
    """The first `count` (default: all) of `n` anti-aliased shapes on black, a pure function
    of (n, image_size, channels, seed): a smaller `count` gives a prefix of the same images.

    Classes are balanced (SHAPE_CLASSES, in shuffled order). Each image has one shape of
    random position, size (about 45-70 % of the image width) and brightness (60-100 %);
    with channels=3 also one of six colours. Geometry and colour draws do not depend on
    `channels`, so the grey and colour sets show the same shapes. Drawn in chunks of about
    CHUNK_PIXELS, so that the float temporaries stay small at any image size; `progress`
    (done, total, message) is called between chunks and may raise to cancel.
    """
    count = n if count is None else count
    if n < 0 or not 0 <= count <= n or image_size < 1 or channels not in (1, 3):
        raise ValueError(f"make_shapes: bad arguments n={n}, count={count}, image_size={image_size}, channels={channels}")
    g = torch.Generator().manual_seed(int(seed))
    k = len(SHAPE_CLASSES)
    labels = (torch.arange(n) % k)[torch.randperm(n, generator=g)]
    u = torch.rand(n, 5, generator=g)
    s = float(image_size)
    r = s * (0.22 + 0.14 * u[:, 0])  # "radius" in pixels
    margin = 0.5
    free = (s - 2 * (r + margin)).clamp(min=0)  # room left for the centre to move in
    cx = r + margin + u[:, 1] * free
    cy = r + margin + u[:, 2] * free
    brightness = 0.6 + 0.4 * u[:, 3]
    palette = torch.tensor(_PALETTE)
    colour = palette[(u[:, 4] * len(_PALETTE)).long().clamp(max=len(_PALETTE) - 1)]

    images = torch.empty(count, channels, image_size, image_size, dtype=torch.uint8)
    chunk = max(1, CHUNK_PIXELS // (image_size * image_size))
    for a in range(0, count, chunk):
        if progress is not None and count > chunk:  # in one chunk it takes no time worth telling
            progress(a, count, f"drawing {count:,} shapes")
        b = min(a + chunk, count)
        images[a:b] = _draw(labels[a:b], r[a:b], cx[a:b], cy[a:b], brightness[a:b], colour[a:b], image_size, channels)
    return ImageSet(images, labels[:count].clone(), list(SHAPE_CLASSES), f"{SHAPES_TITLE} ({count:,} images)")


def _draw(labels, r, cx, cy, brightness, colour, image_size: int, channels: int) -> torch.Tensor:
    """uint8 (m, channels, S, S): one shape per image, from its drawn parameters."""
    # Pixel centres; broadcasting (m,1,S) against (m,S,1) builds the grid per image.
    coords = torch.arange(image_size, dtype=torch.float32) + 0.5
    px = coords.view(1, 1, -1) - cx.view(-1, 1, 1)
    py = coords.view(1, -1, 1) - cy.view(-1, 1, 1)
    sd = torch.empty(len(labels), image_size, image_size)
    for c, shape in enumerate(SHAPE_CLASSES):
        idx = (labels == c).nonzero().squeeze(1)
        if len(idx):
            sd[idx] = _SDFS[shape](px[idx], py[idx], r[idx].view(-1, 1, 1))
    # Signed distance -> pixel coverage: a 1-pixel linear ramp across the edge is cheap
    # anti-aliasing that keeps edges clean at 16x16.
    cover = (0.5 - sd).clamp_(0.0, 1.0)
    if channels == 1:
        img = (cover * brightness.view(-1, 1, 1)).unsqueeze(1)
    else:
        img = cover.unsqueeze(1) * (colour * brightness.view(-1, 1)).view(-1, 3, 1, 1)
    return (img * 255.0).round_().to(torch.uint8)
