"""Autosave timing: save at least every N minutes, so a crash loses at most that much work.

One small clock shared by the command line and the app. It only says *when*; each caller
saves where it keeps its checkpoints. Any save (autosave or not) restarts the clock.
"""

from __future__ import annotations

import time
from typing import Callable, Optional


class AutosaveClock:
    def __init__(self, minutes: float, clock: Optional[Callable[[], float]] = None):
        self.interval = float(minutes) * 60.0  # 0: autosave is off
        self._clock = clock or time.monotonic
        self._last = self._clock()

    @property
    def enabled(self) -> bool:
        return self.interval > 0

    def due(self) -> bool:
        """True once `minutes` have passed since the last save (or the start)."""
        return self.enabled and self._clock() - self._last >= self.interval

    def saved(self) -> None:
        """Tell the clock a checkpoint was just written."""
        self._last = self._clock()
