"""Keeping redraws cheap: coalesced plot redraws, and no repaint of a whole tab when one
number in it changes.

Data may arrive faster than a screen can show it (a fast GPU, or a burst of queued
signals after the GUI was busy); drawing once per arrival would make the window lag.
Plots call `RedrawTimer.request()` whenever their data changes and draw in the callback.
Numbers that change at every update go in a `StatusLine`, not a QLabel, and the main
window's tabs are a `QuietTabWidget` (see each for why).
"""

from __future__ import annotations

from typing import Callable, Optional

from PySide6.QtCore import QEvent, QObject, QSize, Qt, QTimer
from PySide6.QtGui import QPainter, QPalette
from PySide6.QtWidgets import QSizePolicy, QTabWidget, QWidget


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


class StatusLine(QWidget):
    """One line of text that changes many times a second, such as "step 1,200: loss 0.031".

    A QLabel asks its whole window to re-lay out at every setText (and a plain QTabWidget
    then repaints every widget of the tab: see QuietTabWidget), 20 times a second. This
    widget's size never depends on its text (one line high, as wide as the layout gives
    it; longer text is elided), so `set_text` only repaints the line itself.
    """

    def __init__(self, text: str = "", parent=None):
        super().__init__(parent)
        self._text = text
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
        self.setMinimumWidth(40)
        self.setFixedHeight(self.fontMetrics().height() + 4)

    def text(self) -> str:
        return self._text

    def set_text(self, text: str) -> None:
        if text != self._text:
            self._text = text
            self.update()

    def sizeHint(self) -> QSize:
        return QSize(self.fontMetrics().horizontalAdvance("M" * 30), self.height())  # never the text's

    def paintEvent(self, event) -> None:
        p = QPainter(self)
        p.setPen(self.palette().color(QPalette.WindowText))
        text = self.fontMetrics().elidedText(self._text, Qt.ElideRight, self.width())
        p.drawText(self.rect(), Qt.AlignLeft | Qt.AlignVCenter, text)


class QuietTabWidget(QTabWidget):
    """A QTabWidget that does not repaint itself whole each time a page re-lays out.

    Qt's QTabWidget answers every layout request from its pages with a repaint of all of
    itself (QTabWidget::setUpLayout calls update()). A page whose labels change text at
    every training progress report re-lays out, so every widget of the tab was repainted
    a few times a second, for nothing: where the tab bar and the page sit depends only on
    the tab widget's size (resizeEvent still places them) and the tab bar's size. So a
    layout request is passed on to Qt only when the tab bar's size hint changed; otherwise
    only the size constraints travel up to the window.
    """

    def __init__(self, parent=None):
        super().__init__(parent)
        self._bar_hint: Optional[QSize] = None

    def event(self, event) -> bool:
        if event.type() == QEvent.LayoutRequest:
            hint = self.tabBar().sizeHint()
            if hint == self._bar_hint:
                self.updateGeometry()  # a page's new minimum size may matter to the window
                return QWidget.event(self, event)  # QTabWidget's own handling skipped
            self._bar_hint = hint
        return super().event(event)
