"""Closing the window in the middle of things: it offers to save, stops every thread within
one step, and closes cleanly, whatever is running (training, a pause, a save, a checkpoint
load, sampling).

Every test closes the real MainWindow with window.close(), as the title bar's button does,
and answers the "Save checkpoint?" question by replacing the panel's dialog method.
"""

from __future__ import annotations

import threading
import time

import pytest

from ddpm_core.checkpoint import load_checkpoint
from ddpm_core.training import Trainer
from ddpm_gui import workers

WAIT_MS = 60_000


def start_training(qtbot, window, config, until_step: int = 2):
    panel = window.training
    panel.set_config(config)
    assert panel.start()
    qtbot.waitUntil(lambda: panel.current_step() >= until_step, timeout=WAIT_MS)
    return panel


def answer(panel, reply: str, path=None) -> list[str]:
    """Answer the close question with `reply`; returns the list of questions asked."""
    asked = []
    panel.ask_save_before_close = lambda: asked.append("save?") or reply
    panel.choose_save_path = lambda: asked.append("path?") or (str(path) if path else None)
    return asked


def assert_closed_cleanly(window) -> None:
    assert not window.isVisible()
    assert workers.live_threads() == []
    assert not window.training.is_running() and not window.viewer.is_sampling()


@pytest.fixture
def slow_steps(monkeypatch):
    """Training steps of at least 30 ms, so a close surely arrives in the middle of one."""
    real = Trainer._train_step

    def slow(self):
        time.sleep(0.03)
        return real(self)

    monkeypatch.setattr(Trainer, "_train_step", slow)


def test_save_writes_a_loadable_checkpoint_of_the_step_reached(qtbot, main_window, tmp_path, make_config):
    panel = start_training(qtbot, main_window, make_config(steps=5000))
    path = tmp_path / "closing.safetensors"
    asked = answer(panel, "yes", path)
    assert main_window.close() is True
    assert asked == ["save?", "path?"]
    assert_closed_cleanly(main_window)
    ckpt = load_checkpoint(path)
    assert ckpt.step == panel.trainer.step >= 2
    resumed = Trainer.from_checkpoint(ckpt)  # loadable to go on training, not just readable
    assert resumed.step == ckpt.step


def test_discard_writes_nothing_and_closes(qtbot, main_window, tmp_path, autosave_folder, make_config):
    panel = start_training(qtbot, main_window, make_config(steps=5000))
    asked = answer(panel, "no", tmp_path / "never.safetensors")
    assert main_window.close() is True
    assert asked == ["save?"]  # no path asked for
    assert_closed_cleanly(main_window)
    assert not (tmp_path / "never.safetensors").exists()


def test_cancel_keeps_the_window_and_training_goes_on(qtbot, main_window, make_config):
    panel = start_training(qtbot, main_window, make_config(steps=5000))
    answer(panel, "cancel")
    assert main_window.close() is False
    assert main_window.isVisible() and panel.is_running()
    step = panel.current_step()
    qtbot.waitUntil(lambda: panel.current_step() >= step + 2, timeout=WAIT_MS)  # still training

    # Choosing Save, then cancelling the file dialog, also keeps everything as it was.
    answer(panel, "yes", None)
    assert main_window.close() is False
    assert main_window.isVisible() and panel.is_running()
    answer(panel, "no")
    assert main_window.close() is True
    assert_closed_cleanly(main_window)


def test_the_worker_stops_within_one_step(qtbot, main_window, make_config, slow_steps):
    panel = start_training(qtbot, main_window, make_config(steps=5000, preview_every=0), until_step=3)
    answer(panel, "no")
    at_request = panel._worker.trainer.step  # steps done when the window is asked to close
    assert main_window.close() is True
    assert_closed_cleanly(main_window)
    assert at_request <= panel.trainer.step <= at_request + 1


def test_closing_while_paused_saves_the_paused_step(qtbot, main_window, tmp_path, make_config):
    panel = start_training(qtbot, main_window, make_config(steps=5000))
    with qtbot.waitSignal(panel.pausedChanged, timeout=WAIT_MS, check_params_cb=lambda p: p):
        panel.pause()
    paused_at = panel.current_step()
    path = tmp_path / "paused.safetensors"
    answer(panel, "yes", path)
    assert main_window.close() is True
    assert_closed_cleanly(main_window)
    assert load_checkpoint(path).step == paused_at == panel.trainer.step


def test_closing_while_a_save_is_in_flight_finishes_the_save(qtbot, main_window, tmp_path, make_config, slow_steps):
    panel = start_training(qtbot, main_window, make_config(steps=5000))
    path = tmp_path / "asked_before.safetensors"
    assert panel.save_checkpoint(str(path))  # queued: written between two steps
    answer(panel, "no")
    assert main_window.close() is True
    assert_closed_cleanly(main_window)
    assert load_checkpoint(path).step >= 2  # the save asked for before closing was not lost


def test_closing_after_training_ended_saves_on_a_worker_thread(qtbot, main_window, tmp_path, make_config):
    panel = main_window.training
    panel.set_config(make_config(steps=4, preview_every=0))
    with qtbot.waitSignal(panel.runningChanged, timeout=WAIT_MS, check_params_cb=lambda r: r is False):
        panel.start()
    saving_threads = []
    real_save = Trainer.save

    def spy(self, path, *args, **kwargs):
        saving_threads.append(threading.current_thread())
        return real_save(self, path, *args, **kwargs)

    Trainer.save = spy
    try:
        path = tmp_path / "ended.safetensors"
        answer(panel, "yes", path)
        assert main_window.close() is True
    finally:
        Trainer.save = real_save
    assert_closed_cleanly(main_window)
    assert load_checkpoint(path).step == 4
    assert saving_threads and threading.main_thread() not in saving_threads  # never on the GUI thread


def test_a_failed_save_on_close_keeps_the_window_open(qtbot, main_window, tmp_path, make_config):
    panel = start_training(qtbot, main_window, make_config(steps=5000))
    seen = []
    main_window.state.errorOccurred.connect(seen.append)
    folder = tmp_path / "a_folder"
    folder.mkdir()
    answer(panel, "yes", folder)  # a folder cannot be written as a file
    assert main_window.close() is False
    assert main_window.isVisible() and not panel.is_running()  # stopped, nothing lost: can save again
    qtbot.waitUntil(lambda: len(seen) == 1, timeout=WAIT_MS)
    assert "a_folder" in seen[0] and "\n" not in seen[0]
    assert panel.has_unsaved_progress() and panel.save_button.isEnabled()
    workers.take_errors()  # provoked: the CheckpointError above

    good = tmp_path / "second_try.safetensors"
    answer(panel, "yes", good)
    assert main_window.close() is True
    assert load_checkpoint(good).step == panel.trainer.step


@pytest.mark.parametrize("tab", ["training", "viewer"])
def test_closing_while_a_checkpoint_loads(qtbot, main_window, tmp_path, make_config, monkeypatch, tab):
    from ddpm_gui import training_panel, viewer_panel

    trainer = Trainer(make_config(steps=2, preview_every=0))
    for _ in trainer.steps():
        pass
    path = str(trainer.save(tmp_path / "to_open.safetensors"))
    started, release = threading.Event(), threading.Event()
    module, name = (training_panel, "read_training_checkpoint") if tab == "training" else (viewer_panel, "load_for_sampling")
    real = getattr(module, name)

    def slow_load(*args, **kwargs):
        started.set()
        release.wait(10)  # held until the window is closing
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, slow_load)
    assert getattr(main_window, tab).open_checkpoint(path)
    assert started.wait(10)
    threading.Timer(0.2, release.set).start()  # the load finishes while closeEvent waits for it
    assert main_window.close() is True
    assert_closed_cleanly(main_window)


def test_closing_while_sampling_stops_it(qtbot, main_window, tmp_path, make_config, monkeypatch):
    from ddpm_gui import sampling_worker

    trainer = Trainer(make_config(steps=2, preview_every=0))
    for _ in trainer.steps():
        pass
    path = str(trainer.save(tmp_path / "to_sample.safetensors"))
    viewer = main_window.viewer
    with qtbot.waitSignal(viewer.sourceChanged, timeout=WAIT_MS):
        viewer.open_checkpoint(path)
    real_loop = sampling_worker.sample_loop

    def slow_loop(*args, **kwargs):
        for step in real_loop(*args, **kwargs):
            time.sleep(0.05)  # 20 DDPM steps: a second at least, closed long before the end
            yield step

    monkeypatch.setattr(sampling_worker, "sample_loop", slow_loop)
    viewer.sampler.setCurrentIndex(viewer.sampler.findData("ddpm"))
    with qtbot.waitSignal(viewer.samplingChanged, timeout=WAIT_MS):
        assert viewer.sample()
    qtbot.waitUntil(lambda: viewer.frame_count() >= 1, timeout=WAIT_MS)
    assert main_window.close() is True
    assert_closed_cleanly(main_window)
    assert viewer.trajectory is None or not viewer.trajectory.complete  # really interrupted


def test_no_question_after_progress_was_let_go_of(qtbot, main_window, make_config):
    """shutdown(ask=False) (a script, or the app quitting) discards; closing later must not
    ask again (that unseen question once hung the screenshot script under Xvfb)."""
    panel = start_training(qtbot, main_window, make_config(steps=5000))
    assert panel.shutdown(ask=False)
    asked = answer(panel, "cancel")
    assert main_window.close() is True and asked == []
    assert_closed_cleanly(main_window)


@pytest.mark.parametrize("button, reply", [("Save", "yes"), ("Discard", "no"), ("Cancel", "cancel")])
def test_the_question_offers_save_discard_cancel(main_window, monkeypatch, button, reply):
    from PySide6.QtWidgets import QMessageBox

    shown = []

    def question(parent, title, text, buttons, default):
        shown.append((title, text, buttons, default))
        return getattr(QMessageBox, button)

    monkeypatch.setattr(QMessageBox, "question", question)
    main_window.training._step = 12
    assert main_window.training.ask_save_before_close() == reply
    (title, text, buttons, default), = shown
    assert "step 12" in text and default == QMessageBox.Save
    assert buttons == QMessageBox.Save | QMessageBox.Discard | QMessageBox.Cancel

