"""Starting DDPM Studio: the Qt application, plot defaults, icon, and a fast first window.

Start-up order matters on small machines: Qt alone loads in a few tenths of a second,
PyTorch in seconds. So the window (menus, tabs, status bar) is shown first, built from
Qt alone, and the engine is imported in the background while it is on screen
(see `MainWindow.load_engine`).

Set DDPM_STUDIO_TIMING=1 to print, on stderr, in seconds since this module was imported:
when the window was first painted, when the four panels were ready, when the forward
tab's first x_t was shown, and when the window was then usable (that x_t painted and the
event loop free again to take input: the slider and the tabs respond).
scripts/bench_gui.py reads these lines.
"""

from __future__ import annotations

import os
import sys
import time
from importlib import resources
from typing import Optional, Sequence

_T0 = time.perf_counter()

from PySide6.QtCore import QEvent, QObject, QTimer  # noqa: E402  (after _T0 on purpose)
from PySide6.QtGui import QIcon, QPalette  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from ddpm_gui import thread_priority  # noqa: E402
from ddpm_gui.gui_gc import collect_on_gui_thread  # noqa: E402
from ddpm_gui.help_text import APP_NAME  # noqa: E402
from ddpm_gui.main_window import MainWindow  # noqa: E402

ICON_SIZES = (16, 24, 32, 48, 64, 128, 256)


def resource_path(name: str) -> str:
    """A file in ddpm_gui/resources, whether run from a clone or an installed package."""
    return str(resources.files("ddpm_gui").joinpath("resources", name))


def app_icon() -> QIcon:
    icon = QIcon()
    for size in ICON_SIZES:
        icon.addFile(resource_path(f"icon_{size}.png"))
    return icon


def leave_a_core_for_the_window() -> None:
    """Make sure the window's thread finds a free core while torch works (thread_priority).

    PyTorch's threads take every core they are given; when the window's own thread has to
    wait for one, every repaint waits. Measured on a 2-core machine with the default
    training run in the app: 2 torch threads at the window's priority made the longest GUI
    stalls 39-70 ms (the limit is 50). Must run before torch is imported.
    """
    thread_priority.choose_torch_threads()


# How long a thread may hold the GIL while another waits for it (Python's default: 5 ms).
GIL_SWITCH_INTERVAL_S = 0.001


def hand_the_gil_to_the_window_sooner() -> None:
    """Let a thread that waits for the GIL get it after 1 ms instead of 5.

    The training and sampling threads run Python between their torch operations (building
    the trainer, copying the model for the Denoising tab, collating batches). Each time the
    GUI thread needs the GIL meanwhile (every event it handles in Python, every pyqtgraph
    item it paints), it waited up to the switch interval, and a repaint needs it many
    times: the window froze for 50-100 ms while a trainer was being built. Torch's own
    operations release the GIL, so training itself barely notices.
    """
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)


def configure_pyqtgraph(palette: Optional[QPalette] = None) -> None:
    """Plot defaults: smooth lines, and colours from the palette, so light and dark themes
    both look right. Call after pyqtgraph is imported and before any plot exists."""
    import pyqtgraph as pg

    palette = palette or QApplication.palette()
    pg.setConfigOptions(
        antialias=True,
        background=palette.color(QPalette.Base),
        foreground=palette.color(QPalette.Text),
    )


class _StartupTimer(QObject):
    """Prints the moments of start-up (DDPM_STUDIO_TIMING=1): see this module's docstring."""

    def __init__(self, window: MainWindow):
        super().__init__(window)
        self._window = window
        self._painted = False
        self._shown = False
        window.installEventFilter(self)
        window.panelsReady.connect(self._on_panels_ready)

    def eventFilter(self, obj, event) -> bool:
        if event.type() == QEvent.Paint and not self._painted:
            self._painted = True
            self._report("window painted")
        return False

    def _on_panels_ready(self) -> None:
        self._report("panels ready")
        self._window.forward.imagesShown.connect(self._on_images_shown)

    def _on_images_shown(self) -> None:
        if self._shown:
            return
        self._shown = True
        self._report("x_t shown")
        # Runs once the posted repaint of that image is done and nothing else is queued.
        QTimer.singleShot(0, lambda: self._report("usable"))

    @staticmethod
    def _report(what: str) -> None:
        print(f"ddpm-studio startup: {what} at {time.perf_counter() - _T0:.2f} s", file=sys.stderr, flush=True)


NO_DISPLAY = (
    "DDPM Studio needs a screen, and no display is set (DISPLAY or WAYLAND_DISPLAY): on a server, "
    "train and sample with the command line ('ddpm --help'), or show the window on a virtual "
    "display with 'xvfb-run -a python main.py'"
)


def display_missing(args: Sequence[str]) -> bool:
    """On Linux without a display, Qt aborts the process with a long plugin message that
    suggests reinstalling; say what is wrong instead. QT_QPA_PLATFORM (offscreen, vnc, ...)
    or a -platform option means the person chose where the window goes."""
    if not sys.platform.startswith("linux") or os.environ.get("QT_QPA_PLATFORM"):
        return False
    if "-platform" in args:
        return False
    return not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def run(argv: Optional[Sequence[str]] = None) -> int:
    """Run the app until its window closes; `argv` as sys.argv (Qt options such as -style work)."""
    if QApplication.instance() is None and display_missing(sys.argv if argv is None else argv):
        print(NO_DISPLAY, file=sys.stderr)
        return 2
    leave_a_core_for_the_window()
    hand_the_gil_to_the_window_sooner()
    QApplication.setApplicationName(APP_NAME)
    QApplication.setOrganizationName(APP_NAME)  # where QSettings keeps the window layout
    QApplication.setDesktopFileName("ddpm-studio")
    app = QApplication.instance() or QApplication(list(sys.argv if argv is None else argv))
    app.setWindowIcon(app_icon())
    # Garbage collection only on the GUI thread: a collection on a worker thread can destroy
    # Qt objects there and deadlock against the GUI thread (see gui_gc).
    collect_on_gui_thread()

    window = MainWindow()
    if os.environ.get("DDPM_STUDIO_TIMING"):
        _StartupTimer(window)
    window.show()
    # Give the window one turn of the event loop to paint before the import starts.
    QTimer.singleShot(0, lambda: window.load_engine(before_panels=configure_pyqtgraph))
    return app.exec()


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The `ddpm-studio` entry point: run the app until its window closes; the exit status.

    By the time exec() returns, closeEvent has stopped and joined every worker thread
    (waiting for a save in flight to be written) and synced the settings; the
    aboutToQuit hook of `workers` joins any thread still left. So the interpreter
    finalises normally: nothing is left for it to wait on.

    (An os._exit here once skipped finalisation because "the process hung for minutes
    after a training run". That hang was the "Save checkpoint?" question, asked again by
    closeEvent after scripts/screenshot.py had already stopped training without saving,
    waiting unseen on a virtual display. `TrainingPanel.shutdown` no longer asks twice,
    and tests/gui/test_trust_exit.py checks the real entry point exits promptly.)
    """
    return run(argv)
