"""The schedule picker (β schedule + T), bound to the shared AppState.

The forward-process and schedule tabs both show one; they edit the same state the
training panel reads, so every tab always agrees on which schedule is selected.
"""

from __future__ import annotations

from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QSpinBox, QWidget

from ddpm_core.config import TIMESTEPS_RANGE
from ddpm_core.errors import DDPMError
from ddpm_core.schedules import BETA_SCHEDULES
from ddpm_gui.state import AppState
from ddpm_gui.wheel_scrolls import WheelNeedsFocus

MIN_T, MAX_T = TIMESTEPS_RANGE  # as training allows: a T the form takes is never clipped here


class ScheduleControls(QWidget):
    def __init__(self, state: AppState, parent=None):
        super().__init__(parent)
        self.state = state
        self.schedule_combo = QComboBox(self)
        self.schedule_combo.addItems(list(BETA_SCHEDULES))
        self.schedule_combo.setToolTip(
            "The β schedule: how fast noise is added over the T steps (shared with training).\n"
            "linear: Ho et al. 2020 · cosine: Nichol & Dhariwal 2021, keeps more signal for longer ·\n"
            "quadratic · sigmoid."
        )
        self.steps_spin = QSpinBox(self)
        self.steps_spin.setRange(MIN_T, MAX_T)
        self.steps_spin.setKeyboardTracking(False)  # typing "1000" should not build T=1, 10, 100 first
        self.steps_spin.setToolTip(
            "T: the number of diffusion steps (shared with training). With more steps each β_t is\n"
            "smaller for the same schedule shape; DDPM sampling takes T network calls."
        )
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("Schedule", self))
        layout.addWidget(self.schedule_combo)
        layout.addSpacing(8)
        layout.addWidget(QLabel("T", self))
        layout.addWidget(self.steps_spin)

        self.schedule_combo.currentTextChanged.connect(self._apply)
        self.steps_spin.valueChanged.connect(self._apply)
        state.scheduleChanged.connect(self._sync)
        self._sync()
        # A wheel passing over the picker must not change the schedule every tab and the
        # next training run use: it takes the wheel once clicked.
        WheelNeedsFocus(self)

    def _apply(self, *_) -> None:
        try:
            self.state.set_schedule(self.schedule_combo.currentText(), self.steps_spin.value())
        except DDPMError as e:
            self.state.errorOccurred.emit(str(e))
            self._sync()

    def _sync(self) -> None:
        for w in (self.schedule_combo, self.steps_spin):
            w.blockSignals(True)
        self.schedule_combo.setCurrentText(self.state.schedule_name)
        self.steps_spin.setValue(self.state.timesteps)
        for w in (self.schedule_combo, self.steps_spin):
            w.blockSignals(False)
