"""Reading typed values with a reason when they are refused, and marking the field red.

A spin box silently clamps what is typed; a person learning DDPM should instead see *why*
a value is refused ("batch size: must be at least 1"). Parsers take the text and return
the value or raise ValueError with that reason; `mark_invalid` outlines the field in red
and puts the reason in its tooltip.
"""

from __future__ import annotations

import math
import re

from PySide6.QtWidgets import QWidget

_INVALID_STYLE = "border: 1px solid #d9363e; border-radius: 2px;"
_QUOTE_MAX = 24  # characters of a refused text repeated in its message
# 1,000,000: commas only as thousands separators ("1,2" is not read as 12)
_THOUSANDS = re.compile(r"[+-]?\d{1,3}(,\d{3})+")


def _quote(text: str) -> str:
    """The refused text for a one-line message: stripped, line breaks out, and shortened."""
    s = " ".join(text.split())
    return f"'{s}'" if len(s) <= _QUOTE_MAX else f"'{s[:_QUOTE_MAX - 1]}…'"


def parse_int(text: str, lo: int, hi: int) -> int:
    """A whole number from lo to hi; "1,000" and "1_000" are read as 1000."""
    s = text.strip()
    if not s:
        raise ValueError("enter a whole number")
    if _THOUSANDS.fullmatch(s):
        s = s.replace(",", "")
    try:
        v = int(s)
    except ValueError:
        if re.fullmatch(r"[+-]?\d+", s):  # digits, but too many for Python to convert
            raise ValueError(f"{_quote(text)} is out of range: use {lo:,} to {hi:,}") from None
        raise ValueError(f"{_quote(text)} is not a whole number: use {lo:,} to {hi:,}") from None
    if not lo <= v <= hi:
        shown = f"{v:,}" if len(str(v)) <= _QUOTE_MAX else _quote(text)
        raise ValueError(f"{shown} is out of range: use {lo:,} to {hi:,}")
    return v


def parse_float(text: str, lo: float, hi: float, example: str = "0.001 or 1e-3") -> float:
    """A finite number from lo to hi; `example` shows how to write one."""
    s = text.strip()
    if not s:
        raise ValueError(f"enter a number, e.g. {example}")
    if re.fullmatch(r"[+-]?\d*,\d+", s):
        raise ValueError(f"{_quote(s)}: write decimals with a point, e.g. {s.replace(',', '.')}")
    try:
        v = float(s)
    except ValueError:
        raise ValueError(f"{_quote(s)} is not a number (write e.g. {example})") from None
    if not math.isfinite(v):
        raise ValueError(f"{_quote(s)} is not a usable number: use {lo:g} to {hi:g}")
    if not lo <= v <= hi:
        raise ValueError(f"{_quote(s)} is out of range: use {lo:g} to {hi:g}")
    return v


def parse_int_list(text: str, lo: int, hi: int) -> tuple:
    """Comma-separated whole numbers, each from lo to hi, e.g. "1,2,4"."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise ValueError("enter one multiplier per level, e.g. 1,2,4")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(f"{_quote(text)} is not a comma-separated list of whole numbers, e.g. 1,2,4") from None
    for v in values:
        if not lo <= v <= hi:
            shown = str(v) if len(str(v)) <= _QUOTE_MAX else "a multiplier"
            raise ValueError(f"each multiplier must be from {lo} to {hi}, not {shown}")
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
