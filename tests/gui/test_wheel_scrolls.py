"""The wheel over the Training settings scrolls them; it changes a field only once the
field has focus."""

from __future__ import annotations

from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication

from ddpm_gui.training_panel import TrainingPanel


def wheel_down(widget) -> None:
    centre = QPointF(widget.rect().center())
    event = QWheelEvent(centre, QPointF(widget.mapToGlobal(centre.toPoint())), QPoint(0, 0), QPoint(0, -120),
                        Qt.NoButton, Qt.NoModifier, Qt.NoScrollPhase, False)
    QApplication.sendEvent(widget, event)


def test_the_wheel_scrolls_past_fields_and_turns_only_a_focused_one(qtbot, state):
    panel = TrainingPanel(state)
    qtbot.addWidget(panel)
    panel.resize(900, 400)  # short: the settings need scrolling
    panel.show()
    qtbot.waitExposed(panel)
    bar = panel.settings_area.verticalScrollBar()
    assert bar.maximum() > 0
    device = panel.form.device
    before = device.currentIndex()
    wheel_down(device)
    assert device.currentIndex() == before and bar.value() > 0
    device.setFocus()
    qtbot.waitUntil(device.hasFocus)
    wheel_down(device)
    assert device.currentIndex() != before
    panel.shutdown(ask=False)


def test_a_wheel_passing_over_the_schedule_picker_changes_nothing(qtbot, state):
    from ddpm_gui.schedule_controls import ScheduleControls

    controls = ScheduleControls(state)
    qtbot.addWidget(controls)
    controls.show()
    qtbot.waitExposed(controls)
    wheel_down(controls.schedule_combo)
    wheel_down(controls.steps_spin)
    assert (state.schedule_name, state.timesteps) == ("linear", 20)  # the fixture's
    controls.steps_spin.setFocus()
    qtbot.waitUntil(controls.steps_spin.hasFocus)
    wheel_down(controls.steps_spin)
    assert state.timesteps == 19
