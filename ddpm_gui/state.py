"""State shared by the panels of the main window, with signals so views can follow it.

Panels never talk to each other directly: the forward panel sets the timestep, the schedule
plot follows `timestepChanged`; the training panel publishes its model, the viewer samples
from `model`. Everything here lives on the GUI thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from PySide6.QtCore import QObject, Signal

from ddpm_core.config import TIMESTEPS_RANGE, DataConfig, RunConfig
from ddpm_core.errors import ConfigError
from ddpm_core.schedules import NoiseSchedule


@dataclass
class ModelSnapshot:
    """A model ready for sampling on the GUI side: its own copy, never the training one."""

    model: object  # ddpm_core.Unet, in eval mode, requires_grad False, on `device`
    schedule: NoiseSchedule  # on the same device as the model
    config: RunConfig
    source: str  # e.g. "training run, step 1200" or a checkpoint path
    step: int


class AppState(QObject):
    scheduleChanged = Signal()  # schedule name or T changed; read `schedule`
    timestepChanged = Signal(int)  # the t shown by the forward panel (0..T-1)
    dataChanged = Signal()  # dataset / image size / channels changed; read `data`
    modelChanged = Signal()  # a new model is available for sampling; read `model`
    status = Signal(str)  # a short message for the status bar
    errorOccurred = Signal(str)  # a one-line message; the window shows a dialog and the status bar

    def __init__(self, parent=None):
        super().__init__(parent)
        self._schedule_name = "linear"
        self._timesteps = 300
        self._schedule = NoiseSchedule.from_name(self._schedule_name, self._timesteps)
        self._t = 0
        self.data = DataConfig()
        self.model: Optional[ModelSnapshot] = None

    # ---- schedule ----
    @property
    def schedule_name(self) -> str:
        return self._schedule_name

    @property
    def timesteps(self) -> int:
        return self._timesteps

    @property
    def schedule(self) -> NoiseSchedule:
        """The selected schedule on the CPU (for plots, readouts and the forward view)."""
        return self._schedule

    def set_schedule(self, name: str, timesteps: int) -> None:
        """Raises ConfigError for an unknown name or a T outside TIMESTEPS_RANGE."""
        if (name, timesteps) == (self._schedule_name, self._timesteps):
            return
        low, high = TIMESTEPS_RANGE
        if not low <= timesteps <= high:
            raise ConfigError(f"T = {timesteps:,} is out of range: use {low} to {high:,} diffusion steps")
        self._schedule = NoiseSchedule.from_name(name, timesteps)  # raises ConfigError when invalid
        self._schedule_name, self._timesteps = name, timesteps
        self.scheduleChanged.emit()
        if self._t >= timesteps:
            self.set_t(timesteps - 1)

    # ---- timestep ----
    @property
    def t(self) -> int:
        return self._t

    def set_t(self, t: int) -> None:
        t = max(0, min(int(t), self._timesteps - 1))
        if t != self._t:
            self._t = t
            self.timestepChanged.emit(t)

    # ---- data ----
    def set_data(self, data: DataConfig) -> None:
        if data != self.data:
            self.data = data
            self.dataChanged.emit()

    # ---- model ----
    def set_model(self, snapshot: ModelSnapshot) -> None:
        self.model = snapshot
        self.modelChanged.emit()
