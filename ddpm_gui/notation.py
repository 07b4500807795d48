"""The timestep as the window shows it: the paper's t = 1…T.

The engine indexes timesteps 0…T−1, as the article's code does (`t = torch.randint(0, T)`):
index i is the paper's t = i + 1 (Ho et al. 2020 count t = 1…T). Shown that way, x₀ stays
the clean image, "t = 1" is one step of noise, and ᾱ_t = (1−β_1)…(1−β_t) holds as written.
The conversion happens only where a number meets the eye: every widget and signal inside
the app carries the index.
"""

from __future__ import annotations

from PySide6.QtGui import QValidator
from PySide6.QtWidgets import QSpinBox


def shown_t(index: int) -> int:
    """The paper's t for a timestep index."""
    return int(index) + 1


def index_of(t: float) -> int:
    """The timestep index for a paper's t (rounded: a plot position gives a fraction)."""
    return int(round(t)) - 1


class TimestepSpinBox(QSpinBox):
    """Holds a timestep index, as the slider beside it does, and shows the paper's t."""

    def textFromValue(self, value: int) -> str:
        return str(shown_t(value))

    def valueFromText(self, text: str) -> int:
        return index_of(int(text))

    def validate(self, text: str, pos: int):
        # QSpinBox checks typed text against its range, which holds indices: shift it.
        if text == "":
            return QValidator.Intermediate, text, pos
        if not text.isdigit():
            return QValidator.Invalid, text, pos
        value = index_of(int(text))
        if self.minimum() <= value <= self.maximum():
            return QValidator.Acceptable, text, pos
        return QValidator.Intermediate, text, pos
