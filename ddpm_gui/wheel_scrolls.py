"""The mouse wheel over a scrolled form scrolls the form.

Qt gives a wheel event to the widget under the pointer: scrolling down the Training
settings with the wheel turned whichever drop-down or number box passed under the
pointer, so "Device: Auto" became "CPU" without a click. Here a field takes the wheel only
once it has focus (clicked or tabbed into); until then the wheel scrolls the form.
"""

from __future__ import annotations

from PySide6.QtCore import QCoreApplication, QEvent, QObject, Qt
from PySide6.QtWidgets import QAbstractSpinBox, QComboBox, QScrollArea, QSlider

FIELD_TYPES = (QComboBox, QAbstractSpinBox, QSlider)


class WheelScrollsForm(QObject):
    def __init__(self, area: QScrollArea):
        super().__init__(area)
        self._area = area
        for kind in FIELD_TYPES:
            for field in area.widget().findChildren(kind):
                field.setFocusPolicy(Qt.StrongFocus)  # the wheel alone never gives focus
                field.installEventFilter(self)

    def eventFilter(self, field, event) -> bool:
        if event.type() == QEvent.Wheel and not field.hasFocus():
            QCoreApplication.sendEvent(self._area.verticalScrollBar(), event)
            return True
        return False
