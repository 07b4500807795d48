"""The live loss curve: every step's loss, and an exponential moving average to read it by.

Built to stay smooth over long runs (100,000+ steps):
- the points live in preallocated numpy buffers that double when full, so an append is
  O(new points) and the plot receives views (`buf[:n]`), never a rebuilt list;
- pyqtgraph only draws what is visible (`setClipToView`) and at most about one point per
  pixel column, keeping each column's min and max (`setDownsampling(auto, 'peak')`), so
  spikes stay visible however many points there are;
- redraws are coalesced to at most 20 a second (`RedrawTimer`).
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from ddpm_gui.plot_style import RAW_COLOUR, SMOOTH_COLOUR, apply_palette
from ddpm_gui.redraw import RedrawTimer


class GrowingSeries:
    """Append-only float64 columns with amortised O(1) appends (capacity doubles)."""

    def __init__(self, columns: int, capacity: int = 1024):
        self._data = np.empty((columns, capacity), dtype=np.float64)
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def append(self, *columns: np.ndarray) -> None:
        k = len(columns[0])
        need = self._n + k
        if need > self._data.shape[1]:
            capacity = self._data.shape[1]
            while capacity < need:
                capacity *= 2
            grown = np.empty((self._data.shape[0], capacity), dtype=np.float64)
            grown[:, : self._n] = self._data[:, : self._n]
            self._data = grown
        for row, values in enumerate(columns):
            self._data[row, self._n : need] = values
        self._n = need

    def column(self, row: int) -> np.ndarray:
        """A view of the filled part: valid until the next append."""
        return self._data[row, : self._n]

    def clear(self) -> None:
        self._n = 0


class LossPlot(QWidget):
    """Raw and smoothed loss against the optimizer step, optionally on a log scale."""

    def __init__(self, parent=None, smoothing: float = 0.98):
        super().__init__(parent)
        self.smoothing = smoothing  # EMA weight of the past: 0.98 ≈ the last 50 steps (see set_run_length)
        self._series = GrowingSeries(3)  # step, raw loss, smoothed loss
        self._ema, self._ema_count = 0.0, 0

        self.plot = pg.PlotWidget(self)
        item = self.plot.getPlotItem()
        item.setTitle("Training loss")
        item.setLabel("bottom", "step")
        item.setLabel("left", "loss")
        item.showGrid(x=True, y=True, alpha=0.2)
        item.addLegend(offset=(-8, 8))
        self.raw_curve = item.plot([], [], pen=pg.mkPen(RAW_COLOUR, width=1), name="loss per step")
        self.smooth_curve = item.plot([], [], pen=pg.mkPen(SMOOTH_COLOUR, width=2), name="smoothed (EMA)")
        for curve in (self.raw_curve, self.smooth_curve):
            curve.setClipToView(True)
            curve.setDownsampling(auto=True, method="peak")

        self.log_box = QCheckBox("Log scale", self)
        self.log_box.setToolTip(
            "Show the loss on a logarithmic axis: late in training the loss changes by small "
            "amounts that a linear axis flattens out."
        )
        self.log_box.toggled.connect(self.set_log)
        self.latest = QLabel("", self)

        top = QHBoxLayout()
        top.addWidget(self.latest, 1)
        top.addWidget(self.log_box)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(self.plot, 1)

        self._redraw = RedrawTimer(self._draw, parent=self)
        apply_palette(self.plot, self.palette())

    # ---- data ----
    def append(self, steps, losses) -> None:
        steps = np.asarray(steps, dtype=np.float64).ravel()
        losses = np.asarray(losses, dtype=np.float64).ravel()
        if not len(steps):
            return
        smooth = np.empty_like(losses)
        z, n, a = self._ema, self._ema_count, self.smoothing
        for i, value in enumerate(losses):  # a few points per call: a plain loop is cheapest
            if np.isfinite(value):
                z = a * z + (1.0 - a) * value
                n += 1
            # Bias-corrected (as Adam and TensorBoard do): the first points average what
            # there is instead of creeping up from zero or lagging behind the first value.
            smooth[i] = z / (1.0 - a**n) if n else np.nan
        self._ema, self._ema_count = z, n
        self._series.append(steps, losses, smooth)
        self._redraw.request()

    def clear(self) -> None:
        self._series.clear()
        self._ema, self._ema_count = 0.0, 0
        self.latest.setText("")
        self._redraw.request()

    def set_run_length(self, total_steps: int) -> None:
        """Smooth over ~2 % of the run (10 to 500 steps): enough to read a trend through the
        batch-to-batch noise, little enough that the curve does not lag visibly behind."""
        window = min(500, max(10, total_steps // 50))
        self.smoothing = 1.0 - 1.0 / window

    def point_count(self) -> int:
        return len(self._series)

    def smoothed(self) -> float | None:
        n = self._ema_count
        return self._ema / (1.0 - self.smoothing**n) if n else None

    def set_log(self, on: bool) -> None:
        if self.log_box.isChecked() != on:
            self.log_box.setChecked(on)  # comes back here through toggled
            return
        self.plot.getPlotItem().setLogMode(x=False, y=on)

    def flush(self) -> None:
        """Redraw now instead of at the next tick."""
        self._redraw.flush()

    # ---- drawing ----
    def _draw(self) -> None:
        x = self._series.column(0)
        self.raw_curve.setData(x, self._series.column(1))
        self.smooth_curve.setData(x, self._series.column(2))
        if len(x):
            raw, smooth = self._series.column(1)[-1], self._series.column(2)[-1]
            self.latest.setText(f"step {int(x[-1]):,}: loss {raw:.4f}, smoothed {smooth:.4f}")

    def changeEvent(self, event) -> None:
        if event.type() == QEvent.PaletteChange:
            apply_palette(self.plot, self.palette())
        super().changeEvent(event)
