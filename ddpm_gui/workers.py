"""The thin worker layer: run the engine's own loops on a QThread, never a copy of them.

A `Worker` is a QObject moved to its own QThread. Its `work()` iterates a generator of
`ddpm_core` (training steps, sampling steps) or runs one call (load a checkpoint, write a
GIF). Between items a `LoopWorker` checks its stop and pause flags: pausing waits on a
condition variable (no CPU burnt), stopping takes effect after the current item.

What crosses to the GUI thread are signals carrying plain numbers and CPU numpy copies,
never live tensors; loops coalesce them with `RateLimit` so the GUI sees at most a screen's
worth of updates. Any exception ends the worker with `failed(one line)`: a `DDPMError`'s
message as it is, anything else as "Type: message" with the traceback on stderr.

Every worker error (a failed worker, a failed request) is also written to a process-wide
list, `take_errors()`: the GUI tests fail any test during which a worker hit a bug (an
exception that is not a DDPMError) that the test did not provoke and take on purpose, so
an error can never be printed and forgotten.

Every started thread is kept in a registry until it has finished, so no QThread object is
ever destroyed while running; `live_threads()` lets tests check nothing is left behind,
and `stop_all()` (also run when the application quits) stops and joins them all.
"""

from __future__ import annotations

import atexit
import sys
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass
from typing import Callable, Optional

from PySide6.QtCore import QCoreApplication, QObject, QThread, Signal, Slot

from ddpm_core.errors import DDPMError, as_one_line
from ddpm_gui.gui_gc import collect_on_gui_thread
from ddpm_gui.thread_priority import lower_this_threads_priority

# ---- the registry of live threads --------------------------------------------------------

# (thread, worker) pairs, strong references held until the thread has finished: a QThread
# whose Python wrapper is collected while running aborts the process.
_registry: list[tuple[QThread, "Worker"]] = []
_quit_hook_installed = False


def _prune() -> None:
    _registry[:] = [(t, w) for t, w in _registry if not t.isFinished()]


def live_threads() -> list[QThread]:
    """Worker threads started and not yet finished."""
    _prune()
    return [t for t, _ in _registry]


def live_workers() -> list["Worker"]:
    _prune()
    return [w for _, w in _registry]


def stop_all(timeout: Optional[float] = None) -> bool:
    """Ask every worker to stop, then join them; True when all have finished.

    timeout None waits as long as it takes: every loop item ends (a training step, a
    sampling step, a socket read with its own timeout), and waiting is better than
    destroying a running thread.
    """
    workers = live_workers()
    for w in workers:
        w.stop()
    deadline = None if timeout is None else time.monotonic() + timeout
    ok = True
    for w in workers:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        ok = w.wait(left) and ok
    _prune()
    return ok


def _install_app_hooks() -> None:
    # Once per process, before the first worker thread runs: cyclic garbage collection
    # moves to the GUI thread (see gui_gc: a collection on a worker thread can destroy Qt
    # objects there and deadlock), and every worker is joined before Qt and Python tear
    # objects down.
    global _quit_hook_installed
    collect_on_gui_thread()
    if _quit_hook_installed:
        return
    _quit_hook_installed = True
    app = QCoreApplication.instance()
    if app is not None:
        app.aboutToQuit.connect(_join_all_on_quit)
    atexit.register(_join_all_on_quit)


def _join_all_on_quit() -> None:
    if live_threads():
        stop_all(timeout=None)


# ---- errors ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerError:
    """One exception a worker caught: which worker, the one line shown, and its type."""

    worker: str
    message: str
    error_type: type

    @property
    def is_bug(self) -> bool:
        """Not a DDPMError (a message written for people) but an unforeseen exception."""
        return not issubclass(self.error_type, DDPMError)


# Only the tests read this list; in the app the newest few are plenty (and never grow).
_errors: deque[WorkerError] = deque(maxlen=100)
_errors_lock = threading.Lock()  # appended to from worker threads


def _record_error(worker: str, message: str, error: BaseException) -> None:
    with _errors_lock:
        _errors.append(WorkerError(worker, message, type(error)))


def take_errors() -> list[WorkerError]:
    """Every worker error since the last call, oldest first; the list is emptied.

    The app itself shows each error through the worker's signals; this list is for the
    tests, which fail when an error nobody expected happened.
    """
    with _errors_lock:
        taken = list(_errors)
        _errors.clear()
    return taken


def one_line(exc: BaseException) -> str:
    """The exception as one line for a person: a DDPMError's own message, else "Type: text"."""
    if isinstance(exc, DDPMError):
        return str(exc)
    text = as_one_line(str(exc), limit=300)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def describe_error(exc: BaseException) -> str:
    """One line for a person. DDPMError messages are written for people already; anything
    else is a bug, so its traceback goes to stderr for the report."""
    if not isinstance(exc, DDPMError):
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    return one_line(exc)


def report_error(worker: str, exc: BaseException) -> str:
    """describe_error, and the error recorded for `take_errors`: what every worker calls
    on an exception it catches, before it signals the one line to the GUI."""
    message = describe_error(exc)
    _record_error(worker, message, exc)
    return message


class Stopped(Exception):
    """Raised inside a worker (e.g. from a download progress callback) to end it early."""


# ---- throttling -------------------------------------------------------------------------------


class RateLimit:
    """True at most once per `interval` seconds: how often a loop may emit to the GUI.

    A screen shows ~60 frames a second and a plot needs far fewer; emitting once per
    training step (hundreds per second on a GPU) would flood the GUI thread's event queue.
    """

    def __init__(self, interval: float = 0.05):
        self.interval = interval
        self._last = float("-inf")

    def due(self) -> bool:
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            return True
        return False


# ---- workers ------------------------------------------------------------------------------------


class Worker(QObject):
    """Runs `work()` once on its own QThread; subclasses emit their results as signals."""

    failed = Signal(str)  # one line; the worker ends
    finished = Signal()  # always last, after success, stop or failure

    def __init__(self, name: str = "worker"):
        super().__init__()
        self.name = name
        self._stop = threading.Event()
        self._thread: Optional[QThread] = None
        self.error: Optional[str] = None  # the one line of `failed`, once it failed
        # The exception's class (not the exception: its traceback would keep the failed
        # step's tensors, maybe a GPU's worth, alive), e.g. to offer a fix for OutOfMemory.
        self.error_type: Optional[type] = None

    # ---- to implement ----
    def work(self) -> None:
        raise NotImplementedError

    # ---- lifecycle (GUI thread) ----
    def start(self) -> "Worker":
        if self._thread is not None:
            raise RuntimeError(f"{self.name} worker was already started")
        _install_app_hooks()
        thread = QThread()  # no parent: its lifetime is the registry's, not a widget's
        thread.setObjectName(f"ddpm-{self.name}")
        self._thread = thread
        self.moveToThread(thread)
        thread.started.connect(self._run)
        _registry.append((thread, self))
        thread.start()
        return self

    def stop(self) -> None:
        """Ask the worker to end after the current item (thread-safe, returns at once)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def is_alive(self) -> bool:
        return self._thread is not None and not self._thread.isFinished()

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Join the thread; True when it has finished (None: wait without limit)."""
        if self._thread is None:
            return True
        if timeout is None:
            return self._thread.wait()
        return self._thread.wait(max(0, int(timeout * 1000)))

    def stop_and_wait(self, timeout: Optional[float] = None) -> bool:
        """Stop and join: what a panel's shutdown calls. True when the thread has ended."""
        self.stop()
        return self.wait(timeout)

    # ---- the thread's body ----
    @Slot()
    def _run(self) -> None:
        lower_this_threads_priority()  # before any torch work: its OpenMP threads inherit it
        try:
            self.work()
        except Stopped:
            pass
        except BaseException as e:  # the app goes on whatever the worker hit
            self.error = report_error(self.name, e)
            self.error_type = type(e)
            self.failed.emit(self.error)
        finally:
            self._release()
            self.finished.emit()
            # Quit directly, not via a queued signal: a GUI thread blocked in wait() must
            # not be needed for the thread to end. (No moveToThread back to the GUI thread
            # here: it locks both threads' event queues while Qt calls into Python, a lock
            # order that can deadlock with a GUI thread posting an event.)
            QThread.currentThread().quit()

    def _release(self) -> None:
        """Hook run on the worker thread just before `finished`."""


class LoopWorker(Worker):
    """A worker iterating a generator, with pause/resume and requests served between items.

    Subclasses call `between_items()` after each item: it runs queued requests, and while
    paused blocks on a condition variable until resumed or stopped.
    """

    pausedChanged = Signal(bool)  # emitted from the worker when it actually (un)pauses
    requestFailed = Signal(str)  # a request raised; the loop goes on

    def __init__(self, name: str = "loop"):
        super().__init__(name)
        self._cond = threading.Condition()
        self._pause_requested = False
        self._requests: deque[Callable[[], None]] = deque()
        self._closed = False  # no more requests are served once the loop has ended

    def pause(self) -> None:
        with self._cond:
            self._pause_requested = True

    def resume(self) -> None:
        with self._cond:
            self._pause_requested = False
            self._cond.notify_all()

    def stop(self) -> None:
        super().stop()
        with self._cond:
            self._cond.notify_all()  # wake a paused loop so it can end

    @property
    def pause_requested(self) -> bool:
        return self._pause_requested

    def request(self, fn: Callable[[], None]) -> bool:
        """Run `fn` on the worker thread between two items (or while paused).

        False when the loop has already ended: the caller must then do it itself.
        """
        with self._cond:
            if self._closed:
                return False
            self._requests.append(fn)
            self._cond.notify_all()
            return True

    def between_items(self, on_pause: Optional[Callable[[], None]] = None) -> None:
        """Serve requests; if a pause was asked for, call `on_pause` and wait for resume."""
        self._serve_requests()
        if not self._pause_requested or self.stopping:
            return
        if on_pause is not None:
            on_pause()
        self.pausedChanged.emit(True)
        while True:
            with self._cond:
                while self._pause_requested and not self.stopping and not self._requests:
                    self._cond.wait()
                waiting = self._pause_requested and not self.stopping
            self._serve_requests()
            if not waiting:
                break
        self.pausedChanged.emit(False)

    def close_requests(self) -> None:
        """Call once the loop is over: serve what is queued and refuse anything later."""
        with self._cond:
            self._closed = True
        self._serve_requests()

    def _serve_requests(self) -> None:
        while True:
            with self._cond:
                if not self._requests:
                    return
                fn = self._requests.popleft()
            try:
                fn()
            except Exception as e:  # a failed request (a save) must not end the loop
                self.requestFailed.emit(report_error(f"{self.name} request", e))

    def _release(self) -> None:
        # Whatever ended the loop, requests already accepted are still served (a save
        # asked for during the last step must happen) and later ones are refused.
        self.close_requests()


class TaskWorker(Worker):
    """One call off the GUI thread (load a checkpoint, save one, write a GIF)."""

    succeeded = Signal(object)  # the call's return value

    def __init__(self, fn: Callable[[], object], name: str = "task"):
        super().__init__(name)
        self._fn = fn

    def work(self) -> None:
        result = self._fn()
        self.succeeded.emit(result)

    def _release(self) -> None:
        self._fn = None


class LatestTask(QObject):
    """Runs one call at a time on a TaskWorker, for results only the latest request wants
    (the forward tab's example images, an image file being opened). A request made while
    one runs is queued, replacing any queued before it; a running call cannot be
    interrupted, so its result is dropped when another request came meanwhile."""

    loaded = Signal(object)  # the latest call's return value
    failed = Signal(str)  # its one-line error

    def __init__(self, name: str, parent=None):
        super().__init__(parent)
        self._name = name
        self._worker: Optional[TaskWorker] = None
        self._queued: Optional[Callable[[], object]] = None
        self._closed = False

    def request(self, fn: Callable[[], object]) -> None:
        if self._closed:
            return
        if self._worker is not None:
            self._queued = fn
            return
        self._start(fn)

    def is_loading(self) -> bool:
        return self._worker is not None

    def _start(self, fn: Callable[[], object]) -> None:
        worker = TaskWorker(fn, name=self._name)
        worker.succeeded.connect(self._on_succeeded)
        worker.failed.connect(self._on_failed)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        worker.start()

    def _is_current(self) -> bool:
        return not self._closed and self._worker is not None and self.sender() is self._worker

    def _on_succeeded(self, result) -> None:
        if self._is_current() and self._queued is None:
            self.loaded.emit(result)

    def _on_failed(self, message: str) -> None:
        if self._is_current() and self._queued is None:
            self.failed.emit(message)

    def _on_finished(self) -> None:
        if not self._is_current():
            return
        self._worker = None
        if self._queued is not None:
            queued, self._queued = self._queued, None
            self._start(queued)

    def shutdown(self) -> None:
        """Wait for a running call (reads take seconds at most) and ignore what it sends."""
        self._closed = True
        self._queued = None
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.wait(None)
