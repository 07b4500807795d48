"""Showing small images big: a grid widget that scales pixels up crisply, and a zoom dialog.

Images come in as numpy arrays, either uint8 (N, H, W, C) or float in [-1, 1] (N, C, H, W)
(the engine's layout). Nothing here touches torch tensors.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
from PySide6.QtCore import QRect, QSize, Qt, Signal
from PySide6.QtGui import QImage, QPainter, QPalette
from PySide6.QtWidgets import QDialog, QLabel, QSizePolicy, QVBoxLayout, QWidget


def to_uint8_nhwc(images: np.ndarray) -> np.ndarray:
    """float (N, C, H, W) in [-1, 1] or uint8 (N, H, W, C) -> contiguous uint8 (N, H, W, C)."""
    a = np.asarray(images)
    if a.ndim == 3:
        a = a[None]
    if a.dtype != np.uint8:
        a = np.clip((a.astype(np.float32) + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)
        a = a.transpose(0, 2, 3, 1)
    return np.ascontiguousarray(a)


def to_rgb32(images: np.ndarray) -> np.ndarray:
    """uint8 (..., H, W, 1|3) -> uint32 (..., H, W) pixels 0xFFRRGGBB, QImage's Format_RGB32.

    RGB32 is the format the window itself is painted in: Qt draws it scaled without a
    conversion per image per paint, four times faster than greyscale or RGB888 images.
    """
    a = images.astype(np.uint32)
    if a.shape[-1] == 1:
        pixels = a[..., 0] * np.uint32(0x010101)
    else:
        pixels = (a[..., 0] << 16) | (a[..., 1] << 8) | a[..., 2]
    return pixels | np.uint32(0xFF000000)


class ImageGrid(QWidget):
    """A grid of same-sized images, scaled by nearest neighbour to fill the widget.

    clicked(index) reports which image was clicked (for a zoom view).
    """

    clicked = Signal(int)

    def __init__(self, parent=None, columns: Optional[int] = None, placeholder: str = ""):
        super().__init__(parent)
        self._images: list[QImage] = []
        self._columns = columns
        self._placeholder = placeholder
        self._cells: list[QRect] = []
        self.setMinimumSize(96, 96)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)

    def set_images(self, images: Optional[np.ndarray]) -> None:
        if images is None or len(images) == 0:
            self._images = []
        else:
            # One conversion for the whole batch, then a QImage per image: a copy, as a
            # zoom window may keep one after the array is gone.
            pixels = np.ascontiguousarray(to_rgb32(to_uint8_nhwc(images)))
            n, h, w = pixels.shape
            self._images = [QImage(p.data, w, h, 4 * w, QImage.Format_RGB32).copy() for p in pixels]
        self.update()

    def set_placeholder(self, text: str) -> None:
        self._placeholder = text
        self.update()

    def image_count(self) -> int:
        return len(self._images)

    def image(self, index: int) -> QImage:
        return self._images[index]

    def sizeHint(self) -> QSize:
        return QSize(320, 320)

    def _layout(self) -> list[QRect]:
        n = len(self._images)
        if not n:
            return []
        cols = self._columns or math.ceil(math.sqrt(n))
        rows = math.ceil(n / cols)
        iw, ih = self._images[0].width(), self._images[0].height()
        gap = 2
        cell = min((self.width() - gap * (cols - 1)) / (cols * iw), (self.height() - gap * (rows - 1)) / (rows * ih))
        # Whole-number zoom when possible keeps pixels square and crisp.
        scale = math.floor(cell) if cell >= 1 else cell
        w, h = max(1, int(iw * scale)), max(1, int(ih * scale))
        total_w, total_h = cols * w + gap * (cols - 1), rows * h + gap * (rows - 1)
        x0, y0 = (self.width() - total_w) // 2, (self.height() - total_h) // 2
        return [QRect(x0 + (i % cols) * (w + gap), y0 + (i // cols) * (h + gap), w, h) for i in range(n)]

    def paintEvent(self, event) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), self.palette().color(QPalette.Base))
        self._cells = self._layout()
        if not self._cells:
            p.setPen(self.palette().color(QPalette.PlaceholderText))
            p.drawText(self.rect().adjusted(8, 8, -8, -8), Qt.AlignCenter | Qt.TextWordWrap, self._placeholder)
            return
        p.setRenderHint(QPainter.SmoothPixmapTransform, False)
        for rect, img in zip(self._cells, self._images):
            p.drawImage(rect, img)

    def mousePressEvent(self, event) -> None:
        pos = event.position().toPoint()
        for i, rect in enumerate(self._cells):
            if rect.contains(pos):
                self.clicked.emit(i)
                return
        super().mousePressEvent(event)


class ZoomDialog(QDialog):
    """One image shown large (nearest neighbour), with a caption."""

    def __init__(self, image: QImage, title: str, caption: str = "", parent=None):
        super().__init__(parent)
        self.setWindowTitle(title)
        layout = QVBoxLayout(self)
        self.grid = ImageGrid(self, columns=1)
        self.grid._images = [image]
        self.grid.setMinimumSize(384, 384)
        layout.addWidget(self.grid, 1)
        if caption:
            label = QLabel(caption, self)
            label.setAlignment(Qt.AlignCenter)
            layout.addWidget(label)
        self.resize(480, 520)
