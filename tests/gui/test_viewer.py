"""The Denoising tab on its own, sampling from a checkpoint saved by a tiny real Trainer."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import QDialog

from ddpm_core.export import trajectory_frame_indices
from ddpm_gui.image_view import ZoomDialog
from ddpm_gui.viewer_panel import ViewerPanel

WAIT_MS = 60_000


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, make_config):
    import torch

    from ddpm_core.training import Trainer

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trainer = Trainer(make_config(steps=10, preview_every=0))
        for _ in trainer.steps():
            pass
        return str(trainer.save(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"))
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def viewer(qtbot, state, checkpoint):
    v = ViewerPanel(state)
    qtbot.addWidget(v)
    v.resize(900, 600)
    with qtbot.waitSignal(v.sourceChanged, timeout=WAIT_MS):
        assert v.open_checkpoint(checkpoint)
    yield v
    v.shutdown()


def sample(qtbot, viewer, **settings) -> np.ndarray:
    for name, value in settings.items():
        widget = getattr(viewer, name)
        if name == "sampler":
            widget.setCurrentIndex(widget.findData(value))
        else:
            widget.setValue(value)
    with qtbot.waitSignal(viewer.samplingChanged, timeout=WAIT_MS, check_params_cb=lambda r: r is False):
        assert viewer.sample()
    assert viewer.trajectory.complete
    return viewer.trajectory.final().copy()


def test_opened_checkpoint_is_the_source(viewer):
    assert "tiny.safetensors" in viewer.source_label.text() and "step 10" in viewer.source_label.text()
    assert viewer.sample_button.isEnabled()
    assert viewer.steps.maximum() == 20  # DDIM cannot take more steps than T


def test_ddpm_sampling_keeps_every_step_and_scrubs(qtbot, viewer, errors):
    final = sample(qtbot, viewer, count=4, sampler="ddpm", seed=3)
    traj = viewer.trajectory
    assert viewer.frame_count() == 21  # T = 20 steps, then the final sample
    assert traj.x_t.shape == (21, 4, 8, 8, 1) and traj.x_t.dtype == np.uint8
    assert list(traj.t[:20]) == list(range(19, -1, -1)) and traj.t[20] == -1
    assert np.all(np.diff(traj.noise[:20]) < 0)  # √(1−ᾱ_t) falls as t goes to 0
    assert final.shape == (4, 8, 8, 1)

    viewer.slider.setValue(0)
    assert "Step 1 / 20" in viewer.frame_label.text() and "t = 20" in viewer.frame_label.text()  # t = T
    assert f"{traj.noise[0]:.3f}" in viewer.frame_label.text()
    viewer.slider.setValue(20)
    assert "Final sample" in viewer.frame_label.text()
    assert not errors


def test_same_seed_same_images(qtbot, viewer):
    a = sample(qtbot, viewer, count=3, sampler="ddim", steps=5, seed=7)
    b = sample(qtbot, viewer, count=3, sampler="ddim", steps=5, seed=7)
    c = sample(qtbot, viewer, count=3, sampler="ddim", steps=5, seed=8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert viewer.frame_count() == 6


def test_ddim_with_eta_is_seeded_too(qtbot, viewer):
    a = sample(qtbot, viewer, count=2, sampler="ddim", steps=4, eta=1.0, seed=1)
    b = sample(qtbot, viewer, count=2, sampler="ddim", steps=4, eta=1.0, seed=1)
    np.testing.assert_array_equal(a, b)


def test_play_runs_to_the_end_and_stops(qtbot, viewer):
    sample(qtbot, viewer, count=2, sampler="ddim", steps=4)
    viewer.speed.setValue(60)
    viewer.slider.setValue(0)
    viewer.play()
    assert viewer.is_playing() and viewer.play_button.text() == "Pause"
    qtbot.waitUntil(lambda: not viewer.is_playing(), timeout=WAIT_MS)
    assert viewer.slider.value() == 4
    viewer.play()  # at the end: starts again from the first frame
    assert viewer.slider.value() <= 1
    viewer.toggle_play()
    assert not viewer.is_playing()


def test_click_enlarges_an_image(qtbot, viewer):
    sample(qtbot, viewer, count=4, sampler="ddim", steps=3)
    viewer.show()
    qtbot.waitExposed(viewer)
    grid = viewer.x0_grid
    grid.grab()  # paints, which lays out the 2×2 cells
    # The middle of the top-right quarter is inside image 2 of a 2×2 grid.
    qtbot.mouseClick(grid, Qt.LeftButton, pos=QPoint(grid.width() * 3 // 4, grid.height() // 4))
    dialogs = [w for w in viewer.findChildren(ZoomDialog) if w.isVisible()]
    assert len(dialogs) == 1 and "image 2" in dialogs[0].windowTitle()
    dialogs[0].close()


def test_export_png_and_gif(qtbot, viewer, tmp_path):
    sample(qtbot, viewer, count=4, sampler="ddpm")
    png = tmp_path / "samples.png"
    with qtbot.waitSignal(viewer.exported, timeout=WAIT_MS):
        assert viewer.export_png(str(png))
    with Image.open(png) as im:
        assert im.mode == "L" and im.width > 8

    gif = tmp_path / "one.gif"
    with qtbot.waitSignal(viewer.exported, timeout=WAIT_MS):
        assert viewer.export_gif(str(gif), index=1, stride=3, duration_ms=60, loop=False)
    with Image.open(gif) as im:
        assert im.n_frames == len(trajectory_frame_indices(21, 3))
        assert "loop" not in im.info  # plays once

    x0_gif = tmp_path / "x0.gif"
    with qtbot.waitSignal(viewer.exported, timeout=WAIT_MS):
        assert viewer.export_gif(str(x0_gif), frames="x0")
    with Image.open(x0_gif) as im:
        assert im.n_frames == 21 and im.info.get("loop") == 0


def test_gif_options_dialog_drives_the_export(qtbot, viewer, tmp_path, monkeypatch):
    from ddpm_gui import viewer_panel
    from ddpm_gui.gif_dialog import GifOptions

    sample(qtbot, viewer, count=2, sampler="ddim", steps=6)
    monkeypatch.setattr(viewer_panel.GifOptionsDialog, "exec", lambda self: QDialog.Accepted)
    monkeypatch.setattr(viewer_panel.GifOptionsDialog, "options", lambda self: GifOptions(index=0, stride=2))
    path = tmp_path / "chosen.gif"
    monkeypatch.setattr(viewer, "_ask_path", lambda *a: str(path))
    with qtbot.waitSignal(viewer.exported, timeout=WAIT_MS):
        assert viewer.export_gif()
    with Image.open(path) as im:
        assert im.n_frames == len(trajectory_frame_indices(7, 2))


def test_export_before_sampling_does_nothing(viewer, tmp_path):
    assert viewer.export_gif(str(tmp_path / "x.gif")) is False
    assert viewer.export_png(str(tmp_path / "x.png")) is False
    assert not (tmp_path / "x.gif").exists()


def test_stop_ends_sampling(qtbot, viewer):
    viewer.count.setValue(2)
    viewer.sampler.setCurrentIndex(viewer.sampler.findData("ddpm"))
    with qtbot.waitSignal(viewer.samplingChanged, timeout=WAIT_MS, check_params_cb=lambda r: r is False):
        viewer.sample()
        viewer.stop()
    assert not viewer.is_sampling() and viewer.sample_button.isEnabled()


def test_a_bad_checkpoint_is_reported_in_one_line(qtbot, state, errors, tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("not a checkpoint")
    v = ViewerPanel(state)
    qtbot.addWidget(v)
    with qtbot.waitSignal(state.errorOccurred, timeout=WAIT_MS):
        v.open_checkpoint(str(bad))
    assert len(errors) == 1 and "\n" not in errors[0] and "notes.txt" in errors[0]
    assert v.sample() is False  # still no model
    v.shutdown()


def test_follows_the_training_model_unless_a_checkpoint_was_chosen(qtbot, state, checkpoint):
    from ddpm_core.model_io import load_for_sampling
    from ddpm_gui.state import ModelSnapshot

    loaded = load_for_sampling(checkpoint, device="cpu")
    snap = ModelSnapshot(loaded.model, loaded.schedule, loaded.config, "training run, step 10", 10)
    v = ViewerPanel(state)
    qtbot.addWidget(v)
    assert not v.sample_button.isEnabled()
    state.set_model(snap)
    assert "training run" in v.source_label.text() and v.sample_button.isEnabled()

    with qtbot.waitSignal(v.sourceChanged, timeout=WAIT_MS):
        v.open_checkpoint(checkpoint)
    state.set_model(ModelSnapshot(loaded.model, loaded.schedule, loaded.config, "training run, step 11", 11))
    assert "tiny.safetensors" in v.source_label.text()  # the chosen checkpoint stays
    assert v.use_training_button.isEnabled()
    v.use_training_model()
    assert "step 11" in v.source_label.text()
    v.shutdown()


@pytest.mark.parametrize("precision", ["fp32", "bf16", "auto"])
def test_sampling_uses_the_runs_precision(qtbot, viewer, monkeypatch, precision):
    """The Denoising tab samples in the precision the model was trained with (train.precision)."""
    from ddpm_gui import sampling_worker

    asked = []
    real = sampling_worker.sample_loop

    def spy(*args, **kwargs):
        asked.append(kwargs.get("precision"))
        return real(*args, **kwargs)

    monkeypatch.setattr(sampling_worker, "sample_loop", spy)
    viewer._source.config.train.precision = precision
    sample(qtbot, viewer, count=2, sampler="ddim", steps=2)
    assert asked == [precision]


def _sample_and_wait(qtbot, viewer) -> None:
    with qtbot.waitSignal(viewer.samplingChanged, timeout=WAIT_MS, check_params_cb=lambda r: r is False):
        assert viewer.sample()


def test_a_run_that_fails_after_some_frames_says_failed(qtbot, viewer, monkeypatch, errors):
    import ddpm_gui.sampling_worker as sampling_worker
    from ddpm_core.errors import DDPMError

    real = sampling_worker.sample_loop

    def fails_at_step_6(*args, **kwargs):
        for i, step in enumerate(real(*args, **kwargs)):
            if i == 5:
                raise DDPMError("the model produced NaN at step 6")
            yield step

    monkeypatch.setattr(sampling_worker, "sample_loop", fails_at_step_6)
    _sample_and_wait(qtbot, viewer)
    assert len(errors) == 1 and viewer.frame_label.text().endswith(" · failed")


def test_a_new_run_without_a_frame_gives_back_the_last_run(qtbot, viewer, monkeypatch, errors):
    # A new run that fails or is stopped before its first frame leaves the last run on
    # screen, scrubbable and exportable, and says so.
    import ddpm_gui.sampling_worker as sampling_worker
    from ddpm_core.errors import DDPMError

    last = sample(qtbot, viewer)
    frames = viewer.frame_count()

    def fails_at_once(*args, **kwargs):
        raise DDPMError("cannot sample: a broken model")
        yield

    monkeypatch.setattr(sampling_worker, "sample_loop", fails_at_once)
    _sample_and_wait(qtbot, viewer)
    assert errors and viewer.frame_count() == frames and np.array_equal(viewer.trajectory.final(), last)
    assert viewer.slider.maximum() == frames - 1 and viewer.gif_button.isEnabled()
    assert viewer.frame_label.text().startswith("Sampling failed: showing the previous run again.")
    viewer.show_frame(3)
    assert viewer.slider.value() == 3 and "Step 4 / " in viewer.frame_label.text()


def test_the_checkpoint_chosen_last_is_the_one_used(qtbot, viewer, checkpoint, tmp_path, monkeypatch):
    # The Open button waits for a load, but a drop or the File menu may start another:
    # the file chosen last wins, even when the first one finishes later.
    import shutil
    import time

    import ddpm_gui.viewer_panel as viewer_panel

    slow, fast = tmp_path / "slow.safetensors", tmp_path / "fast.safetensors"
    shutil.copy(checkpoint, slow)
    shutil.copy(checkpoint, fast)
    real = viewer_panel.load_for_sampling
    monkeypatch.setattr(
        viewer_panel, "load_for_sampling", lambda path: (time.sleep(1.0) if "slow" in path else None) or real(path)
    )
    viewer.open_checkpoint(str(slow))
    viewer.open_checkpoint(str(fast))
    qtbot.waitUntil(lambda: not viewer._tasks, timeout=WAIT_MS)
    assert "fast.safetensors" in viewer.source_label.text()


def test_frames_that_would_not_fit_in_memory_are_refused_before_sampling(viewer, monkeypatch, errors):
    # Every step of every image is kept: 64 images at 256 px RGB over 1,000 DDPM steps would
    # be 25 GB. Here 16 images of 8×8 over 20 steps are 42 KB; with 58.6 KB free, more than half.
    from ddpm_core import memory

    monkeypatch.setattr(memory, "available_bytes", lambda: 60_000)
    viewer.sampler.setCurrentIndex(viewer.sampler.findData("ddpm"))
    viewer.count.setValue(16)
    assert not viewer.sample() and not viewer.is_sampling()
    assert len(errors) == 1 and "take 42.0 KB of memory" in errors[0] and "sample fewer images" in errors[0]
    monkeypatch.setattr(memory, "available_bytes", lambda: 10**9)
    assert viewer.sample()
    viewer.stop()


def test_images_from_an_older_model_say_which_model_made_them(qtbot, state, checkpoint):
    # The viewer follows training: when a newer model arrives, the images shown are still
    # the older one's, and the header says so until Sample is pressed again.
    from ddpm_core.model_io import load_for_sampling
    from ddpm_gui.state import ModelSnapshot

    loaded = load_for_sampling(checkpoint)

    def snapshot(step):
        return ModelSnapshot(model=loaded.model, schedule=loaded.schedule, config=loaded.config,
                             source=f"training run, step {step}", step=step)

    v = ViewerPanel(state)
    qtbot.addWidget(v)
    state.set_model(snapshot(500))
    sample(qtbot, v)
    assert "The images below are from" not in v.source_label.text()
    state.set_model(snapshot(750))
    text = v.source_label.text()
    assert "<b>training run, step 750</b>" in text and "The images below are from <b>training run, step 500</b>" in text
    sample(qtbot, v)
    assert "The images below are from" not in v.source_label.text()
    v.shutdown()
