"""The Training tab end to end, on the real engine: a tiny U-Net on the built-in shapes.

Every wait is on a signal or a condition with a timeout; nothing asserts on timing.
"""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch
from PIL import Image

from ddpm_core.checkpoint import load_checkpoint
from ddpm_core.errors import DataError
from ddpm_core.export import trajectory_frame_indices
from ddpm_gui import workers
from ddpm_gui.training_panel import TrainingPanel
from ddpm_gui.viewer_panel import ViewerPanel

WAIT_MS = 60_000  # generous: a loaded 2-core CI machine is slow, and waits end early anyway


@pytest.fixture
def panel(qtbot, state):
    p = TrainingPanel(state)
    qtbot.addWidget(p)
    yield p
    p.shutdown(ask=False)


def wait_for_step(qtbot, panel, step: int) -> None:
    qtbot.waitUntil(lambda: panel.current_step() >= step, timeout=WAIT_MS)


def test_full_flow_train_pause_resume_stop_sample_scrub_export(qtbot, state, panel, errors, tmp_path, make_config):
    viewer = ViewerPanel(state)
    qtbot.addWidget(viewer)
    panel.set_config(make_config(steps=5000))
    assert panel.start_button.isEnabled(), panel.hint.text()

    with qtbot.waitSignal(panel.runningChanged, timeout=WAIT_MS) as started:
        assert panel.start()
    assert started.args == [True] and panel.is_running()
    wait_for_step(qtbot, panel, 3)

    # Pause: the worker stops between two steps, publishes its model, and no step follows.
    with qtbot.waitSignal(panel.pausedChanged, timeout=WAIT_MS, check_params_cb=lambda p: p):
        panel.pause()
    paused_at = panel.current_step()
    qtbot.wait(300)
    assert panel.current_step() == paused_at
    assert state.model is not None and state.model.step == paused_at
    assert panel.resume_button.isEnabled() and not panel.pause_button.isEnabled()

    panel.resume()
    wait_for_step(qtbot, panel, paused_at + 2)

    # Stop: the thread ends after the current step; the run is far from its 5000 steps.
    with qtbot.waitSignal(panel.runningChanged, timeout=WAIT_MS, check_params_cb=lambda r: r is False):
        panel.stop()
    assert not panel.is_running()
    assert panel.trainer.step < 5000
    assert panel.view.loss_plot.point_count() == panel.trainer.step
    assert state.model.step == panel.trainer.step  # the final state was published
    assert not errors

    # Sample from the published model with DDIM in a few steps.
    assert viewer.sample_button.isEnabled()
    viewer.count.setValue(4)
    viewer.sampler.setCurrentIndex(viewer.sampler.findData("ddim"))
    viewer.steps.setValue(4)
    with qtbot.waitSignal(viewer.sampled, timeout=WAIT_MS):
        assert viewer.sample()
    qtbot.waitUntil(lambda: not viewer.is_sampling(), timeout=WAIT_MS)
    assert viewer.frame_count() == 5  # 4 steps + the final sample
    assert viewer.slider.maximum() == 4

    # Scrub: each position shows that step's x_t and x̂_0.
    viewer.slider.setValue(1)
    assert "Step 2 / 4" in viewer.frame_label.text()
    assert viewer.xt_grid.image_count() == 4 and viewer.x0_grid.image_count() == 4
    viewer.slider.setValue(4)
    assert "Final sample" in viewer.frame_label.text()

    gif = tmp_path / "denoise.gif"
    with qtbot.waitSignal(viewer.exported, timeout=WAIT_MS):
        assert viewer.export_gif(str(gif))
    with Image.open(gif) as im:
        assert im.n_frames == 5
    one = tmp_path / "one.gif"
    with qtbot.waitSignal(viewer.exported, timeout=WAIT_MS):
        assert viewer.export_gif(str(one), index=2, stride=3)
    with Image.open(one) as im:
        assert im.n_frames == len(trajectory_frame_indices(5, 3))
    viewer.shutdown()
    assert not errors


def test_shutdown_during_training_stops_the_thread(qtbot, panel, make_config):
    panel.set_config(make_config(steps=5000))
    assert panel.start()
    wait_for_step(qtbot, panel, 1)
    assert panel.shutdown(ask=False)
    assert not panel.is_running()
    assert workers.live_threads() == []


def test_stop_before_the_first_step_says_so(qtbot, panel, make_config):
    # Not "stopped at step 0. Sample it on the Denoising tab": there is nothing to sample.
    panel.set_config(make_config(steps=5000))
    with qtbot.waitSignal(panel.runningChanged, timeout=WAIT_MS, check_params_cb=lambda r: r is False):
        assert panel.start()
        panel.stop()
    text = panel.view.info_label.text()
    assert "before its first step" in text or "before it began" in text, text
    assert "Sample it" not in text


def test_shutdown_while_paused_stops_the_thread(qtbot, panel, make_config):
    panel.set_config(make_config(steps=5000))
    panel.start()
    with qtbot.waitSignal(panel.pausedChanged, timeout=WAIT_MS):
        panel.pause()
    assert panel.shutdown(ask=False)
    assert workers.live_threads() == []


def test_close_asks_to_save_unsaved_progress(qtbot, panel, tmp_path, monkeypatch, make_config):
    panel.set_config(make_config(steps=5000))
    panel.start()
    wait_for_step(qtbot, panel, 2)

    monkeypatch.setattr(panel, "ask_save_before_close", lambda: "cancel")
    assert panel.shutdown(ask=True) is False
    assert panel.is_running()  # cancelled: training goes on

    path = tmp_path / "on_close.safetensors"
    monkeypatch.setattr(panel, "ask_save_before_close", lambda: "yes")
    monkeypatch.setattr(panel, "choose_save_path", lambda: str(path))
    assert panel.shutdown(ask=True) is True
    assert not panel.is_running()
    assert load_checkpoint(path).step == panel.trainer.step
    assert not panel.has_unsaved_progress()


@pytest.mark.parametrize(
    "error, expected",
    [
        (RuntimeError("boom"), "RuntimeError: boom"),
        (DataError("the images are gone: pick another folder"), "the images are gone: pick another folder"),
    ],
)
def test_worker_error_is_reported_and_the_app_goes_on(
    qtbot, panel, state, errors, monkeypatch, error, expected, make_config
):
    from ddpm_core.training import Trainer

    def broken_steps(self):
        yield from ()
        raise error

    monkeypatch.setattr(Trainer, "steps", broken_steps)
    panel.set_config(make_config())
    with qtbot.waitSignal(state.errorOccurred, timeout=WAIT_MS) as blocker:
        panel.start()
    assert blocker.args == [expected]
    qtbot.waitUntil(lambda: not panel.is_running(), timeout=WAIT_MS)
    assert panel.start_button.isEnabled()

    monkeypatch.undo()  # the same panel trains fine afterwards
    panel.set_config(make_config(steps=3))
    with qtbot.waitSignal(panel.runningChanged, timeout=WAIT_MS, check_params_cb=lambda r: r is False):
        panel.start()
    assert panel.trainer.step == 3
    assert errors == [expected]
    assert [e.message for e in workers.take_errors()] == [expected]  # provoked here: taken


def test_invalid_values_disable_start_with_a_reason(qtbot, panel, tiny_config):
    panel.set_config(tiny_config)
    form = panel.form
    assert panel.start_button.isEnabled() and panel.hint.text() == ""

    form.batch.setText("abc")
    assert not panel.start_button.isEnabled()
    assert "Batch size" in panel.hint.text() and "whole number" in panel.hint.text()
    assert "Not accepted" in form.batch.toolTip()
    assert panel.start() is False
    form.batch.setText("8")
    assert panel.start_button.isEnabled()

    form.lr.setText("5")
    assert not panel.start_button.isEnabled() and "Learning rate" in panel.hint.text()
    form.seed.setText("-1")  # two fields wrong: the first is explained, the other named
    assert panel.hint.text().startswith("Learning rate: ") and panel.hint.text().endswith("(also to fix: Seed)")
    form.seed.setText("0")
    form.lr.setText("1e-3")

    # A combination only the engine's validate() refuses: 8 px cannot be halved 4 times.
    # It is said in the form's words, not the config file's ("data.image_size=8").
    form.levels.setCurrentText("1,2,4,8,16")
    assert not panel.start_button.isEnabled()
    assert panel.hint.text().startswith("Image size 8 must be divisible by 16") and "data." not in panel.hint.text()
    form.levels.setCurrentText("1,2")
    assert panel.start_button.isEnabled()

    form.dim.setText("6")  # not a multiple of the 4 GroupNorm groups
    assert not panel.start_button.isEnabled() and "Width (dim) that is a multiple of 4" in panel.hint.text()
    form.dim.setText("8")

    form.dataset.setCurrentIndex(form.dataset.findData("folder"))
    assert not panel.start_button.isEnabled() and "Image folder" in panel.hint.text()
    form.dataset.setCurrentIndex(form.dataset.findData("shapes"))
    assert panel.start_button.isEnabled()


def test_shared_settings_follow_the_state(qtbot, panel, state, tiny_config):
    panel.set_config(tiny_config)
    assert (state.data.dataset, state.data.image_size, state.data.limit) == ("shapes", 8, 64)
    state.set_schedule("cosine", 50)
    assert panel.form.schedule.currentData() == "cosine" and panel.form.timesteps.text() == "50"
    assert panel.config().schedule.timesteps == 50
    panel.form.image_size.setText("12")
    panel.form.image_size.editingFinished.emit()
    assert state.data.image_size == 12



def test_choosing_a_known_dataset_sets_its_own_shape(qtbot, panel, state, tiny_config):
    # Fashion-MNIST comes as 1 × 28 px (the article's size), CIFAR-10 as 3 × 32 px.
    panel.set_config(tiny_config)
    form = panel.form
    for key, channels, size in (("fashion_mnist", 1, 28), ("cifar10", 3, 32), ("mnist", 1, 28)):
        form.dataset.setCurrentIndex(form.dataset.findData(key))
        assert (form.channels.currentData(), form.image_size.text()) == (channels, str(size))
        assert (state.data.dataset, state.data.channels, state.data.image_size) == (key, channels, size)
    form.image_size.setText("16")  # still the person's to change
    assert form.config().data.image_size == 16


def test_save_open_and_continue_training(qtbot, panel, state, tmp_path, make_config):
    panel.set_config(make_config(steps=12))
    with qtbot.waitSignal(panel.runningChanged, timeout=WAIT_MS, check_params_cb=lambda r: r is False):
        panel.start()
    assert panel.trainer.step == 12 and panel.has_unsaved_progress()

    path = tmp_path / "run.safetensors"
    with qtbot.waitSignal(panel.checkpointSaved, timeout=WAIT_MS):
        assert panel.save_checkpoint(str(path))
    assert load_checkpoint(path).step == 12 and not panel.has_unsaved_progress()

    other = TrainingPanel(state)
    qtbot.addWidget(other)
    with qtbot.waitSignal(other.checkpointOpened, timeout=WAIT_MS):
        assert other.open_checkpoint(str(path))
    assert not other.form.dim.isEnabled()  # the checkpoint's model is fixed
    assert other.form.length.text() == "24"  # it had finished: offer as many steps again
    other.form.length.setText("12")
    assert not other.start_button.isEnabled() and "already at step 12" in other.hint.text()
    other.form.length.setText("20")
    assert other.start_button.isEnabled()

    with qtbot.waitSignal(other.runningChanged, timeout=WAIT_MS, check_params_cb=lambda r: r is False):
        assert other.start()
    assert other.trainer.step == 20
    assert other.view.loss_plot.point_count() == 8  # steps 13..20
    assert other.form.dim.isEnabled()  # continue mode is over
    other.shutdown(ask=False)


def test_save_while_training_happens_between_steps(qtbot, panel, tmp_path, make_config):
    panel.set_config(make_config(steps=5000))
    panel.start()
    wait_for_step(qtbot, panel, 2)
    path = tmp_path / "live.safetensors"
    with qtbot.waitSignal(panel.checkpointSaved, timeout=WAIT_MS):
        assert panel.save_checkpoint(str(path))
    assert load_checkpoint(path).step >= 2
    assert panel.is_running()


def test_download_progress_reaches_the_progress_bar(qtbot, state, tmp_path, monkeypatch, make_config):
    """A dataset that needs a download says so, and the download (a local file:// mirror
    here) runs in the worker with its progress shown in the panel."""
    from ddpm_core import data

    n = 32
    images = np.zeros((n, 28, 28), dtype=np.uint8)
    images[:, 8:20, 8:20] = 255
    files = {
        "train-images-idx3-ubyte.gz": b"\x00\x00\x08\x03" + b"".join(d.to_bytes(4, "big") for d in (n, 28, 28)) + images.tobytes(),
        "train-labels-idx1-ubyte.gz": b"\x00\x00\x08\x01" + n.to_bytes(4, "big") + bytes(n),
    }
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for name, raw in files.items():
        (mirror / name).write_bytes(gzip.compress(raw))
    spec = data.RemoteDataset(
        key="mnist",
        title="MNIST",
        files=tuple(data.RemoteFile(name, None, (f"file://{mirror / name}",)) for name in files),
        class_names=tuple(str(i) for i in range(10)),
    )
    monkeypatch.setitem(data.SOURCE_OVERRIDES, "mnist", spec)
    monkeypatch.setenv("DDPM_STUDIO_DATA", str(tmp_path / "cache"))

    messages = []
    original = TrainingPanel._on_loading

    def spy(self, done, total, message):
        messages.append(message)
        original(self, done, total, message)

    monkeypatch.setattr(TrainingPanel, "_on_loading", spy)
    panel = TrainingPanel(state)
    qtbot.addWidget(panel)
    cfg = make_config(steps=2, preview_every=0)
    cfg.data.dataset = "mnist"
    panel.set_config(cfg)
    assert "will be downloaded" in panel.form.download_note.text()

    with qtbot.waitSignal(panel.runningChanged, timeout=WAIT_MS, check_params_cb=lambda r: r is False):
        panel.start()
    assert panel.trainer is not None and panel.trainer.step == 2
    assert any("download" in m for m in messages)
    panel.form._update_data_widgets()
    assert "already downloaded" in panel.form.download_note.text()
    panel.shutdown(ask=False)


def test_loss_plot_with_200k_points_still_updates(qtbot):
    from ddpm_gui.loss_plot import LossPlot

    plot = LossPlot()
    qtbot.addWidget(plot)
    rng = np.random.default_rng(0)
    for start in range(0, 200_000, 5_000):
        steps = np.arange(start + 1, start + 5_001)
        plot.append(steps, 0.05 + 0.01 * rng.random(5_000))
    plot.flush()
    assert plot.point_count() == 200_000
    x, y = plot.raw_curve.xData, plot.raw_curve.yData
    assert len(x) == 200_000 and x[-1] == 200_000
    assert 0.05 <= plot.smoothed() <= 0.06

    plot.set_log(True)
    plot.append([200_001], [0.5])
    plot.flush()
    assert plot.raw_curve.xData[-1] == 200_001 and plot.point_count() == 200_001
    assert "200,001" in plot.latest.text()
    plot.clear()
    plot.flush()
    assert plot.point_count() == 0


def test_loss_by_timestep_bins_per_sample_losses():
    from ddpm_gui.loss_by_t import TimestepLossStats

    stats = TimestepLossStats(timesteps=20, max_bins=10)
    stats.add(np.array([0, 1, 19]), np.array([1.0, 3.0, 0.5]))
    means = stats.means()
    assert means[0] == pytest.approx(2.0)  # t = 0 and 1 share the first bin
    assert means[-1] == pytest.approx(0.5)
    assert np.isnan(means[5])


def test_a_compiled_run_says_it_is_compiling_then_counts_steps(qtbot, panel, make_config, monkeypatch):
    from ddpm_core import compiled

    monkeypatch.setattr(compiled, "PAYS_OFF_ON", ("cpu", "cuda"))  # CUDA only, but no GPU here
    monkeypatch.setattr(compiled, "BACKEND", "aot_eager")  # traces like Inductor, builds nothing
    cfg = make_config(steps=3)
    cfg.train.compile = True
    panel.set_config(cfg)
    assert panel.form.compile.isChecked() and panel.config().train.compile
    shown, set_format = [], panel.view.progress.setFormat

    def record(text):
        shown.append(text)
        set_format(text)

    monkeypatch.setattr(panel.view.progress, "setFormat", record)
    try:
        with qtbot.waitSignal(panel.runningChanged, timeout=WAIT_MS, check_params_cb=lambda r: r is False):
            assert panel.start()
    finally:
        torch._dynamo.reset()  # compiled code of this test never serves another
    # Once the trainer exists, the bar says why the first step takes long, then counts steps.
    compiling = shown.index("compiling the network (about a minute)…")
    assert shown[compiling + 1 :] and set(shown[compiling + 1 :]) == {"%v / %m steps"}
    assert panel.trainer.step == 3 and panel.view.progress.format() == "%v / %m steps"
    panel.form.compile.setChecked(False)
    assert panel.config().train.compile is False


def test_closing_during_a_long_step_hides_the_window_instead_of_freezing_it(qtbot, panel, make_config, monkeypatch):
    # The first step of a compiled run takes a minute; here every step takes 1.5 s.
    import threading
    import time

    from ddpm_core.training import Trainer

    in_step, train_step = threading.Event(), Trainer._train_step

    def slow_step(self):
        in_step.set()
        time.sleep(1.5)
        return train_step(self)

    monkeypatch.setattr(Trainer, "_train_step", slow_step)
    panel.set_config(make_config(steps=5000))
    panel.show()
    panel.start()
    qtbot.waitUntil(in_step.is_set, timeout=WAIT_MS)
    assert panel.shutdown(ask=False)  # returns once the step has ended and the thread with it
    assert not panel.isVisible() and not panel.is_running()


@pytest.mark.filterwarnings("ignore:torch.compile could not compile")  # expected: the window says it
def test_a_compile_that_fails_is_reported_in_the_window(qtbot, panel, make_config, monkeypatch, state):
    from ddpm_core import compiled

    def broken(graph, inputs):
        raise RuntimeError("Failed to find C compiler. Please specify via CC environment variable.")

    monkeypatch.setattr(compiled, "PAYS_OFF_ON", ("cpu", "cuda"))  # CUDA only, but no GPU here
    monkeypatch.setattr(compiled, "BACKEND", broken)
    cfg = make_config(steps=3)
    cfg.train.compile = True
    panel.set_config(cfg)
    said = []
    state.status.connect(said.append)
    try:
        with qtbot.waitSignal(panel.runningChanged, timeout=WAIT_MS, check_params_cb=lambda r: r is False):
            assert panel.start()
    finally:
        torch._dynamo.reset()
    assert panel.trainer.step == 3  # trained on without it
    assert any("could not compile the network" in s and "C compiler" in s for s in said)
