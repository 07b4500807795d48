"""Keep a core free for the window while training and sampling use all of them.

Where the OS lets one thread lower its own priority (Linux: a thread's nice value is its
own), every worker thread does so as it starts; the OpenMP threads it then starts inherit
the value. PyTorch keeps every core, and the scheduler hands one to the window's thread
the moment it has work. Measured on a 2-core machine in the app's default training run
(scripts/bench_gui.py, 8 alternating runs): 1.3x the training steps of torch on one
thread, and longest GUI stalls of 23-34 ms against 24-41 ms.

Elsewhere (macOS, Windows) PyTorch is given one core fewer than the machine has, so the
window's thread always finds one.
"""

from __future__ import annotations

import os
import sys
import threading

# How much lower a worker runs than the thread that started the app (nice steps, of 19).
WORKER_NICENESS = 10


def workers_can_lower_their_priority() -> bool:
    return sys.platform.startswith("linux") and hasattr(os, "setpriority")


def choose_torch_threads() -> None:
    """Set OpenMP's thread count for the app, unless the user set one.

    Must run before torch is imported (OpenMP reads the variable once).
    """
    if "OMP_NUM_THREADS" in os.environ or workers_can_lower_their_priority():
        return
    os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) - 1))


def lower_this_threads_priority() -> None:
    """Run the calling thread (and the OpenMP threads it starts later) below the window's."""
    if not workers_can_lower_their_priority():
        return
    thread = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, thread, min(19, os.getpriority(os.PRIO_PROCESS, thread) + WORKER_NICENESS))
    except OSError:  # a sandbox may refuse; the worker then runs as it is
        pass
