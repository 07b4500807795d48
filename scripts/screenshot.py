"""Take the README's screenshot: the real window, training on the built-in data.

Run under a virtual X server so the window is drawn as on a desktop:

    xvfb-run -a -s "-screen 0 1400x900x24" .venv/bin/python scripts/screenshot.py docs/training.png 90

It starts the app, switches to the Training tab, presses Start, waits the given number of
seconds (default 90) and saves a grab of the whole window.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

EXIT_USAGE = 2
XVFB_HINT = 'xvfb-run -a -s "-screen 0 1400x900x24" .venv/bin/python scripts/screenshot.py'


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line (not the usage too), as in the ddpm command line."""

    def error(self, message):
        sys.stderr.write(f"{self.prog}: error: {message} (see '{self.prog} --help')\n")
        sys.exit(EXIT_USAGE)


def _seconds(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(v) or v < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds from 0 up")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="scripts/screenshot.py",
        description="Start the app, press Start on the Training tab, wait, and save a grab of the whole "
        "window. Needs a display: on a headless machine run it under xvfb-run -a.",
    )
    p.add_argument("out", nargs="?", default="screenshot.png", help="image file to write (default: %(default)s)")
    p.add_argument("wait_s", nargs="?", type=_seconds, default=90.0,
                   help="seconds of training before the grab (default: %(default)g)")
    return p


def _error(text: str) -> None:
    print(f"scripts/screenshot.py: error: {text}", file=sys.stderr, flush=True)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)  # before Qt is imported: --help works anywhere, at once
    from ddpm_gui.app import display_missing  # the app's own test: Qt would abort without a display

    if display_missing([]):
        _error(f"no display (DISPLAY is not set): run it under {XVFB_HINT} ...")
        return EXIT_USAGE
    folder = Path(args.out).parent
    if not folder.is_dir():  # found now, not after the whole wait
        _error(f"folder {folder} does not exist: create it or choose another path")
        return EXIT_USAGE

    # The window's modules are imported only here: --help and the checks above need none of them.
    from PySide6.QtCore import QTimer
    from PySide6.QtGui import QImageWriter
    from PySide6.QtWidgets import QApplication

    from ddpm_gui.app import app_icon, collect_on_gui_thread, configure_pyqtgraph, leave_a_core_for_the_window
    from ddpm_gui.main_window import MainWindow

    out, wait_s = args.out, args.wait_s
    writable = {bytes(f).decode().lower() for f in QImageWriter.supportedImageFormats()}
    if Path(out).suffix.lstrip(".").lower() not in writable:  # QPixmap.save picks the format by it
        _error(f"{out}: Qt cannot write that kind of image: give a name ending in .png")
        return EXIT_USAGE
    leave_a_core_for_the_window()  # as the app does
    app = QApplication(sys.argv[:1])
    app.setWindowIcon(app_icon())
    collect_on_gui_thread()
    window = MainWindow()
    window.resize(1360, 860)
    window.show()
    window.load_engine(before_panels=configure_pyqtgraph)
    started = {}
    result = {"code": 0}

    def poll():
        training = getattr(window, "training", None)
        if training is None:
            return  # panels still loading
        if "t" not in started:
            window.tabs.setCurrentIndex(2)
            training.start()
            started["t"] = time.monotonic()
        elif time.monotonic() - started["t"] > wait_s:
            timer.stop()
            # QPixmap.save gives no reason, only False (a folder made read-only meanwhile, a full disk)
            if window.grab().save(out):
                print(f"saved {out} at step {training.current_step()} after {wait_s:.0f} s", flush=True)
            else:
                _error(f"could not write {out}: check that the folder is writable and the disk not full")
                result["code"] = 1
            training.shutdown(ask=False)
            window.close()
            app.quit()

    timer = QTimer()
    timer.timeout.connect(poll)
    timer.start(250)
    code = app.exec()
    return result["code"] or code


if __name__ == "__main__":
    sys.exit(main())
