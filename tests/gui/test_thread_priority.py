"""The window keeps a core: workers run below its priority where the OS allows it, and
otherwise PyTorch is given one core fewer (ddpm_gui/thread_priority.py)."""

from __future__ import annotations

import os
import threading

import pytest

from ddpm_gui import thread_priority
from ddpm_gui.workers import TaskWorker

WAIT_MS = 10_000


def nice_of_this_thread() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


@pytest.mark.skipif(not thread_priority.workers_can_lower_their_priority(), reason="per-thread priority is Linux's")
def test_a_worker_thread_runs_below_the_window(qtbot):
    window = nice_of_this_thread()
    task = TaskWorker(nice_of_this_thread)
    seen = []
    task.succeeded.connect(seen.append)
    task.start()
    qtbot.waitUntil(lambda: seen != [], timeout=WAIT_MS)
    assert task.wait(10)
    assert seen == [min(19, window + thread_priority.WORKER_NICENESS)]
    assert nice_of_this_thread() == window  # only the worker's own thread changed


@pytest.mark.parametrize("can_lower, expected", [(True, None), (False, "3")])
def test_torch_gets_every_core_only_where_workers_can_step_back(monkeypatch, can_lower, expected):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(thread_priority, "workers_can_lower_their_priority", lambda: can_lower)
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    thread_priority.choose_torch_threads()
    assert os.environ.get("OMP_NUM_THREADS") == expected


def test_a_users_thread_count_wins(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    monkeypatch.setattr(thread_priority, "workers_can_lower_their_priority", lambda: False)
    thread_priority.choose_torch_threads()
    assert os.environ["OMP_NUM_THREADS"] == "7"
