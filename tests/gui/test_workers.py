"""The worker layer on its own: thread registry, stop/pause between items, errors, requests."""

from __future__ import annotations

import threading
import time

import pytest
from PySide6.QtCore import QObject, QThread, Signal

from ddpm_core.errors import ConfigError
from ddpm_gui import workers
from ddpm_gui.workers import LoopWorker, RateLimit, TaskWorker, describe_error

WAIT_MS = 20_000


class Counting(LoopWorker):
    """Counts forever, one item at a time, until stopped; reports on which thread it ran."""

    item = Signal(int)

    def __init__(self):
        super().__init__("counting")
        self.count = 0
        self.gate = threading.Event()  # the test lets items through one by one if it wants
        self.gate.set()

    def work(self):
        while True:
            self.gate.wait()
            self.count += 1
            self.item.emit(self.count)
            # Like a real item (a training step spends its time in torch ops, which release
            # the GIL), give the GIL away: a pure-Python loop that never does would starve
            # the GUI thread, whose every Qt call must win the GIL back.
            time.sleep(0.001)
            self.between_items()
            if self.stopping:
                return


class Receiver(QObject):
    """Lives on the GUI thread and records what arrives there.

    Tests wait on it rather than with qtbot.waitSignal(worker.signal): PySide runs a slot
    that is not a QObject's method (pytest-qt's blocker is a plain object) directly on the
    emitting worker thread, which races with the wait. A QObject's method is queued to the
    thread the QObject lives in, as the panels' slots are.
    """

    def __init__(self):
        super().__init__()
        self.threads = set()
        self.items = []

    def on_item(self, *args):
        self.threads.add(QThread.currentThread())
        self.items.append(args[0] if len(args) == 1 else args)


def test_signals_arrive_on_the_gui_thread_and_stop_joins(qtbot, qapp):
    w = Counting()
    r = Receiver()
    w.item.connect(r.on_item)
    w.start()
    assert w.is_alive() and workers.live_threads()
    qtbot.waitUntil(lambda: len(r.items) >= 3, timeout=WAIT_MS)
    assert r.threads == {qapp.thread()}
    assert w.stop_and_wait(timeout=10)
    assert not w.is_alive() and workers.live_threads() == []


def test_stop_takes_effect_after_the_current_item(qtbot):
    w = Counting()
    w.gate.clear()
    w.start()
    w.stop()
    w.gate.set()  # one item may finish; the loop must end right after it
    assert w.wait(10)
    assert w.count == 1


def test_pause_holds_the_loop_and_serves_requests(qtbot):
    w = Counting()
    paused = Receiver()
    w.pausedChanged.connect(paused.on_item)
    w.pause()
    w.start()
    qtbot.waitUntil(lambda: paused.items == [True], timeout=WAIT_MS)
    held = w.count
    done = threading.Event()
    assert w.request(done.set)  # served while paused
    assert done.wait(10)
    qtbot.wait(100)
    assert w.count == held
    w.resume()
    qtbot.waitUntil(lambda: paused.items == [True, False], timeout=WAIT_MS)
    qtbot.waitUntil(lambda: w.count > held, timeout=WAIT_MS)
    assert w.stop_and_wait(10)
    assert w.request(lambda: None) is False  # the loop is over: do it yourself


def test_stop_wakes_a_paused_loop(qtbot):
    w = Counting()
    paused = Receiver()
    w.pausedChanged.connect(paused.on_item)
    w.pause()
    w.start()
    qtbot.waitUntil(lambda: paused.items == [True], timeout=WAIT_MS)
    assert w.stop_and_wait(10)


def test_a_failing_task_reports_one_line_and_the_traceback(qtbot, capsys):
    def fail():
        raise ValueError("bad\nthing")

    task = TaskWorker(fail)
    got = Receiver()
    task.failed.connect(got.on_item)
    task.start()
    assert task.wait(10)
    qtbot.waitUntil(lambda: got.items == ["ValueError: bad thing"], timeout=WAIT_MS)
    assert "Traceback" in capsys.readouterr().err
    taken = workers.take_errors()  # provoked here; left over, it would fail this test
    assert [(e.worker, e.message, e.is_bug) for e in taken] == [("task", "ValueError: bad thing", True)]


def test_a_task_result_comes_back(qtbot):
    task = TaskWorker(lambda: 41 + 1)
    got = Receiver()
    task.succeeded.connect(got.on_item)
    task.start()
    qtbot.waitUntil(lambda: got.items == [42], timeout=WAIT_MS)
    assert task.wait(10)


def test_ddpm_errors_keep_their_message(capsys):
    assert describe_error(ConfigError("model.dim=3 is out of range")) == "model.dim=3 is out of range"
    assert capsys.readouterr().err == ""  # a user error is not a bug: no traceback


def test_stop_all_joins_everything(qtbot):
    ws = [Counting().start() for _ in range(2)]
    assert len(workers.live_threads()) == 2
    assert workers.stop_all(timeout=10)
    assert workers.live_threads() == [] and all(not w.is_alive() for w in ws)


def test_a_worker_starts_only_once(qtbot):
    w = TaskWorker(lambda: None)
    w.start()
    with pytest.raises(RuntimeError):
        w.start()
    assert w.wait(10)


def test_rate_limit():
    limit = RateLimit(3600)
    assert limit.due() and not limit.due()
