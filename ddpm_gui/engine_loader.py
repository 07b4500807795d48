"""Importing PyTorch and the panels off the GUI thread, so the window shows at once.

`import torch` alone takes about two seconds on a small machine (much longer from a cold
disk cache). The main window is built from Qt alone and shown first; this loader then
imports everything torch-heavy in a plain Python thread and reports back on the GUI
thread, where the panels are built. Importing only defines classes and functions, so it
is safe off the GUI thread; no widget is created there.

After reporting, it imports what the first training run would import
(`warm_up_training`), once the window has shown its first image (`allow_warm_up`), and
freezes everything imported (`freeze_imported_objects`).
"""

from __future__ import annotations

import gc
import importlib
import threading
import traceback

from PySide6.QtCore import QCoreApplication, QObject, Signal

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


def warm_up_training() -> None:
    """Import now, in the background, what starting the first training run would import.

    The first optimizer PyTorch creates imports about 900 more modules (torch._dynamo,
    sympy, ...): 1.4 s on a 2-core machine. Left to the training thread, that happened
    just after Start, holding the GIL the window needs, and the window froze for 100 ms
    and more at a time.
    """
    import torch

    torch.optim.Adam([torch.zeros(1, requires_grad=True)])


def freeze_imported_objects() -> None:
    """Exclude everything imported so far from future garbage collections.

    The app collects garbage on the GUI thread (see gui_gc), and a full collection walks
    every object: after `import torch` there are about 230,000, and one such collection
    froze the window for 150-200 ms, several times a minute while training. The imported
    modules, classes and functions live as long as the process anyway; frozen
    (`gc.freeze`), a full collection walks only the objects made since: a few ms.
    """
    gc.freeze()


def describe_compute_device() -> str:
    """The device training will use, for the status bar (CUDA initialisation is slow: off-thread)."""
    from ddpm_core.device import describe_device, pick_device

    try:
        return describe_device(pick_device("auto"))
    except Exception as e:  # a broken CUDA driver must not keep the app from starting
        return f"device unknown ({type(e).__name__})"


# How long the warm-up waits for allow_warm_up() before it goes ahead anyway.
WARM_UP_WAIT_S = 10.0


class EngineLoader(QObject):
    """start() imports in a thread; `finished(error_text, device_text)` arrives on the GUI thread."""

    finished = Signal(str, str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._thread: threading.Thread | None = None
        self._warm_up_allowed = threading.Event()
        self._warm_up_skipped = False

    def start(self) -> None:
        # Not a daemon: interpreter shutdown in the middle of `import torch` can crash. So
        # an app that quits early must not leave it waiting for allow_warm_up().
        app = QCoreApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self._skip_warm_up)
        self._thread = threading.Thread(target=self._run, name="ddpm-import", daemon=False)
        self._thread.start()

    def is_running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def allow_warm_up(self, *_) -> None:
        """The window is up: the loader may import ahead for training (any thread may call)."""
        self._warm_up_allowed.set()

    def _skip_warm_up(self) -> None:
        self._warm_up_skipped = True
        self._warm_up_allowed.set()

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
            # Almost always a missing or broken install (PyTorch, pyqtgraph): say how to redo it.
            error = (
                f"could not load the diffusion engine ({type(e).__name__}: {e}): reinstall the app's "
                "packages in its environment with 'pip install -e .' from the project folder"
            )
        self.finished.emit(error, device)  # queued to the GUI thread: this object lives there
        if error:
            return
        # Importing holds the GIL most of the time: let the panels be built and the first
        # image be made and drawn first.
        self._warm_up_allowed.wait(WARM_UP_WAIT_S)
        if self._warm_up_skipped:
            return
        try:
            warm_up_training()
        except Exception:  # only a head start: the training run imports whatever is missing
            traceback.print_exc()
        freeze_imported_objects()
