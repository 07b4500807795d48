"""Coalescing redraws: many "data changed" calls, at most one repaint per interval.

Data may arrive faster than a screen can show it (a fast GPU, or a burst of queued
signals after the GUI was busy); drawing once per arrival would make the window lag.
Plots call `request()` whenever their data changes and draw in the callback.
"""

from __future__ import annotations

from typing import Callable

from PySide6.QtCore import QObject, QTimer


class RedrawTimer(QObject):
    def __init__(self, callback: Callable[[], None], interval_ms: int = 50, parent=None):
        super().__init__(parent)
        self._callback = callback
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(interval_ms)  # 50 ms: 20 redraws a second at most
        self._timer.timeout.connect(self._fire)
        self._dirty = False

    def request(self) -> None:
        self._dirty = True
        if not self._timer.isActive():
            self._timer.start()

    def flush(self) -> None:
        """Draw now if anything is pending (tests, and the end of a run)."""
        self._timer.stop()
        self._fire()

    def _fire(self) -> None:
        if self._dirty:
            self._dirty = False
            self._callback()
