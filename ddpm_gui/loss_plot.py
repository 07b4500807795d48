"""The live loss curve: every step's loss, and an exponential moving average to read it by.

Built to stay smooth over long runs (200,000 points update in a few milliseconds):
- the points live in preallocated numpy buffers that double when full, so an append is
  O(new points) and the plot receives views (`buf[:n]`), never a rebuilt list;
- the curves hold every point, but pyqtgraph only draws what is visible (`setClipToView`)
  and one min-max pair per pixel column (`setDownsampling(auto, 'peak')` with an
  `autoDownsampleFactor` of 1, not its default 5), so spikes stay visible however many
  points there are;
- lines are drawn without antialiasing (`_make_curve`), the grid is a `MajorGrid`, and
  the axes end at round numbers, so their range changes seldom (`axis_end`,
  `loss_axis_bounds`): each says what it saves;
- the latest values are a `StatusLine`, which never re-lays out the window;
- redraws are coalesced to at most 20 a second (`RedrawTimer`).
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QVBoxLayout, QWidget

from ddpm_gui.plot_style import RAW_COLOUR, SMOOTH_COLOUR, MajorGrid, apply_palette
from ddpm_gui.redraw import RedrawTimer, StatusLine


class GrowingSeries:
    """Append-only columns of one dtype with amortised O(1) appends (capacity doubles)."""

    def __init__(self, columns: int, capacity: int = 1024, dtype=np.float64):
        self._data = np.empty((columns, capacity), dtype=dtype)
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
            grown = np.empty((self._data.shape[0], capacity), dtype=self._data.dtype)
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


# Every change of the plot's range re-lays out the axes and recomputes what is drawn,
# which took longer than all the rest of an update. So the axes end at round numbers a
# little beyond the data and change only when the data crosses one (see LossPlot._hold_range).


def axis_end(last_step: float) -> float:
    """Where the step axis ends: a round number 5 % to ~15 % past the last step, so it
    changes about once per 10 % of the run instead of at every redraw."""
    if not math.isfinite(last_step) or last_step <= 0:
        return 1.0
    unit = 10.0 ** math.floor(math.log10(last_step)) / 2
    return math.ceil(last_step * 1.05 / unit) * unit


def loss_axis_bounds(low: float, high: float) -> tuple[float, float]:
    """[low, high] widened to whole multiples of a round unit, a tenth to a twentieth of the
    span, so the loss axis changes only when a new extreme crosses one of them."""
    span = high - low if high > low else abs(high) or 1.0
    unit = 10.0 ** math.floor(math.log10(span)) / 2
    return math.floor(low / unit) * unit, math.ceil(high / unit) * unit


class LossPlot(QWidget):
    """Raw and smoothed loss against the optimizer step, optionally on a log scale."""

    def __init__(self, parent=None, smoothing: float = 0.98):
        super().__init__(parent)
        self.smoothing = smoothing  # EMA weight of the past: 0.98 ≈ the last 50 steps (see set_run_length)
        # Steps as integers: pyqtgraph then knows they are finite and skips three passes
        # over all of them per curve and redraw.
        self._steps = GrowingSeries(1, dtype=np.int64)
        self._series = GrowingSeries(2)  # raw loss, smoothed loss
        self._ema, self._ema_count = 0.0, 0
        self._low, self._high = math.inf, -math.inf  # the finite losses' range so far

        self.plot = pg.PlotWidget(self)
        self.plot.setAntialiasing(False)  # the curves draw without it anyway; the grid is crisper
        item = self.plot.getPlotItem()
        item.setTitle("Training loss")
        item.setLabel("bottom", "step")
        item.setLabel("left", "loss")
        item.addItem(MajorGrid(item), ignoreBounds=True)
        item.addLegend(offset=(-8, 8))
        self.raw_curve = self._make_curve(item, RAW_COLOUR, 1, "loss per step", "peak")
        # The EMA has no spikes to keep: one point per pixel column draws it exactly.
        self.smooth_curve = self._make_curve(item, SMOOTH_COLOUR, 2, "smoothed (EMA)", "subsample")
        # Two points at the round ends of the axes, drawn with a transparent pen: the view's
        # automatic range then reaches them rather than the data's own extremes (see
        # _hold_range). With no pen at all, pyqtgraph would leave them out of the range.
        self._range_hold = item.plot([], [], pen=pg.mkPen(0, 0, 0, 0))
        self._held = None
        self._view = item.getViewBox()
        self._view.sigRangeChangedManually.connect(lambda *_: self._redraw.request())  # see _draw

        self.log_box = QCheckBox("Log scale", self)
        self.log_box.setToolTip(
            "Show the loss on a logarithmic axis: late in training the loss changes by small "
            "amounts that a linear axis flattens out."
        )
        self.log_box.toggled.connect(self.set_log)
        self.latest = StatusLine("", self)

        top = QHBoxLayout()
        top.addWidget(self.latest, 1)
        top.addWidget(self.log_box)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(self.plot, 1)

        self._redraw = RedrawTimer(self._draw, parent=self)
        apply_palette(self.plot, self.palette())

    @staticmethod
    def _make_curve(item: pg.PlotItem, colour, width: int, name: str, method: str) -> pg.PlotDataItem:
        # Measured with 200,000 points in a 900-pixel plot (2-core CPU): pyqtgraph's default
        # of ~5 points per pixel column, antialiased, took 60 ms to paint; one min-max pair
        # per column without antialiasing, 1 ms, and looks the same at that density.
        curve = item.plot([], [], pen=pg.mkPen(colour, width=width), name=name, antialias=False,
                          autoDownsampleFactor=1.0)
        curve.setClipToView(True)
        curve.setDownsampling(auto=True, method=method)
        return curve

    # ---- data ----
    def append(self, steps, losses) -> None:
        steps = np.asarray(steps, dtype=np.int64).ravel()
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
        finite = losses[np.isfinite(losses)]
        if len(finite):
            self._low, self._high = min(self._low, finite.min()), max(self._high, finite.max())
        self._steps.append(steps)
        self._series.append(losses, smooth)
        self._redraw.request()

    def clear(self) -> None:
        self._steps.clear()
        self._series.clear()
        # Start the next run from a short axis. Left as it was, pyqtgraph would thin the
        # new run's first points for the old run's range, down to none, and the automatic
        # range would then have nothing to fit (the plot stayed empty for hundreds of steps).
        self._view.setXRange(0, 1, padding=0)
        self._view.enableAutoRange(x=True)
        self._ema, self._ema_count = 0.0, 0
        self._low, self._high = math.inf, -math.inf
        self.latest.set_text("")
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
        self._redraw.request()  # the held loss range is for a linear axis only

    def flush(self) -> None:
        """Redraw now instead of at the next tick."""
        self._redraw.flush()

    # ---- drawing ----
    def _draw(self) -> None:
        x = self._steps.column(0)
        raw, smooth = self._series.column(0), self._series.column(1)
        # pyqtgraph's guard against points far outside a zoomed-in view (a Qt drawing
        # issue) walks every point at every redraw, 0.5 ms for 200,000. While the loss axis
        # follows the data, every point is in view and it is not needed; once the person
        # zooms or pans, it is back.
        guard = None if self._view.autoRangeEnabled()[1] else 1e6
        for curve in (self.raw_curve, self.smooth_curve):
            curve.setDynamicRangeLimit(guard)
        self.raw_curve.setData(x, raw)
        self.smooth_curve.setData(x, smooth)
        self._hold_range(x)
        if len(x):
            raw, smooth = raw[-1], smooth[-1]
            self.latest.set_text(f"step {int(x[-1]):,}: loss {raw:.4f}, smoothed {smooth:.4f}")

    def _hold_range(self, x: np.ndarray) -> None:
        """Put the range-holding points at the axes' round ends (see axis_end and
        loss_axis_bounds); they move only when those do."""
        if not len(x) or self._high < self._low:
            held = None
        elif self.log_box.isChecked():
            held = (axis_end(float(x[-1])), (self._high,))  # a loss: never a change of range
        else:
            held = (axis_end(float(x[-1])), loss_axis_bounds(self._low, self._high))
        if held == self._held:
            return
        self._held = held
        if held is None:
            self._range_hold.setData([], [])
        else:
            end, losses = held
            self._range_hold.setData([end] * len(losses), list(losses))

    def changeEvent(self, event) -> None:
        if event.type() == QEvent.PaletteChange:
            apply_palette(self.plot, self.palette())
        super().changeEvent(event)
