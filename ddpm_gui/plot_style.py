"""Plot colours that follow the window's palette (light or dark), like the other tabs, and
a grid cheap enough to repaint many times a second."""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import QLineF, Qt
from PySide6.QtGui import QColor, QPalette, QPen

RAW_COLOUR = (61, 143, 214, 130)  # the raw loss: faint, it is noisy
SMOOTH_COLOUR = "#e8782a"  # the smoothed loss: what to read
BAR_COLOUR = (61, 143, 214, 200)
GRID_ALPHA = 0.2  # grid lines: the text colour at this opacity


class MajorGrid(pg.UIGraphicsItem):
    """Faint lines at the major ticks of a plot's bottom and/or left axis.

    pyqtgraph's own grids cost more than the curves in front of them (measured on the loss
    plot, 900×360 pixels, 2-core CPU): the axes' grid (`showGrid`) made every repaint take
    7 ms, and a `GridItem` draws hundreds of lines in three levels, regenerated at every
    range change (2 ms). This one draws the dozen major lines, recomputed only when the
    view range changes: a fraction of a millisecond. Add it with `PlotItem.addItem(grid,
    ignoreBounds=True)`.
    """

    def __init__(self, plot: pg.PlotItem, x: bool = True, y: bool = True):
        super().__init__()
        self._plot = plot
        self._x, self._y = x, y
        self._lines: list[QLineF] | None = None  # in view coordinates; None: recompute
        self._pen = QPen()
        self._pen.setCosmetic(True)  # one pixel wide whatever the zoom
        self.set_colour(QColor(Qt.gray))
        self.setZValue(-100)  # behind the data

    def set_colour(self, colour: QColor) -> None:
        colour = QColor(colour)
        colour.setAlphaF(GRID_ALPHA)
        self._pen.setColor(colour)
        self.update()

    def viewRangeChanged(self) -> None:
        self._lines = None
        super().viewRangeChanged()

    def _major_ticks(self, side: str, low: float, high: float, pixels: float) -> list[float]:
        levels = self._plot.getAxis(side).tickValues(low, high, max(pixels, 1.0))
        return list(levels[0][1]) if levels else []

    def _compute_lines(self) -> list[QLineF]:
        view = self._plot.getViewBox()
        (x0, x1), (y0, y1) = view.viewRange()
        lines = []
        if self._x:
            lines += [QLineF(v, y0, v, y1) for v in self._major_ticks("bottom", x0, x1, view.width())]
        if self._y:
            lines += [QLineF(x0, v, x1, v) for v in self._major_ticks("left", y0, y1, view.height())]
        return lines

    def paint(self, p, *args) -> None:
        if self._lines is None:
            self._lines = self._compute_lines()
        p.setPen(self._pen)
        p.drawLines(self._lines)


def apply_palette(widget: pg.PlotWidget, palette: QPalette) -> None:
    """Background from the palette's Base, axes, labels and grid from its Text colour."""
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
    for child in item.items:
        if isinstance(child, MajorGrid):
            child.set_colour(text)
