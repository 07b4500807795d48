"""The mouse wheel turns a field only once the field has focus.

Qt gives a wheel event to the widget under the pointer: scrolling down the Training
settings with the wheel turned whichever drop-down or number box passed under the
pointer, so "Device: Auto" became "CPU" without a click, and a wheel over the schedule
picker changed T (which the next training run then used). Here a field takes the wheel
once it has focus (clicked or tabbed into); until then the wheel scrolls the form it is
in, or does nothing.
"""

from __future__ import annotations

from typing import Optional

from PySide6.QtCore import QCoreApplication, QEvent, QObject, Qt
from PySide6.QtWidgets import QAbstractSpinBox, QComboBox, QScrollArea, QSlider, QWidget

FIELD_TYPES = (QComboBox, QAbstractSpinBox, QSlider)


class WheelNeedsFocus(QObject):
    """Installed on every field inside `container`; an unfocused field's wheel event goes to
    `scroll_to` (a scroll bar) when given."""

    def __init__(self, container: QWidget, scroll_to: Optional[QWidget] = None):
        super().__init__(container)
        self._scroll_to = scroll_to
        for kind in FIELD_TYPES:
            for field in container.findChildren(kind):
                field.setFocusPolicy(Qt.StrongFocus)  # the wheel alone never gives focus
                field.installEventFilter(self)

    def eventFilter(self, field, event) -> bool:
        if event.type() == QEvent.Wheel and not field.hasFocus():
            if self._scroll_to is not None:
                QCoreApplication.sendEvent(self._scroll_to, event)
            return True
        return False


def wheel_scrolls_form(area: QScrollArea) -> WheelNeedsFocus:
    """The wheel over a scrolled form's fields scrolls the form."""
    return WheelNeedsFocus(area.widget(), area.verticalScrollBar())
