"""Every exception in a worker reaches the person as a message, and an unexpected one fails
the test suite instead of being printed and forgotten.

The suite's side is proven by running pytest on a few small tests in a separate process,
with this folder's conftest: a stray worker bug, an exception in a Qt slot and one in a
plain thread each fail their test; an error a test takes on purpose, and a DDPMError (a
message for people), do not.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from PySide6.QtWidgets import QFileDialog

from ddpm_core.errors import CheckpointError
from ddpm_gui import workers
from ddpm_gui.workers import TaskWorker

ROOT = Path(__file__).resolve().parents[2]
WAIT_MS = 60_000

CONFTEST = f"""
import importlib.util

_spec = importlib.util.spec_from_file_location("gui_conftest", {str(ROOT / "tests" / "gui" / "conftest.py")!r})
_gui = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_gui)
globals().update({{k: v for k, v in vars(_gui).items() if not k.startswith("__")}})
"""

TESTS = """
import threading

from PySide6.QtCore import QTimer

from ddpm_core.errors import DataError
from ddpm_gui import workers
from ddpm_gui.workers import TaskWorker


def run_task(qtbot, fn):
    task = TaskWorker(fn).start()
    assert task.wait(10)
    qtbot.wait(10)


def boom():
    raise ValueError("stray bug")


def test_stray_worker_bug(qtbot):
    run_task(qtbot, boom)


def test_worker_bug_taken_on_purpose(qtbot):
    run_task(qtbot, boom)
    assert [e.message for e in workers.take_errors()] == ["ValueError: stray bug"]


def test_worker_message_for_people(qtbot):
    def missing():
        raise DataError("the folder is gone: choose another")

    run_task(qtbot, missing)


def test_exception_in_a_qt_slot(qtbot):
    def slot():
        raise RuntimeError("slot bug")

    QTimer.singleShot(0, slot)
    qtbot.wait(50)


def test_exception_in_a_thread():
    def body():
        raise KeyError("thread bug")

    t = threading.Thread(target=body, name="plain")
    t.start()
    t.join()
"""


def test_unexpected_errors_fail_the_test_that_caused_them(tmp_path):
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_errors_fail.py").write_text(textwrap.dedent(TESTS))
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(ROOT))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=300,
    )
    out = result.stdout + result.stderr

    def outcome(*kinds: str) -> set[str]:  # "FAILED file::name - why" lines of the summary
        return {line.split("::")[1].split()[0] for line in out.splitlines() if line.startswith(kinds)}

    # A failure found after the test body (at teardown) is reported as an ERROR.
    bad = outcome("FAILED", "ERROR")
    assert bad == {"test_stray_worker_bug", "test_exception_in_a_qt_slot", "test_exception_in_a_thread"}, out
    assert outcome("PASSED") - bad == {"test_worker_bug_taken_on_purpose", "test_worker_message_for_people"}, out
    assert result.returncode == 1, out
    assert "ValueError: stray bug" in out and "slot bug" in out and "thread bug" in out, out


def test_worker_errors_are_recorded_with_their_kind(qtbot):
    for fn in (lambda: 1 / 0, lambda: (_ for _ in ()).throw(CheckpointError("x.safetensors is empty"))):
        task = TaskWorker(fn, name="probe").start()
        assert task.wait(10)
    taken = workers.take_errors()
    assert [(e.worker, e.message, e.is_bug) for e in taken] == [
        ("probe", "ZeroDivisionError: division by zero", True),
        ("probe", "x.safetensors is empty", False),
    ]
    assert workers.take_errors() == []  # taken once


@pytest.mark.parametrize("what", ["open (Training)", "open (Denoising)", "save", "export", "training", "autosave"])
def test_every_worker_error_reaches_the_person(qtbot, main_window, tmp_path, monkeypatch, make_config, fake_clock, what):
    """Each kind of worker the two tabs run, made to fail with a bug: the message is shown
    in the window (dialog and status bar), and the test takes the error it provoked."""
    from ddpm_core import training
    from ddpm_gui import training_panel, viewer_panel

    window = main_window
    seen = []
    window.state.errorOccurred.connect(seen.append)

    def bug(*args, **kwargs):
        raise RuntimeError(f"{what} bug")

    if what == "open (Training)":
        monkeypatch.setattr(training_panel, "read_training_checkpoint", bug)
        window.training.open_checkpoint(str(tmp_path / "x.safetensors"))
    elif what == "open (Denoising)":
        monkeypatch.setattr(viewer_panel, "load_for_sampling", bug)
        window.viewer.open_checkpoint(str(tmp_path / "x.safetensors"))
    elif what in ("save", "export"):
        window.training.set_config(make_config(steps=2, preview_every=0))
        with qtbot.waitSignal(window.training.runningChanged, timeout=WAIT_MS, check_params_cb=lambda r: r is False):
            window.training.start()
        if what == "save":
            monkeypatch.setattr(training.Trainer, "save", bug)
            window.training.save_checkpoint(str(tmp_path / "x.safetensors"))
        else:
            viewer = window.viewer
            viewer.sampler.setCurrentIndex(viewer.sampler.findData("ddim"))
            viewer.steps.setValue(2)
            viewer.count.setValue(2)
            with qtbot.waitSignal(viewer.sampled, timeout=WAIT_MS):
                viewer.sample()
            qtbot.waitUntil(lambda: not viewer.is_sampling(), timeout=WAIT_MS)
            monkeypatch.setattr(viewer_panel, "save_png_grid", bug)
            monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(tmp_path / "x.png"), ""))
            window.actions["export_png"].trigger()
    elif what == "training":
        monkeypatch.setattr(training.Trainer, "_train_step", bug)
        window.training.set_config(make_config(steps=5))
        window.training.start()
    else:  # autosave: a failure is shown and training goes on
        window.training.autosave_clock = fake_clock
        window.training.set_config(make_config(steps=5000, preview_every=0, autosave_minutes=1))
        window.training.start()
        qtbot.waitUntil(lambda: window.training.current_step() >= 1, timeout=WAIT_MS)
        monkeypatch.setattr(training.Trainer, "save", bug)
        fake_clock.advance(2)

    qtbot.waitUntil(lambda: len(seen) >= 1, timeout=WAIT_MS)
    assert f"RuntimeError: {what} bug" in seen[0] and "\n" not in seen[0]
    assert window._error_box.isVisible() and window._error_box.text() == seen[0]
    assert seen[0] in window.statusBar().currentMessage()
    if what == "autosave":
        step = window.training.current_step()
        qtbot.waitUntil(lambda: window.training.current_step() > step + 1, timeout=WAIT_MS)  # goes on
    assert [e.message for e in workers.take_errors()] == [f"RuntimeError: {what} bug"]
    window._error_box.close()
