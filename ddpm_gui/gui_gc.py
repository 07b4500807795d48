"""Run Python's cyclic garbage collector on the GUI thread only.

Python collects reference cycles in whichever thread happens to allocate when a threshold
is crossed. With worker threads that allocate constantly (a training loop), that is almost
always a worker thread, and when a collected cycle holds a Qt object its C++ destructor
runs there. Qt then locks its signal/slot mutex and calls back into Python for the GIL,
while the GUI thread holds the GIL and waits for that same mutex: a deadlock (seen in the
GUI tests: ~QObject on "ddpm-training" inside Trainer.__init__'s deepcopy, against
Shiboken's deferred widget deletion on the GUI thread). So automatic collection is switched
off and a GUI-thread timer collects instead, generation by generation with Python's own
thresholds, as pyqtgraph's GarbageCollector does. Objects without cycles are still freed at
once by reference counting.
"""

from __future__ import annotations

import gc
from typing import Optional

from PySide6.QtCore import QCoreApplication, QObject, QTimer

_collector: Optional["GuiThreadCollector"] = None


class GuiThreadCollector(QObject):
    def __init__(self, interval_ms: int = 500, parent=None):
        super().__init__(parent)
        self.threshold = gc.get_threshold()
        self.timer = QTimer(self)
        self.timer.timeout.connect(self.check)
        self.timer.start(interval_ms)
        gc.disable()

    def check(self) -> None:
        l0, l1, l2 = gc.get_count()
        if l0 > self.threshold[0]:
            gc.collect(0)
            if l1 > self.threshold[1]:
                gc.collect(1)
                if l2 > self.threshold[2]:
                    gc.collect(2)


def collect_on_gui_thread() -> None:
    """Install the collector once, owned by the application; call it on the GUI thread
    before any Python thread starts (the app's startup; workers also call it)."""
    global _collector
    app = QCoreApplication.instance()
    if _collector is not None or app is None:
        return
    _collector = GuiThreadCollector(parent=app)
