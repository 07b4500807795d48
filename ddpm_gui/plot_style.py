"""Plot colours that follow the window's palette (light or dark), like the other tabs."""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtGui import QPalette

RAW_COLOUR = (61, 143, 214, 130)  # the raw loss: faint, it is noisy
SMOOTH_COLOUR = "#e8782a"  # the smoothed loss: what to read
BAR_COLOUR = (61, 143, 214, 200)


def apply_palette(widget: pg.PlotWidget, palette: QPalette) -> None:
    """Background from the palette's Base, axes and labels from its Text colour."""
    widget.setBackground(palette.color(QPalette.Base))
    text = palette.color(QPalette.Text)
    item = widget.getPlotItem()
    for side in ("left", "bottom"):
        axis = item.getAxis(side)
        axis.setPen(text)
        axis.setTextPen(text)
        # Losses are small numbers: "0.05" reads better than "50" with a "(x0.001)" label.
        axis.enableAutoSIPrefix(False)
    if item.titleLabel.text:
        item.titleLabel.setText(item.titleLabel.text, color=text)
