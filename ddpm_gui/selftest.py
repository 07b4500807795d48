"""An end-to-end self-test of the real app, driven by an environment variable.

    DDPM_STUDIO_SELFTEST="train:5"                  train 5 steps, close, Discard
    DDPM_STUDIO_SELFTEST="train:5,save:/tmp/x.safetensors"   ... close, Save to that file

Once the panels are ready it presses Start with the Training tab's settings, and after the
given number of steps closes the window, answering the "Save checkpoint?" question as
told. It exercises exactly what a person does, through `main.py`, so a test can check the
whole exit path of a process: exit status, no thread left running, nothing on stderr.
Nothing happens unless the variable is set.
"""

from __future__ import annotations

import os
import sys
from typing import Optional

ENV = "DDPM_STUDIO_SELFTEST"


def parse(spec: str) -> tuple[int, Optional[str]]:
    """(steps, save path or None) from "train:N[,save:PATH]"; ValueError when malformed."""
    steps, save_to = None, None
    for part in spec.split(","):
        key, _, value = part.partition(":")
        if key == "train":
            steps = int(value)
        elif key == "save" and value:
            save_to = value
        else:
            raise ValueError(f"{ENV}: unknown part {part!r}; expected train:STEPS[,save:PATH]")
    if steps is None or steps < 1:
        raise ValueError(f"{ENV} needs train:STEPS with STEPS >= 1")
    return steps, save_to


def install_if_requested(window) -> None:
    spec = os.environ.get(ENV)
    if spec:
        steps, save_to = parse(spec)
        window.panelsReady.connect(lambda: _run(window, steps, save_to))


def _say(message: str) -> None:
    print(f"selftest: {message}", file=sys.stderr, flush=True)


def _run(window, steps: int, save_to: Optional[str]) -> None:
    from PySide6.QtCore import QTimer

    training = window.training
    training.ask_save_before_close = lambda: "yes" if save_to else "no"
    training.choose_save_path = lambda: save_to
    closing = []

    def close(reason: str) -> None:
        if not closing:
            closing.append(reason)
            _say(f"closing the window ({reason})")
            QTimer.singleShot(0, window.close)  # from the event loop, as a click would

    training.progressed.connect(lambda step: step >= steps and close(f"at step {step}"))
    training.runningChanged.connect(lambda running: running or close("training ended"))
    window.tabs.setCurrentIndex(2)
    if not training.start():
        close("training could not start")
