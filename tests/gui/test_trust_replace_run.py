"""What happens to a run when the Training tab is told to do something else: Start again
or Open a checkpoint after it ended, Stop while paused, a save that finishes late, a
continued run that fails before its first step.
"""

from __future__ import annotations

import time

import pytest
import torch

from ddpm_core.checkpoint import load_checkpoint
from ddpm_core.training import Trainer
from ddpm_gui import workers
from ddpm_gui.training_panel import TrainingPanel

WAIT_MS = 60_000


@pytest.fixture
def panel(qtbot, state):
    p = TrainingPanel(state)
    qtbot.addWidget(p)
    yield p
    p.shutdown(ask=False)


def train_to_the_end(qtbot, panel, config) -> None:
    panel.set_config(config)
    with qtbot.waitSignal(panel.runningChanged, timeout=WAIT_MS, check_params_cb=lambda running: not running):
        assert panel.start()


def answer(panel, reply: str, path=None) -> list[str]:
    """Answer 'Save checkpoint before ...?' with `reply`; returns what was asked."""
    asked = []
    panel.ask_save_before = lambda doing: asked.append(doing) or reply
    panel.choose_save_path = lambda: asked.append("path?") or (str(path) if path else None)
    return asked


@pytest.fixture
def other_checkpoint(tmp_path, make_config) -> str:
    trainer = Trainer(make_config(steps=5, preview_every=0))
    for _ in trainer.steps():
        pass
    return str(trainer.save(tmp_path / "other.safetensors"))


def test_start_after_an_unsaved_run_asks_first(qtbot, panel, make_config, tmp_path):
    train_to_the_end(qtbot, panel, make_config(steps=12, preview_every=0))
    old = panel.trainer
    asked = answer(panel, "cancel")
    assert not panel.start() and not panel.is_running()
    assert asked == ["starting a new run"] and panel.trainer is old and panel.has_unsaved_progress()

    # Save: the checkpoint is written off the GUI thread, then the new run starts by itself.
    path = tmp_path / "before_the_new_run.safetensors"
    asked = answer(panel, "yes", path)
    assert not panel.start()  # not yet: it starts once the save is written
    qtbot.waitUntil(panel.is_running, timeout=WAIT_MS)
    assert asked == ["starting a new run", "path?"]
    assert load_checkpoint(path).step == 12
    qtbot.waitUntil(lambda: not panel.is_running(), timeout=WAIT_MS)

    # Discard: the new run starts at once, and nothing is asked again for that run.
    asked = answer(panel, "no")
    assert panel.start()
    assert asked == ["starting a new run"]
    qtbot.waitUntil(lambda: not panel.is_running(), timeout=WAIT_MS)


def test_a_failed_save_keeps_the_run_and_starts_nothing(qtbot, panel, make_config, tmp_path, errors):
    train_to_the_end(qtbot, panel, make_config(steps=6, preview_every=0))
    old = panel.trainer
    answer(panel, "yes", tmp_path / "no_such_folder_is_a_file" / "x.safetensors")
    (tmp_path / "no_such_folder_is_a_file").write_text("a file where the folder would be")
    assert not panel.start()
    qtbot.waitUntil(lambda: bool(errors), timeout=WAIT_MS)
    qtbot.wait(200)
    assert not panel.is_running() and panel.trainer is old and panel.has_unsaved_progress()


def test_opening_a_checkpoint_after_an_unsaved_run_asks_first(qtbot, panel, make_config, other_checkpoint):
    train_to_the_end(qtbot, panel, make_config(steps=8, preview_every=0))
    asked = answer(panel, "cancel")
    assert not panel.open_checkpoint(other_checkpoint)
    assert asked == ["opening a checkpoint"] and panel.has_unsaved_progress()
    asked = answer(panel, "no")
    with qtbot.waitSignal(panel.checkpointOpened, timeout=WAIT_MS):
        assert panel.open_checkpoint(other_checkpoint)
    assert asked == ["opening a checkpoint"] and not panel.has_unsaved_progress()


def test_a_late_save_of_the_last_run_is_not_the_new_runs(qtbot, panel, make_config, tmp_path):
    # The save of an ended run may be written after a new run began (a slow disk): the new
    # run's steps stay unsaved, so closing still asks about them.
    train_to_the_end(qtbot, panel, make_config(steps=10, preview_every=0))
    old = panel.trainer
    real_save = old.save
    old.save = lambda path: (time.sleep(1.5), real_save(path))[1]
    assert panel.save_checkpoint(str(tmp_path / "old.safetensors"))
    answer(panel, "no")  # the old run's save is not written yet, so Start asks
    panel.set_config(make_config(steps=4, preview_every=0))
    assert panel.start()
    with qtbot.waitSignal(panel.checkpointSaved, timeout=WAIT_MS):
        pass
    qtbot.waitUntil(lambda: not panel.is_running(), timeout=WAIT_MS)
    assert panel.trainer.step == 4 and panel.has_unsaved_progress()


def test_stop_while_paused_is_a_stop(qtbot, panel, state, make_config):
    statuses = []
    state.status.connect(statuses.append)
    panel.set_config(make_config(steps=5000, preview_every=0))
    panel.start()
    qtbot.waitUntil(lambda: panel.current_step() >= 2, timeout=WAIT_MS)
    with qtbot.waitSignal(panel.pausedChanged, timeout=WAIT_MS):
        panel.pause()
    panel.stop()
    # Once a stop is asked for, Pause and Resume are no longer offered.
    assert not panel.pause_button.isEnabled() and not panel.resume_button.isEnabled()
    assert not panel.stop_button.isEnabled()
    with qtbot.waitSignal(panel.runningChanged, timeout=WAIT_MS):
        pass
    assert "Training resumed" not in statuses
    assert any(s.startswith("Training stopped at step") for s in statuses)


def test_pause_is_not_offered_while_stopping(qtbot, panel, make_config):
    panel.set_config(make_config(steps=5000, preview_every=0))
    panel.start()
    qtbot.waitUntil(lambda: panel.current_step() >= 2, timeout=WAIT_MS)
    panel.stop()
    assert not panel.pause_button.isEnabled()
    with qtbot.waitSignal(panel.runningChanged, timeout=WAIT_MS):
        pass


def test_a_continued_run_that_fails_before_a_step_still_continues_the_checkpoint(
    qtbot, panel, other_checkpoint, monkeypatch, errors
):
    with qtbot.waitSignal(panel.checkpointOpened, timeout=WAIT_MS):
        panel.open_checkpoint(other_checkpoint)
    panel.form.set_steps(40)
    real = Trainer._train_step

    def out_of_memory(self):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(Trainer, "_train_step", out_of_memory)
    with qtbot.waitSignal(panel.runningChanged, timeout=WAIT_MS, check_params_cb=lambda running: not running):
        assert panel.start()
    workers.take_errors()
    assert panel.suggestion_button.isVisibleTo(panel)
    assert panel.new_run_button.isVisibleTo(panel) and not panel.form.dim.isEnabled()  # still continuing

    monkeypatch.setattr(Trainer, "_train_step", real)
    panel._apply_suggestion()  # "Use batch size 4", then Start again
    steps = []
    panel.progressed.connect(steps.append)
    with qtbot.waitSignal(panel.runningChanged, timeout=WAIT_MS, check_params_cb=lambda running: not running):
        assert panel.start()
    assert steps[0] == 6 and panel.trainer.step == 40  # from the checkpoint's step 5, not from 0


def test_the_checkpoint_chosen_last_is_the_one_continued(qtbot, panel, other_checkpoint, tmp_path, monkeypatch):
    # A drop or the File menu may open a second file while the first still loads.
    import shutil

    from ddpm_gui import training_panel

    slow, fast = tmp_path / "slow.safetensors", tmp_path / "fast.safetensors"
    shutil.copy(other_checkpoint, slow)
    shutil.copy(other_checkpoint, fast)
    real = training_panel.read_training_checkpoint
    monkeypatch.setattr(
        training_panel, "read_training_checkpoint",
        lambda path: (time.sleep(1.0) if "slow" in str(path) else None) or real(path),
    )
    assert panel.open_checkpoint(str(slow)) and panel.open_checkpoint(str(fast))
    qtbot.waitUntil(lambda: not panel._tasks, timeout=WAIT_MS)
    assert "fast.safetensors" in panel.continue_label.toolTip()


def test_a_new_run_shows_nothing_of_the_last_one(qtbot, panel, make_config):
    # The last run's previews were of another model; its time left is no one's.
    train_to_the_end(qtbot, panel, make_config(steps=12, preview_every=6))
    view = panel.view
    assert view.preview_grid.image_count() == 4 and "step 12" in view.preview_caption.text()
    assert view.eta_label.text() == "ETA –" and "images/s" in view.speed_label.text()
    answer(panel, "no")
    panel.set_config(make_config(steps=5000, preview_every=1000))
    assert panel.start()
    assert view.preview_grid.image_count() == 0 and view.preview_caption.text() == "Preview samples"
    assert view.step_label.text() == "Step –" and view.speed_label.text() == "– images/s"
    qtbot.waitUntil(lambda: panel.current_step() >= 2, timeout=WAIT_MS)
    panel.stop()
    qtbot.waitUntil(lambda: not panel.is_running(), timeout=WAIT_MS)
    assert view.eta_label.text() == "ETA –"


def test_a_stopped_run_continues_in_place(qtbot, panel, make_config, tmp_path):
    # "Continue this run" after Stop: Start trains the same model on from its last step,
    # without a file and without asking to save (nothing is let go of).
    panel.set_config(make_config(steps=5000, preview_every=0))
    panel.start()
    qtbot.waitUntil(lambda: panel.current_step() >= 3, timeout=WAIT_MS)
    panel.stop()
    qtbot.waitUntil(lambda: not panel.is_running(), timeout=WAIT_MS)
    stopped = panel.trainer
    assert panel.continue_run_button.isVisibleTo(panel)
    asked = answer(panel, "cancel")  # a question would stop the start: there must be none
    assert panel.continue_last_run()
    assert not panel.continue_run_button.isVisibleTo(panel) and panel.new_run_button.isVisibleTo(panel)
    assert not panel.form.dim.isEnabled()  # the model is the run's
    panel.form.set_steps(stopped.step + 4)
    steps = []
    panel.progressed.connect(steps.append)
    with qtbot.waitSignal(panel.runningChanged, timeout=WAIT_MS, check_params_cb=lambda running: not running):
        assert panel.start()
    assert asked == [] and steps[0] == stopped.step + 1 and panel.trainer.step == stopped.step + 4
    assert panel.trainer is not stopped and panel.has_unsaved_progress()  # none of it was saved
    path = tmp_path / "continued.safetensors"
    with qtbot.waitSignal(panel.checkpointSaved, timeout=WAIT_MS):
        panel.save_checkpoint(str(path))
    assert load_checkpoint(path).step == stopped.step + 4 and not panel.has_unsaved_progress()


def test_with_no_run_there_is_nothing_to_continue(qtbot, panel, make_config):
    assert not panel.continue_run_button.isVisibleTo(panel) and not panel.continue_last_run()


def test_a_continued_run_adds_to_its_curves_and_says_so(qtbot, panel, make_config):
    panel.set_config(make_config(steps=6, preview_every=3))
    with qtbot.waitSignal(panel.runningChanged, timeout=WAIT_MS, check_params_cb=lambda running: not running):
        panel.start()
    view = panel.view
    points = view.loss_plot.point_count()
    assert panel.continue_last_run()
    assert view.info_label.text().startswith("Continuing this run from step 6: set “Train for”")
    panel.form.set_steps(9)
    with qtbot.waitSignal(panel.runningChanged, timeout=WAIT_MS, check_params_cb=lambda running: not running):
        panel.start()
    # The same model: its first six steps stay on the curve, and its previews until new ones.
    assert view.loss_plot.point_count() == points + 3 and view.preview_grid.image_count() == 4


def test_new_run_instead_trains_for_the_runs_own_length(qtbot, panel, make_config):
    # Continuing a 6-step run set "Train for" to 12 (6 more); a new run gets the 6 it asked for.
    panel.set_config(make_config(steps=6, preview_every=0))
    with qtbot.waitSignal(panel.runningChanged, timeout=WAIT_MS, check_params_cb=lambda running: not running):
        panel.start()
    assert panel.continue_last_run() and panel.form.length.text() == "12"
    panel.new_run_button.click()
    assert panel.form.length.text() == "6" and panel.form.dim.isEnabled()
