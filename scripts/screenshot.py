"""Take the README's screenshot: the real window, training on the built-in data.

Run under a virtual X server so the window is drawn as on a desktop:

    xvfb-run -s "-screen 0 1400x900x24" .venv/bin/python scripts/screenshot.py docs/training.png 90

It starts the app, switches to the Training tab, presses Start, waits the given number of
seconds (default 90) and saves a grab of the whole window.
"""

from __future__ import annotations

import sys
import time

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from ddpm_gui.app import app_icon, collect_on_gui_thread, configure_pyqtgraph, leave_a_core_for_the_window
from ddpm_gui.main_window import MainWindow


def main() -> int:
    out = sys.argv[1] if len(sys.argv) > 1 else "screenshot.png"
    wait_s = float(sys.argv[2]) if len(sys.argv) > 2 else 90.0
    leave_a_core_for_the_window()  # as the app does
    app = QApplication(sys.argv[:1])
    app.setWindowIcon(app_icon())
    collect_on_gui_thread()
    window = MainWindow()
    window.resize(1360, 860)
    window.show()
    window.load_engine(before_panels=configure_pyqtgraph)
    started = {}

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
            window.grab().save(out)
            print(f"saved {out} at step {training.current_step()} after {wait_s:.0f} s", flush=True)
            training.shutdown(ask=False)
            window.close()
            app.quit()

    timer = QTimer()
    timer.timeout.connect(poll)
    timer.start(250)
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
