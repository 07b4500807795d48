"""Importing PyTorch and the panels off the GUI thread, so the window shows at once.

`import torch` alone takes about two seconds on a small machine (much longer from a cold
disk cache). The main window is built from Qt alone and shown first; this loader then
imports everything torch-heavy in a plain Python thread and reports back on the GUI
thread, where the panels are built. Importing only defines classes and functions, so it
is safe off the GUI thread; no widget is created there.
"""

from __future__ import annotations

import importlib
import threading
import traceback

from PySide6.QtCore import QObject, Signal

# Imported in this order; the optional ones may not exist yet in a partial checkout.
REQUIRED_MODULES = ("torch", "ddpm_gui.state", "pyqtgraph", "ddpm_gui.forward_panel", "ddpm_gui.schedule_panel")
OPTIONAL_MODULES = ("ddpm_gui.training_panel", "ddpm_gui.viewer_panel")


def import_optional(name: str):
    """The module, or the text of why it cannot be imported (a missing or broken file)."""
    try:
        return importlib.import_module(name)
    except ImportError as e:
        return f"{name} is not available ({e})"
    except Exception as e:  # a bug in the module: show it in its tab rather than not starting
        return f"{name} failed to load: {type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}"


def describe_compute_device() -> str:
    """The device training will use, for the status bar (CUDA initialisation is slow: off-thread)."""
    from ddpm_core.device import describe_device, pick_device

    try:
        return describe_device(pick_device("auto"))
    except Exception as e:  # a broken CUDA driver must not keep the app from starting
        return f"device unknown ({type(e).__name__})"


class EngineLoader(QObject):
    """start() imports in a thread; `finished(error_text, device_text)` arrives on the GUI thread."""

    finished = Signal(str, str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        # Not a daemon: interpreter shutdown in the middle of `import torch` can crash.
        self._thread = threading.Thread(target=self._run, name="ddpm-import", daemon=False)
        self._thread.start()

    def is_running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        error = ""
        device = ""
        try:
            for name in REQUIRED_MODULES:
                importlib.import_module(name)
            for name in OPTIONAL_MODULES:
                import_optional(name)  # failures are reported by the tab that needs the module
            device = describe_compute_device()
        except Exception as e:
            error = f"could not load the diffusion engine: {type(e).__name__}: {e}"
        self.finished.emit(error, device)  # queued to the GUI thread: this object lives there
