"""The "Schedules" tab: every per-step constant of the selected noise schedule, plotted.

Six small plots (β_t, ᾱ_t, √ᾱ_t, √(1−ᾱ_t), β̃_t, log SNR) share one x axis (the
timestep index t). The selected schedule is drawn bold; "Compare schedules" overlays the
other three. A vertical cursor in every plot follows the forward panel's t, and clicking
or dragging anywhere in a plot moves t, so the plots double as a scrubber.

Curves are created once and only `setData` is called afterwards: rebuilding plot items on
every change would make scrubbing T or the schedule stutter.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QPointF, Qt, Signal
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from ddpm_core.schedules import BETA_SCHEDULES, NoiseSchedule
from ddpm_gui.notation import index_of, shown_t
from ddpm_gui.plot_style import MajorGrid
from ddpm_gui.schedule_controls import ScheduleControls
from ddpm_gui.state import AppState

# Colours chosen to stay readable on both a white and a near-black plot background.
SCHEDULE_COLOURS = {
    "linear": "#3d8fd6",
    "cosine": "#e8782a",
    "quadratic": "#2fa75a",
    "sigmoid": "#c054c8",
}

# (buffer name in NoiseSchedule, plot title, what it means for the hover tooltip)
QUANTITIES = (
    ("betas", "β<sub>t</sub> — noise added at step t", "variance of the noise added at step t"),
    ("alphas_cumprod", "ᾱ<sub>t</sub> — signal variance left", "fraction of x₀'s variance left at step t"),
    (
        "sqrt_alphas_cumprod",
        "√ᾱ<sub>t</sub> — weight of x<sub>0</sub> in x<sub>t</sub>",
        "how much of x₀ is in x_t",
    ),
    (
        "sqrt_one_minus_alphas_cumprod",
        "√(1−ᾱ<sub>t</sub>) — weight of ε in x<sub>t</sub>",
        "how much of the noise ε is in x_t",
    ),
    (
        "posterior_variance",
        "β̃<sub>t</sub> — posterior variance",
        "variance of q(x_{t−1} | x_t, x₀), used when sampling",
    ),
    ("log_snr", "log SNR(t) = log ᾱ<sub>t</sub>/(1−ᾱ<sub>t</sub>)", "signal-to-noise ratio, log scale"),
)
PLOT_COLUMNS = 3
HOVER_HINT = "Click or drag in a plot to move t (the dashed line) · hover to read values"
LOG_SCALABLE = ("betas", "posterior_variance")  # the quantities that span decades


class CursorViewBox(pg.ViewBox):
    """A ViewBox where a left click or drag reports the x under the mouse instead of panning.

    Panning would fight with scrubbing t; the right-click menu (view all, log axes,
    export) stays available.
    """

    cursorRequested = Signal(float)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.setMouseEnabled(x=False, y=False)  # no wheel zoom either: the plots auto-range

    def mouseClickEvent(self, ev) -> None:
        if ev.button() == Qt.LeftButton:
            ev.accept()
            self.cursorRequested.emit(self.mapSceneToView(ev.scenePos()).x())
        else:
            super().mouseClickEvent(ev)

    def mouseDragEvent(self, ev, axis=None) -> None:
        if ev.button() == Qt.LeftButton:
            ev.accept()
            self.cursorRequested.emit(self.mapSceneToView(ev.scenePos()).x())
        else:
            super().mouseDragEvent(ev, axis)


class SchedulePanel(QWidget):
    def __init__(self, state: AppState, parent=None):
        super().__init__(parent)
        self.state = state
        self._values: dict[str, dict[str, np.ndarray]] = {}  # schedule name -> as_numpy()
        self._cursor_stale = False  # t moved while hidden: the cursor lines catch up when shown

        self.compare_box = QCheckBox("Compare schedules", self)
        self.compare_box.setToolTip(
            "Overlay the other β schedules (linear, cosine, quadratic, sigmoid) at the same T,\n"
            "to see how fast each one destroys the signal."
        )
        self.log_box = QCheckBox("Log scale for β", self)
        self.log_box.setToolTip(
            "Draw β_t and β̃_t on a logarithmic axis. They span four orders of magnitude\n"
            "(1e-4 at the start, up to ~1 at the end of the cosine schedule), which a linear\n"
            "axis squashes flat."
        )
        self.schedule_controls = ScheduleControls(state, self)
        # Shows the values under the pointer; when the pointer is elsewhere, how to use the plots.
        # Its own line, wrapped: on the controls' line a long read-out (every schedule, when
        # comparing) widened the window.
        self.hover_label = QLabel(HOVER_HINT, self)
        self.hover_label.setTextFormat(Qt.RichText)
        self.hover_label.setWordWrap(True)
        self._hover_pos: Optional[QPointF] = None  # the pointer over the plots, for the read-out

        self.graphics = pg.GraphicsLayoutWidget(self)
        self.plots: dict[str, pg.PlotItem] = {}
        self.curves: dict[tuple[str, str], pg.PlotDataItem] = {}
        self.cursor_lines: list[pg.InfiniteLine] = []
        self._build_plots()

        top = QHBoxLayout()
        top.addWidget(self.schedule_controls)
        top.addSpacing(16)
        top.addWidget(self.compare_box)
        top.addWidget(self.log_box)
        top.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.hover_label)
        layout.addWidget(self.graphics, 1)

        self.compare_box.toggled.connect(self._refresh_curves)
        self.log_box.toggled.connect(self._set_log_scale)
        state.scheduleChanged.connect(self._refresh_curves)
        state.timestepChanged.connect(self._move_cursor)
        self.graphics.scene().sigMouseMoved.connect(self._on_hover)
        self._refresh_curves()
        self._move_cursor(state.t)
        self._apply_palette()

    # ---- construction ----------------------------------------------------------------
    def _build_plots(self) -> None:
        first = None
        for i, (key, title, _) in enumerate(QUANTITIES):
            vb = CursorViewBox()
            plot = self.graphics.addPlot(row=i // PLOT_COLUMNS, col=i % PLOT_COLUMNS, viewBox=vb, title=title)
            # Not showGrid: the axes' grid made each repaint several ms, per plot (see MajorGrid).
            plot.addItem(MajorGrid(plot), ignoreBounds=True)
            plot.setLabel("bottom", "t")
            plot.hideButtons()  # the "A" auto-range button: ranges are always automatic here
            if first is None:
                first = plot
                self.legend = plot.addLegend(offset=(10, 10))  # top left: every β curve rises to the right
            else:
                plot.setXLink(first)
            vb.cursorRequested.connect(self._on_cursor_requested)
            for name in BETA_SCHEDULES:
                self.curves[(key, name)] = plot.plot([], [], name=None)
            line = pg.InfiniteLine(angle=90, movable=False, pen=self._cursor_pen())
            plot.addItem(line, ignoreBounds=True)
            self.cursor_lines.append(line)
            self.plots[key] = plot

    def _cursor_pen(self):
        colour = self.palette().color(QPalette.Text)
        return pg.mkPen(colour, width=1, style=Qt.DashLine)

    # ---- following the state ---------------------------------------------------------
    def shown_schedules(self) -> list[str]:
        """The selected schedule first, then the others when comparing."""
        selected = self.state.schedule_name
        others = [n for n in BETA_SCHEDULES if n != selected] if self.compare_box.isChecked() else []
        return [selected] + others

    def _schedule_values(self, name: str) -> dict[str, np.ndarray]:
        if name == self.state.schedule_name:
            return self.state.schedule.as_numpy()
        return NoiseSchedule.from_name(name, self.state.timesteps).as_numpy()

    def _refresh_curves(self, *_) -> None:
        shown = self.shown_schedules()
        selected = shown[0]
        T = self.state.timesteps
        x = np.arange(1, T + 1, dtype=np.float64)  # the paper's t = 1…T (notation.py): index + 1
        self._values = {name: self._schedule_values(name) for name in shown}
        for (key, name), curve in self.curves.items():
            if name in self._values:
                width = 3 if name == selected and len(shown) > 1 else 2
                curve.setPen(pg.mkPen(SCHEDULE_COLOURS[name], width=width))
                curve.setData(x, self._values[name][key])
                curve.setZValue(10 if name == selected else 0)  # the selected one on top
                curve.show()
            else:
                curve.setData([], [])
                curve.hide()
        self.legend.clear()
        for name in shown:
            label = f"{name} (selected)" if name == selected and len(shown) > 1 else name
            self.legend.addItem(self.curves[(QUANTITIES[0][0], name)], label)
        self._fit_x()
        for plot in self.plots.values():
            plot.enableAutoRange(axis="y")
        self._move_cursor(self.state.t)
        # The values under a pointer that stayed put are not the old schedule's any more.
        self._show_values_at(self._hover_pos)

    def _set_log_scale(self, on: bool) -> None:
        for key in LOG_SCALABLE:
            self.plots[key].setLogMode(x=False, y=on)
        self._fit_x()

    def _fit_x(self) -> None:
        for plot in self.plots.values():
            plot.setXRange(1, self.state.timesteps, padding=0.02)

    def _move_cursor(self, t: int) -> None:
        # While another tab is shown, moving six plot items at every step of a slider drag
        # is work on the scrubbing path that nobody sees: showEvent catches up instead.
        self._cursor_stale = not self.isVisible()
        if self._cursor_stale:
            return
        for line in self.cursor_lines:
            line.setValue(shown_t(t))

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if self._cursor_stale:
            self._move_cursor(self.state.t)

    def _on_cursor_requested(self, x: float) -> None:
        self.state.set_t(index_of(x))  # the state clamps to 0..T-1

    # ---- hover readout ----------------------------------------------------------------
    def _on_hover(self, scene_pos: QPointF) -> None:
        self._hover_pos = scene_pos
        self._show_values_at(scene_pos)

    def _show_values_at(self, scene_pos: Optional[QPointF]) -> None:
        for key, title, meaning in QUANTITIES if scene_pos is not None else ():
            plot = self.plots[key]
            if not plot.vb.sceneBoundingRect().contains(scene_pos):
                continue
            i = index_of(plot.vb.mapSceneToView(scene_pos).x())
            if not 0 <= i < self.state.timesteps:
                break
            parts = [
                f"<span style='color:{SCHEDULE_COLOURS[name]}'>{name} {values[key][i]:.4g}</span>"
                for name, values in self._values.items()
            ]
            self.hover_label.setText(f"{title.split(' —')[0]} at t = {shown_t(i)}: " + " · ".join(parts))
            self.hover_label.setToolTip(meaning)
            return
        self.hover_label.setText(HOVER_HINT)
        self.hover_label.setToolTip("")

    # ---- theme -------------------------------------------------------------------------
    def changeEvent(self, event) -> None:
        if event.type() == QEvent.PaletteChange:
            self._apply_palette()
        super().changeEvent(event)

    def _apply_palette(self) -> None:
        """Follow a light/dark switch: plot background, axes and cursor from the palette."""
        pal = self.palette()
        self.graphics.setBackground(pal.color(QPalette.Base))
        text = pal.color(QPalette.Text)
        for plot in self.plots.values():
            for side in ("left", "bottom"):
                axis = plot.getAxis(side)
                axis.setPen(text)
                axis.setTextPen(text)
            for child in plot.items:
                if isinstance(child, MajorGrid):
                    child.set_colour(text)
            plot.titleLabel.setText(plot.titleLabel.text, color=text)
        self.legend.setLabelTextColor(text)
        backdrop = pal.color(QPalette.Base)
        backdrop.setAlpha(210)  # the cursor line may pass behind the legend: keep it readable
        self.legend.setBrush(pg.mkBrush(backdrop))
        for line in self.cursor_lines:
            line.setPen(self._cursor_pen())
