"""Loss by timestep: where in t = 1…T (the paper's count; the engine's indices 0…T−1) the
model still predicts the noise badly.

Each training step draws a random t for every image; the trainer reports every image's
own loss with its t. Here they are binned over t and averaged with exponential
forgetting (a half-life in training steps), so the bars show how the model does *now*,
not the average since the start. Typically small t (almost clean images, where the noise
is tiny and hard to see) stays worst the longest.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent
from PySide6.QtWidgets import QVBoxLayout, QWidget

from ddpm_gui.plot_style import BAR_COLOUR, MajorGrid, apply_palette
from ddpm_gui.redraw import RedrawTimer


class TimestepLossStats:
    """Recency-weighted mean loss per bin of timesteps (pure numpy, no Qt)."""

    def __init__(self, timesteps: int, max_bins: int = 50, half_life_steps: float = 200.0):
        self.timesteps = int(timesteps)
        self.bins = max(1, min(int(max_bins), self.timesteps))
        self.edges = np.linspace(0, self.timesteps, self.bins + 1)
        self.decay_per_step = 0.5 ** (1.0 / half_life_steps)
        self._sum = np.zeros(self.bins)
        self._weight = np.zeros(self.bins)

    def add(self, t: np.ndarray, losses: np.ndarray, steps: int = 1) -> None:
        t = np.asarray(t, dtype=np.int64).ravel()
        losses = np.asarray(losses, dtype=np.float64).ravel()
        keep = np.isfinite(losses) & (t >= 0) & (t < self.timesteps)
        t, losses = t[keep], losses[keep]
        # Forget a little per step, everywhere at once: the ratio sum/weight stays a mean,
        # weighted towards recent steps, and a bin not drawn lately keeps its last value.
        f = self.decay_per_step ** max(int(steps), 1)
        self._sum *= f
        self._weight *= f
        index = np.minimum((t * self.bins) // self.timesteps, self.bins - 1)
        np.add.at(self._sum, index, losses)
        np.add.at(self._weight, index, 1.0)

    def means(self) -> np.ndarray:
        """(bins,) mean loss per bin; NaN where no sample has fallen yet."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self._weight > 0, self._sum / np.maximum(self._weight, 1e-300), np.nan)

    def centres(self) -> np.ndarray:
        return (self.edges[:-1] + self.edges[1:]) / 2 - 0.5  # in index units, 0..T−1


# Bar tops round up to one of these times a power of ten.
_ROUND_TOPS = (1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0)


def bar_axis_top(highest: float, current: float | None) -> float:
    """The top of the loss axis for bars up to `highest`.

    The current top is kept while the bars fit and reach at least half of it: a new range
    re-lays out the axis and its grid, which made every redraw several times slower. Else
    the first round number at least 10 % above the highest bar.
    """
    if not math.isfinite(highest) or highest <= 0:
        return current or 1.0
    if current is not None and 0.5 * current <= highest <= current:
        return current
    target = highest * 1.1
    power = 10.0 ** math.floor(math.log10(target))
    return next(k * power for k in _ROUND_TOPS if k * power >= target)


class LossByTimestepPlot(QWidget):
    """Bars of `TimestepLossStats.means()` over t, redrawn at most 20 times a second."""

    def __init__(self, parent=None, max_bins: int = 50):
        super().__init__(parent)
        self.max_bins = max_bins
        self.stats = TimestepLossStats(300, max_bins)
        self.plot = pg.PlotWidget(self)
        item = self.plot.getPlotItem()
        item.setTitle("Loss by timestep (recent)")
        item.setLabel("bottom", "timestep t")
        item.setLabel("left", "mean loss")
        item.addItem(MajorGrid(item, x=False), ignoreBounds=True)  # cheaper than showGrid: see MajorGrid
        item.setMouseEnabled(x=False, y=False)
        self.plot.setAntialiasing(False)  # crisp bar edges, and filling them is cheaper
        self.bars = pg.BarGraphItem(x=[], height=[], width=1.0, brush=pg.mkBrush(BAR_COLOUR), pen=pg.mkPen(None))
        item.addItem(self.bars)
        self.setToolTip(
            "Every training image gets a random timestep t. Each bar is the recent mean loss of "
            "the images whose t fell in that range: high bars show the noise levels the model "
            "still gets wrong."
        )
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.plot)
        self._redraw = RedrawTimer(self._draw, parent=self)
        apply_palette(self.plot, self.palette())
        self.reset(300)

    def reset(self, timesteps: int, run_length: int | None = None) -> None:
        """Start over for a run with T = `timesteps`; remember ~10 % of a run of `run_length` steps."""
        half_life = 200.0 if run_length is None else float(min(1000, max(50, run_length // 10)))
        self.stats = TimestepLossStats(timesteps, self.max_bins, half_life_steps=half_life)
        item = self.plot.getPlotItem()
        item.setXRange(0.5, timesteps + 0.5, padding=0.02)  # the paper's t = 1…T (notation.py)
        self._top = None  # the loss axis' top (bar_axis_top); losses are never negative
        item.setYRange(0, 1, padding=0)  # until there are bars
        self._redraw.request()

    def add(self, t, losses, steps: int = 1) -> None:
        self.stats.add(t, losses, steps)
        self._redraw.request()

    def flush(self) -> None:
        self._redraw.flush()

    def _draw(self) -> None:
        s = self.stats
        means = s.means()
        width = s.timesteps / s.bins
        self.bars.setOpts(x=s.centres() + 1, height=np.nan_to_num(means, nan=0.0), width=0.9 * width)
        if np.isfinite(means).any():
            top = bar_axis_top(float(np.nanmax(means)), self._top)
            if top != self._top:
                self._top = top
                self.plot.getPlotItem().setYRange(0, top, padding=0.02)

    def changeEvent(self, event) -> None:
        if event.type() == QEvent.PaletteChange:
            apply_palette(self.plot, self.palette())
        super().changeEvent(event)
