"""Every fast path of the window draws what the plain path would.

The speed itself is measured by scripts/bench_gui.py, never here: these tests only check
that what the optimisations show is right (x_t pixels against the engine's q_sample,
every loss point kept behind the decimated curve, labels never cut off, ...).
"""

from __future__ import annotations

import gc

import numpy as np
import pytest
import torch
from PySide6.QtCore import QEvent, QObject
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QLabel, QTabWidget, QVBoxLayout, QWidget

from ddpm_core.diffusion import q_sample
from ddpm_core.export import to_uint8

# A shown pixel may differ from the engine's by one level: the window rounds half up,
# the engine's to_uint8 rounds half to even, and float32 sums may land on either side.
PIXEL_TOLERANCE = 1


def shown_pixels(image: QImage) -> np.ndarray:
    """uint8 (H, W, 3) of what an ImageGrid draws (whatever its internal format)."""
    rgb = image.convertToFormat(QImage.Format_RGB888)
    h, w = rgb.height(), rgb.width()
    bits = np.frombuffer(rgb.constBits(), np.uint8, rgb.sizeInBytes()).reshape(h, rgb.bytesPerLine())
    return bits[:, : 3 * w].reshape(h, w, 3).copy()


def grid_pixels(view) -> np.ndarray:
    return np.stack([shown_pixels(view.image(i)) for i in range(view.image_count())])


def engine_x_t(state, x0: np.ndarray, noise: np.ndarray, t: int) -> np.ndarray:
    """The engine's x_t as uint8 (N, H, W, 3): q_sample, then to_uint8, grey as RGB."""
    n = len(x0)
    x = q_sample(state.schedule, torch.from_numpy(x0), torch.full((n,), t), noise=torch.from_numpy(noise))
    u8 = to_uint8(x)
    return np.repeat(u8, 3, axis=-1) if u8.shape[-1] == 1 else u8


# ---- the forward process -----------------------------------------------------------------


@pytest.fixture
def forward(qtbot, state):
    from ddpm_gui.forward_panel import ForwardPanel

    state.set_schedule("linear", 300)
    panel = ForwardPanel(state)
    qtbot.addWidget(panel)
    panel.resize(1100, 750)
    panel.show()
    panel.set_image_count(16)
    qtbot.waitUntil(lambda: panel.big_view.image_count() == 16, timeout=10_000)
    yield panel
    panel.shutdown()


def test_sixteen_x_t_shown_are_the_engines_q_sample(forward, state):
    assert forward.x0_batch.shape[0] == 16
    for t in (0, 1, 77, 150, 298, 299):
        forward.t_slider.setValue(t)
        expected = engine_x_t(state, forward.x0_batch, forward.noise_batch, t)
        shown = grid_pixels(forward.big_view).astype(int)
        assert shown.shape == expected.shape
        assert np.abs(shown - expected).max() <= PIXEL_TOLERANCE, f"t = {t}"


def test_x_t_after_many_slider_moves_is_still_right(forward, state):
    # No stale frame may survive a fast scrub: the last one shown is the slider's t.
    rng = np.random.default_rng(1)
    for t in rng.integers(0, 300, 200):
        forward.t_slider.setValue(int(t))
    t = forward.t_slider.value()
    expected = engine_x_t(state, forward.x0_batch, forward.noise_batch, t)
    assert np.abs(grid_pixels(forward.big_view).astype(int) - expected).max() <= PIXEL_TOLERANCE


def test_colour_images_are_shown_as_the_engine_makes_them(forward, state, qtbot):
    from ddpm_core.config import DataConfig

    state.set_data(DataConfig(image_size=8, channels=3))
    qtbot.waitUntil(lambda: forward.x0_batch is not None and forward.x0_batch.shape[1:] == (3, 8, 8), timeout=10_000)
    forward.t_slider.setValue(40)
    expected = engine_x_t(state, forward.x0_batch, forward.noise_batch, 40)
    assert np.abs(grid_pixels(forward.big_view).astype(int) - expected).max() <= PIXEL_TOLERANCE


def test_numbers_whose_label_size_is_fixed_are_never_cut_off(forward, state):
    # Fixed-size labels (no relayout per slider move) must still fit every text they get:
    # here the widest, with T at its maximum.
    from ddpm_gui.schedule_controls import MAX_T

    state.set_schedule("cosine", MAX_T)
    labels = [forward.xt_title, forward.equation, *forward.readouts.values()]
    for t in (0, 1, 9, 99, 999, MAX_T // 2, MAX_T - 1):
        state.set_t(t)
        for label in labels:
            plain = QLabel(label.text())  # what a free-sized label would need
            plain.setFont(label.font())
            assert plain.sizeHint().width() <= label.width(), (t, label.text())
            assert plain.sizeHint().height() <= label.height(), (t, label.text())


class _LayoutRequests(QObject):
    def __init__(self):
        super().__init__()
        self.count = 0

    def eventFilter(self, obj, event):
        if event.type() == QEvent.LayoutRequest:
            self.count += 1
        return False


def test_a_slider_move_does_not_re_lay_out_the_panel(forward, qapp):
    qapp.processEvents()
    watch = _LayoutRequests()
    forward.installEventFilter(watch)
    for t in (5, 123, 299):
        forward.t_slider.setValue(t)
        qapp.processEvents()
    assert watch.count == 0


# ---- image conversion --------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 3])
def test_rgb32_images_hold_the_same_pixels_as_the_uint8_images(qapp, channels):
    from ddpm_gui.image_view import ImageGrid, to_uint8_nhwc

    rng = np.random.default_rng(0)
    images = rng.uniform(-1.2, 1.2, (5, channels, 7, 6)).astype(np.float32)  # some clipped
    grid = ImageGrid()
    grid.set_images(images)
    expected = to_uint8_nhwc(images)
    if channels == 1:
        expected = np.repeat(expected, 3, axis=-1)
    assert np.array_equal(grid_pixels(grid), expected)


def test_an_image_handed_out_stays_valid_after_new_images(qapp):
    # ZoomDialog keeps grid.image(i): it must not share memory the grid reuses.
    from ddpm_gui.image_view import ImageGrid

    grid = ImageGrid()
    grid.set_images(np.full((1, 1, 4, 4), -1.0, np.float32))
    kept = grid.image(0)
    before = shown_pixels(kept)
    grid.set_images(np.full((1, 1, 4, 4), 1.0, np.float32))
    gc.collect()
    assert np.array_equal(shown_pixels(kept), before)


# ---- the loss plot -----------------------------------------------------------------------


@pytest.fixture
def loss_plot(qtbot):
    from ddpm_gui.loss_plot import LossPlot

    plot = LossPlot()
    qtbot.addWidget(plot)
    plot.resize(900, 400)
    plot.show()
    qtbot.waitExposed(plot)
    return plot


def spiky_losses(n: int, rng) -> np.ndarray:
    losses = 0.05 + 0.01 * rng.random(n)
    losses[12_345] = 3.0  # one spike the decimated curve must still show
    losses[150_000] = 0.001  # and one dip
    return losses


def test_the_decimated_curve_holds_every_point_and_draws_the_spikes(loss_plot, qapp):
    rng = np.random.default_rng(0)
    n = 200_000
    losses = spiky_losses(n, rng)
    for start in range(0, n, 20_000):
        loss_plot.append(np.arange(start + 1, start + 20_001), losses[start : start + 20_000])
    loss_plot.flush()
    qapp.processEvents()
    curve = loss_plot.raw_curve
    # Every point is held...
    assert loss_plot.point_count() == n
    assert len(curve.xData) == n and np.array_equal(curve.yData, losses)
    # ...but few are drawn: about two per pixel column, with the extremes kept.
    x, y = curve.curve.getData()
    columns = loss_plot.plot.getPlotItem().getViewBox().width()
    assert len(x) <= 2 * columns + 4
    assert y.max() == 3.0 and y.min() == pytest.approx(0.001)
    assert x.min() <= 1 + n / columns and x.max() >= n - n / columns


def test_smoothed_curve_is_drawn_at_the_ema_values(loss_plot, qapp):
    rng = np.random.default_rng(1)
    loss_plot.append(np.arange(1, 100_001), 0.05 + 0.01 * rng.random(100_000))
    loss_plot.flush()
    qapp.processEvents()
    held_x, held_y = loss_plot.smooth_curve.xData, loss_plot.smooth_curve.yData
    x, y = loss_plot.smooth_curve.curve.getData()
    assert len(held_x) == 100_000 and len(x) < 5_000
    # Each drawn point is one of the smoothed points, at its own step.
    idx = np.searchsorted(held_x, x)
    assert np.array_equal(held_x[idx], x) and np.allclose(held_y[idx], y)


def test_zooming_in_draws_the_points_in_view_at_full_detail(loss_plot, qapp):
    rng = np.random.default_rng(2)
    losses = spiky_losses(200_000, rng)
    loss_plot.append(np.arange(1, 200_001), losses)
    loss_plot.flush()
    view = loss_plot.plot.getPlotItem().getViewBox()
    view.setXRange(12_300, 12_400, padding=0)  # 100 steps: every one of them drawn
    loss_plot.flush()
    qapp.processEvents()
    x, y = loss_plot.raw_curve.curve.getData()
    inside = (x >= 12_300) & (x <= 12_400)
    assert np.array_equal(x[inside], np.arange(12_300, 12_401))
    assert np.array_equal(y[inside], losses[12_299:12_400])


def test_the_step_axis_always_shows_every_point(loss_plot, qapp):
    from ddpm_gui.loss_plot import axis_end

    view = loss_plot.plot.getPlotItem().getViewBox()
    step = 0
    for k in (1, 7, 50, 400, 3_000, 25_000, 171_572):
        loss_plot.append(np.arange(step + 1, step + k + 1), np.full(k, 0.1))
        step += k
        loss_plot.flush()
        qapp.processEvents()
        x_min, x_max = view.viewRange()[0]
        assert x_min <= 1 and x_max >= step
        assert axis_end(step) >= 1.05 * step
    loss_plot.clear()
    loss_plot.append([1, 2], [0.3, 0.2])
    loss_plot.flush()
    qapp.processEvents()
    assert view.viewRange()[0][1] < 10  # a new run starts from a short axis again


def test_axis_end_moves_in_round_steps():
    from ddpm_gui.loss_plot import axis_end

    ends = {axis_end(s) for s in range(100_000, 110_000)}
    assert ends == {150_000.0}  # 10,000 more steps, not one change of range
    for s in (1, 3, 9.9, 10, 1234, 99_999, 10**7):
        end = axis_end(s)
        assert 1.05 * s <= end <= 1.05 * s + 10 ** np.floor(np.log10(s)) / 2 + 1e-9


def test_the_loss_axis_always_shows_every_loss_and_moves_in_round_steps(loss_plot, qapp):
    view = loss_plot.plot.getPlotItem().getViewBox()
    rng = np.random.default_rng(3)
    ranges = set()
    step = 0
    for _ in range(200):  # a falling loss with noise, 10 steps per report
        losses = 0.05 + 0.5 * np.exp(-np.arange(step, step + 10) / 300) + 0.02 * rng.random(10)
        loss_plot.append(np.arange(step + 1, step + 11), losses)
        step += 10
        loss_plot.flush()
        qapp.processEvents()
        (x0, x1), (y0, y1) = view.viewRange()
        assert x0 <= 1 and x1 >= step
        assert y0 <= loss_plot.raw_curve.yData.min() and y1 >= loss_plot.raw_curve.yData.max()
        ranges.add((round(y0, 9), round(y1, 9)))
    assert len(ranges) <= 40  # not a new range at each of the 200 updates


def test_loss_axis_bounds_are_round_and_hold_the_data():
    from ddpm_gui.loss_plot import loss_axis_bounds

    for low, high in ((0.0312, 0.587), (0.05, 0.05), (1e-4, 3e-4), (2.0, 1500.0)):
        lo, hi = loss_axis_bounds(low, high)
        assert lo <= low and hi >= high
        unit = 10 ** np.floor(np.log10(high - low if high > low else abs(high))) / 2
        assert np.isclose(lo / unit, round(lo / unit)) and np.isclose(hi / unit, round(hi / unit))


def test_loss_by_timestep_bars_always_fit_their_axis(qtbot, qapp):
    from ddpm_gui.loss_by_t import LossByTimestepPlot, bar_axis_top

    plot = LossByTimestepPlot()
    qtbot.addWidget(plot)
    plot.show()
    plot.reset(300, run_length=1000)
    view = plot.plot.getPlotItem().getViewBox()
    rng = np.random.default_rng(4)
    for level in np.geomspace(1.0, 0.01, 60):  # the loss falls a hundredfold
        plot.add(rng.integers(0, 300, 64), level * (1 + rng.random(64)))
        plot.flush()
        qapp.processEvents()
        highest = np.nanmax(plot.stats.means())
        bottom, top = view.viewRange()[1]
        assert bottom <= 0 and highest <= top  # every bar fits...
        assert highest >= 0.5 * top * 0.98  # ...and none is squeezed flat (2 % padding)
    assert bar_axis_top(0.5, None) == pytest.approx(0.6)  # the round number above +10 %
    assert bar_axis_top(0.45, 0.6) == 0.6  # kept while the bars fill half of it
    assert bar_axis_top(0.2, 0.6) == pytest.approx(0.25)


def test_log_scale_keeps_every_point(loss_plot, qapp):
    loss_plot.append(np.arange(1, 50_001), np.geomspace(1.0, 0.01, 50_000))
    loss_plot.set_log(True)
    loss_plot.flush()
    qapp.processEvents()
    assert len(loss_plot.raw_curve.xData) == 50_000
    _, y = loss_plot.raw_curve.curve.getData()
    assert y.max() == pytest.approx(0.0) and y.min() == pytest.approx(-2.0, abs=1e-3)  # log10


def test_the_latest_values_line_shows_the_whole_text(loss_plot):
    loss_plot.append([199_999, 200_000], [0.1234, 0.0456])
    loss_plot.flush()
    line = loss_plot.latest
    assert line.text().startswith("step 200,000: loss 0.0456")
    assert line.fontMetrics().horizontalAdvance(line.text()) <= line.width()


# ---- the grid ----------------------------------------------------------------------------


def test_major_grid_lines_sit_on_the_axis_ticks(loss_plot, qapp):
    from ddpm_gui.plot_style import MajorGrid

    loss_plot.append(np.arange(1, 1001), np.linspace(0.5, 0.1, 1000))
    loss_plot.flush()
    qapp.processEvents()
    item = loss_plot.plot.getPlotItem()
    grid = next(i for i in item.items if isinstance(i, MajorGrid))
    loss_plot.plot.viewport().repaint()  # the lines are computed for the current range
    view = item.getViewBox()
    (x0, x1), (y0, y1) = view.viewRange()
    xs = item.getAxis("bottom").tickValues(x0, x1, view.width())[0][1]
    ys = item.getAxis("left").tickValues(y0, y1, view.height())[0][1]
    vertical = [line.x1() for line in grid._lines if line.x1() == line.x2()]
    horizontal = [line.y1() for line in grid._lines if line.y1() == line.y2()]
    assert vertical == pytest.approx(xs) and horizontal == pytest.approx(ys)


# ---- the tab widget, the schedule cursor, the engine loader --------------------------------------


def _page_with_label(text: str):
    page = QWidget()
    layout = QVBoxLayout(page)
    label = QLabel(text, page)
    layout.addWidget(label)
    layout.addStretch(1)
    return page, label


def test_quiet_tab_widget_lays_pages_out_as_qtabwidget_does(qtbot, qapp):
    from ddpm_gui.redraw import QuietTabWidget

    results = []
    for cls in (QTabWidget, QuietTabWidget):
        tabs = cls()
        qtbot.addWidget(tabs)
        page, label = _page_with_label("short")
        tabs.addTab(page, "One")
        tabs.addTab(QWidget(), "Two")
        tabs.resize(500, 300)
        tabs.show()
        qtbot.waitExposed(tabs)
        label.setText("a much longer text than before, to change the label's size hint")
        qapp.processEvents()
        qapp.processEvents()
        tabs.addTab(QWidget(), "A third tab with a long title")  # the tab bar changes size
        qapp.processEvents()
        qapp.processEvents()
        results.append((label.geometry(), page.geometry(), tabs.tabBar().geometry()))
    assert results[0] == results[1]


def test_schedule_cursor_catches_up_when_its_tab_is_shown(qtbot, state):
    from ddpm_gui.schedule_panel import SchedulePanel

    panel = SchedulePanel(state)
    qtbot.addWidget(panel)
    panel.show()
    panel.hide()
    state.set_t(7)  # moved while the tab is hidden: nothing redrawn...
    panel.show()  # ...until it is shown
    assert all(line.value() == 8 for line in panel.cursor_lines)  # index 7 is drawn at t = 8


def test_the_loader_warms_up_and_freezes_only_once_the_window_allows(qtbot):
    from ddpm_gui.engine_loader import EngineLoader

    gc.unfreeze()  # an earlier test's window may have frozen objects already
    loader = EngineLoader()
    try:
        with qtbot.waitSignal(loader.finished, timeout=60_000) as blocker:
            loader.start()
        assert blocker.args[0] == ""  # no error
        qtbot.wait(100)
        assert loader.is_running() and gc.get_freeze_count() == 0  # waiting for the window
        loader.allow_warm_up()
        qtbot.waitUntil(lambda: not loader.is_running(), timeout=60_000)
        assert gc.get_freeze_count() > 0
    finally:
        loader.allow_warm_up()
        gc.unfreeze()


def test_objects_made_after_the_freeze_are_still_collected():
    from ddpm_gui.engine_loader import freeze_imported_objects

    freeze_imported_objects()
    try:
        assert gc.get_freeze_count() > 0

        class Node:
            pass

        a, b = Node(), Node()
        a.other, b.other = b, a  # a cycle: only the collector frees it
        del a, b
        assert gc.collect() >= 2
    finally:
        gc.unfreeze()
