"""Fixtures of the GUI tests: no test may leave a worker thread running or an error
unnoticed, and a tiny config.

Every test runs offscreen (tests/conftest.py sets QT_QPA_PLATFORM). The tiny config trains
a real U-Net on the real built-in shapes through the real Trainer, just small enough that a
step takes a few milliseconds on a 2-core CPU.

Errors fail the test that caused them, wherever they happen:
- in a worker (`ddpm_gui.workers` records every one): any exception that is not a
  `DDPMError` is a bug, and fails the test unless the test provoked it and took it with
  `workers.take_errors()`. A DDPMError is a message written for people (a bad file, a
  missing folder); tests provoke those on purpose and check where the panel shows them;
- in a Qt slot or virtual (pytest-qt's exception capture, on unless qt_no_exception_capture);
- in any other Python thread (`threading.excepthook`).
"""

from __future__ import annotations

import threading

import pytest

from ddpm_core.config import DataConfig, ModelConfig, RunConfig, ScheduleConfig, TrainConfig

# A thread that is merely finishing (its last signal already sent) gets this long to end
# before it counts as left running.
GRACE_MS = 2000


@pytest.fixture(autouse=True)
def no_live_threads(qapp):
    """Fail any test that leaves a QThread running (then stop it, so others are not hit)."""
    from ddpm_gui import workers

    yield
    for thread in workers.live_threads():
        thread.wait(GRACE_MS)
    left = workers.live_threads()
    if left:
        names = ", ".join(t.objectName() or "unnamed" for t in left)
        workers.stop_all(timeout=None)
        pytest.fail(f"test left {len(left)} QThread(s) running: {names}")


def fail_on_worker_errors() -> None:
    """pytest.fail with every unexpected worker error (a bug) the test has not taken."""
    from ddpm_gui import workers

    bugs = [e for e in workers.take_errors() if e.is_bug]
    if bugs:
        lines = "\n".join(f"  {e.worker}: {e.message}" for e in bugs)
        pytest.fail(
            f"{len(bugs)} unexpected exception(s) in a worker (the traceback is in the captured "
            f"stderr; a test provoking one takes it with workers.take_errors()):\n{lines}",
            pytrace=False,
        )


@pytest.fixture(autouse=True)
def no_stray_errors(no_live_threads):
    """Fail a test during which a worker or a plain thread raised an unexpected exception.

    Depends on no_live_threads so that its teardown runs after every thread was joined:
    an error raised at the very end of a test is seen too.
    """
    from ddpm_gui import workers

    workers.take_errors()  # an earlier test's failure is that test's, already reported
    raised: list[str] = []
    previous = threading.excepthook

    def hook(args) -> None:
        raised.append(f"{args.exc_type.__name__}: {args.exc_value} (thread {getattr(args.thread, 'name', '?')})")
        previous(args)  # still printed, with its traceback

    threading.excepthook = hook
    try:
        yield
    finally:
        threading.excepthook = previous
    if raised:
        pytest.fail("exception(s) in a thread:\n  " + "\n  ".join(raised), pytrace=False)
    fail_on_worker_errors()


@pytest.fixture(autouse=True)
def no_modal_questions(monkeypatch):
    """A window closed with unsaved training (pytest-qt closes every widget after a test)
    would otherwise wait forever in a modal "Save checkpoint?" box nobody sees. Unless a
    test answers itself, that box answers Discard and a save-file dialog is cancelled."""
    from PySide6.QtWidgets import QFileDialog, QMessageBox

    monkeypatch.setattr(QMessageBox, "question", staticmethod(lambda *args, **kwargs: QMessageBox.Discard))
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *args, **kwargs: ("", "")))


@pytest.fixture(autouse=True)
def autosave_folder(tmp_path, monkeypatch):
    """Every GUI test autosaves into its own tmp_path, never the person's data folder."""
    from ddpm_gui.autosave_files import ENV_FOLDER

    folder = tmp_path / "autosave"
    monkeypatch.setenv(ENV_FOLDER, str(folder))
    return folder


@pytest.fixture(autouse=True)
def delete_widgets_before_collecting(qtbot):
    """Widgets given to qtbot.addWidget are deleted by Qt first, then collected.

    pytest-qt keeps only weak references and deletes a test's widgets at teardown with
    deleteLater(). A top-level widget is owned by Python, and its Python side is a web of
    cycles (slots, plot items), so between the end of the test and that deletion a garbage
    collection could clear its objects while the C++ widgets still live; Qt then calls
    Python overrides on emptied objects (pyqtgraph's LabelItem.sizeHint). Holding strong
    references until Qt has deleted them keeps the order right: delete, then collect, here
    on the GUI thread (collections never run on worker threads: see ddpm_gui.gui_gc).
    """
    import gc

    from PySide6.QtCore import QCoreApplication, QEvent

    kept = []
    add_widget = qtbot.addWidget

    def add_and_keep(widget, **kwargs):
        kept.append(widget)
        return add_widget(widget, **kwargs)

    qtbot.addWidget = add_and_keep
    yield
    # pytest-qt has closed them and called deleteLater() by now.
    QCoreApplication.sendPostedEvents(None, QEvent.DeferredDelete)
    kept.clear()
    gc.collect()


def pytest_configure(config):
    # pytest-qt turns an exception escaping a Qt slot or virtual method into a test
    # failure; these tests rely on that, so it must not be switched off.
    if config.getini("qt_no_exception_capture"):
        raise pytest.UsageError("tests/gui need pytest-qt's exception capture: remove qt_no_exception_capture")


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    # Training and the GUI share 2 cores here; one intra-op thread each avoids the two
    # fighting over both cores (which makes tiny models many times slower).
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_tiny_config(**train) -> RunConfig:
    cfg = RunConfig(
        model=ModelConfig(dim=8, dim_mults=(1, 2), channels=1),
        schedule=ScheduleConfig("linear", 20),
        data=DataConfig(dataset="shapes", image_size=8, channels=1, limit=64),
        train=TrainConfig(
            batch_size=8, lr=1e-3, steps=30, preview_every=10, preview_count=4, preview_steps=5,
            checkpoint_every=0, device="cpu",
        ),
    )
    for key, value in train.items():
        setattr(cfg.train, key, value)
    return cfg.validate()


@pytest.fixture
def tiny_config() -> RunConfig:
    return make_tiny_config()


@pytest.fixture(scope="session")
def make_config():
    """make_config(steps=..., preview_every=...): the tiny config with train settings changed."""
    return make_tiny_config


@pytest.fixture
def state(qapp):
    from ddpm_gui.state import AppState

    s = AppState()
    s.set_schedule("linear", 20)
    return s


WAIT_MS = 60_000  # generous hang guards: a loaded 2-core machine is slow; waits end early anyway


class FakeClock:
    """A clock for AutosaveClock that moves only when a test says so."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, minutes: float) -> None:
        self.now += minutes * 60.0


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def clocked_training_panel(qtbot, state, fake_clock):
    """A TrainingPanel whose autosave clock the test moves by hand."""
    from ddpm_gui.training_panel import TrainingPanel

    p = TrainingPanel(state)
    qtbot.addWidget(p)
    p.autosave_clock = fake_clock
    yield p
    p.shutdown(ask=False)


@pytest.fixture
def settings_path(tmp_path):
    """QSettings in tmp_path only, also those made with the default constructor."""
    from PySide6.QtCore import QSettings

    QSettings.setDefaultFormat(QSettings.IniFormat)
    for scope in (QSettings.UserScope, QSettings.SystemScope):
        QSettings.setPath(QSettings.IniFormat, scope, str(tmp_path / "qsettings"))
    return str(tmp_path / "studio.ini")


@pytest.fixture
def main_window(qtbot, settings_path):
    """The real main window with all four panels, shown; closed (Discard) at the end."""
    from PySide6.QtCore import QSettings

    from ddpm_gui.main_window import MainWindow
    from ddpm_gui.state import AppState

    window = MainWindow(AppState(), settings=QSettings(settings_path, QSettings.IniFormat))
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window.forward.x0 is not None, timeout=WAIT_MS)
    yield window
    window.close()  # (pytest-qt has usually closed it already: then this does nothing)


@pytest.fixture
def errors(state):
    """Every message sent to state.errorOccurred during the test."""
    seen: list[str] = []
    state.errorOccurred.connect(seen.append)
    return seen
