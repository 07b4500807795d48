"""Reading typed values with a reason when they are refused, and marking the field red.

A spin box silently clamps what is typed; a person learning DDPM should instead see *why*
a value is refused ("batch size: must be at least 1"). Parsers take the text and return
the value or raise ValueError with that reason; `mark_invalid` outlines the field in red
and puts the reason in its tooltip.
"""

from __future__ import annotations

import math

from PySide6.QtWidgets import QWidget

_INVALID_STYLE = "border: 1px solid #d9363e; border-radius: 2px;"


def parse_int(text: str, lo: int, hi: int) -> int:
    s = text.strip().replace(",", "").replace("_", "")
    if not s:
        raise ValueError("enter a whole number")
    try:
        v = int(s)
    except ValueError:
        raise ValueError(f"'{text.strip()}' is not a whole number") from None
    if not lo <= v <= hi:
        raise ValueError(f"{v} is out of range: use {lo:,} to {hi:,}")
    return v


def parse_float(text: str, lo: float, hi: float) -> float:
    s = text.strip()
    if not s:
        raise ValueError("enter a number, e.g. 1e-3")
    try:
        v = float(s)
    except ValueError:
        raise ValueError(f"'{s}' is not a number (write e.g. 0.001 or 1e-3)") from None
    if not math.isfinite(v) or not lo <= v <= hi:
        raise ValueError(f"{s} is out of range: use {lo:g} to {hi:g}")
    return v


def parse_int_list(text: str, lo: int, hi: int) -> tuple:
    parts = [p for p in text.replace(" ", "").split(",") if p]
    if not parts:
        raise ValueError("enter one multiplier per level, e.g. 1,2,4")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(f"'{text.strip()}' is not a comma-separated list of whole numbers, e.g. 1,2,4") from None
    for v in values:
        if not lo <= v <= hi:
            raise ValueError(f"each multiplier must be from {lo} to {hi}, not {v}")
    return values


def mark_invalid(widget: QWidget, reason: str | None, tooltip: str = "") -> None:
    """Red outline and the reason on top of the usual tooltip; None clears it."""
    base = widget.property("baseToolTip")
    if base is None:
        base = tooltip or widget.toolTip()
        widget.setProperty("baseToolTip", base)
    if reason:
        widget.setStyleSheet(_INVALID_STYLE)
        widget.setToolTip(f"<b>Not accepted:</b> {reason}<br><br>{base}")
    else:
        widget.setStyleSheet("")
        widget.setToolTip(base)
