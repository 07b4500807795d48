"""The Schedules tab: curves of the selected schedule, the comparison overlay, the t cursor."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt

from ddpm_core.schedules import BETA_SCHEDULES, NoiseSchedule



@pytest.fixture
def app_state(qapp):
    from ddpm_gui.state import AppState

    return AppState()


@pytest.fixture
def panel(qtbot, app_state):
    from ddpm_gui.schedule_panel import SchedulePanel

    p = SchedulePanel(app_state)
    qtbot.addWidget(p)
    p.resize(1100, 700)
    p.show()
    qtbot.waitExposed(p)
    return p


def visible_curves(panel, key="alphas_cumprod"):
    return [name for name in BETA_SCHEDULES if panel.curves[(key, name)].isVisible()]


def test_curves_show_the_selected_schedule(panel, app_state):
    values = app_state.schedule.as_numpy()
    for key in ("betas", "alphas_cumprod", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
                "posterior_variance", "log_snr"):
        x, y = panel.curves[(key, "linear")].getData()
        assert len(x) == app_state.timesteps
        np.testing.assert_allclose(y, values[key])
    assert visible_curves(panel) == ["linear"]


def test_schedule_and_T_changes_update_the_curves(panel, app_state):
    app_state.set_schedule("cosine", 500)
    x, y = panel.curves[("alphas_cumprod", "cosine")].getData()
    assert len(x) == 500
    np.testing.assert_allclose(y, NoiseSchedule.from_name("cosine", 500).as_numpy()["alphas_cumprod"])
    assert visible_curves(panel) == ["cosine"]
    assert panel.schedule_controls.schedule_combo.currentText() == "cosine"
    assert panel.schedule_controls.steps_spin.value() == 500


def test_compare_overlays_the_other_schedules(panel, app_state):
    assert len(panel.legend.items) == 1
    panel.compare_box.setChecked(True)
    assert visible_curves(panel) == list(BETA_SCHEDULES)
    assert len(panel.legend.items) == 4
    _, y = panel.curves[("log_snr", "quadratic")].getData()
    np.testing.assert_allclose(y, NoiseSchedule.from_name("quadratic", app_state.timesteps).as_numpy()["log_snr"])
    panel.compare_box.setChecked(False)
    assert visible_curves(panel) == ["linear"]


def test_cursor_follows_t(panel, app_state):
    app_state.set_t(42)  # index 42 is the paper's t = 43, where the axis shows it
    assert all(line.value() == 43 for line in panel.cursor_lines)


def widget_pos(panel, key, t, y):
    """Where on the GraphicsLayoutWidget the point (t, y) of a plot is drawn."""
    vb = panel.plots[key].vb
    return panel.graphics.mapFromScene(vb.mapViewToScene(QPointF(t, y)))


def test_clicking_a_plot_moves_t(panel, app_state, qtbot):
    pos = widget_pos(panel, "alphas_cumprod", 100, 0.5)
    qtbot.mouseClick(panel.graphics.viewport(), Qt.LeftButton, pos=pos)
    assert abs(app_state.t - 100) <= 2  # one pixel is about one step here


def test_dragging_on_a_plot_scrubs_t(panel, app_state, qtbot):
    viewport = panel.graphics.viewport()
    start = widget_pos(panel, "log_snr", 50, 0)
    end = widget_pos(panel, "log_snr", 200, 0)
    qtbot.mousePress(viewport, Qt.LeftButton, pos=start)
    for k in range(1, 11):  # pyqtgraph starts a drag after a few pixels of movement
        qtbot.mouseMove(viewport, start + (end - start) * k / 10)
    qtbot.mouseRelease(viewport, Qt.LeftButton, pos=end)
    assert abs(app_state.t - 200) <= 2


def test_log_scale_for_beta(panel):
    panel.log_box.setChecked(True)
    assert panel.plots["betas"].getAxis("left").logMode
    assert not panel.plots["alphas_cumprod"].getAxis("left").logMode


def test_hover_shows_values(panel, app_state):
    vb = panel.plots["alphas_cumprod"].vb
    panel._on_hover(vb.mapViewToScene(QPointF(120, 0.5)))
    text = panel.hover_label.text()
    assert "t = 120" in text  # the paper's t: index 119
    assert f"{app_state.schedule.as_numpy()['alphas_cumprod'][119]:.4g}" in text


def test_the_hover_readout_follows_a_schedule_change(panel, app_state):
    # The pointer stays put while T changes (typed in the picker): the numbers under it
    # are the new schedule's, not the old one's.
    import re

    vb = panel.plots["alphas_cumprod"].vb
    panel._on_hover(vb.mapViewToScene(QPointF(150, 0.5)))
    app_state.set_schedule("linear", 1000)  # the axis now spans 1,000 steps: another t is under it
    text = panel.hover_label.text()
    t = int(re.search(r"at t = (\d+)", text).group(1))
    assert t != 150 and f"linear {app_state.schedule.as_numpy()['alphas_cumprod'][t - 1]:.4g}" in text


def test_the_readout_never_widens_the_window(panel, app_state):
    panel.compare_box.setChecked(True)  # four schedules in the read-out
    before = panel.minimumSizeHint().width()
    panel._on_hover(panel.plots["alphas_cumprod"].vb.mapViewToScene(QPointF(150, 0.5)))
    assert "sigmoid" in panel.hover_label.text() and panel.minimumSizeHint().width() <= before


def test_this_tab_has_its_own_schedule_picker(panel, app_state):
    panel.schedule_controls.schedule_combo.setCurrentText("quadratic")
    assert app_state.schedule_name == "quadratic"
    assert visible_curves(panel) == ["quadratic"]
    panel.schedule_controls.steps_spin.setValue(50)
    assert app_state.timesteps == 50
    assert len(panel.curves[("betas", "quadratic")].getData()[0]) == 50
