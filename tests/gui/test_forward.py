"""The Forward process tab: x_t = √ᾱ_t·x₀ + √(1−ᾱ_t)·ε with a fixed ε, scrubbed by t."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent

from ddpm_core.config import DataConfig
from ddpm_core.diffusion import q_sample



def pixels(view) -> np.ndarray:
    """The image an ImageGrid shows, as bytes."""
    img = view.image(0)
    return np.frombuffer(img.constBits(), np.uint8, img.sizeInBytes()).copy()


@pytest.fixture
def app_state(qapp):
    from ddpm_gui.state import AppState

    return AppState()


@pytest.fixture
def messages(app_state):
    seen = {"error": [], "status": []}
    app_state.errorOccurred.connect(seen["error"].append)
    app_state.status.connect(seen["status"].append)
    return seen


@pytest.fixture
def panel(qtbot, app_state):
    from ddpm_gui.forward_panel import ForwardPanel

    p = ForwardPanel(app_state)
    qtbot.addWidget(p)
    p.resize(1000, 700)
    p.show()
    qtbot.waitUntil(lambda: p.x0 is not None, timeout=10_000)
    yield p
    p.shutdown()


def test_starts_with_a_dataset_image_and_readouts(panel, app_state):
    assert panel.x0.shape == (app_state.data.channels, app_state.data.image_size, app_state.data.image_size)
    assert panel.big_view.image_count() == 1
    assert "Built-in shapes" in panel.source_label.text()
    assert panel.readouts["alphas_cumprod"].text() != ""


def test_slider_redraws_x_t(panel, app_state):
    panel.t_slider.setValue(0)
    clean = pixels(panel.big_view)
    panel.t_slider.setValue(200)
    assert app_state.t == 200
    assert not np.array_equal(pixels(panel.big_view), clean)


def test_same_t_gives_the_same_image_because_noise_is_fixed(panel):
    panel.t_slider.setValue(50)
    first = pixels(panel.big_view)
    panel.t_slider.setValue(150)
    panel.t_slider.setValue(50)
    assert np.array_equal(pixels(panel.big_view), first)


def test_new_noise_changes_x_t_but_not_x0(panel, qtbot):
    panel.t_slider.setValue(150)
    before, x0 = pixels(panel.big_view), panel.x0.copy()
    qtbot.mouseClick(panel.noise_button, Qt.LeftButton)
    assert not np.array_equal(pixels(panel.big_view), before)
    assert np.array_equal(panel.x0, x0)


def test_x_t_is_the_engines_q_sample(panel, app_state):
    for t in (0, 123, app_state.timesteps - 1):
        expected = q_sample(
            app_state.schedule,
            torch.from_numpy(panel.x0)[None],
            torch.tensor([t]),
            noise=torch.from_numpy(panel.noise)[None],
        )[0].numpy()
        np.testing.assert_allclose(panel.x_t(t), expected, atol=1e-6)


def test_slider_spin_box_and_state_stay_in_sync(panel, app_state, qtbot):
    panel.t_spin.setValue(77)
    assert panel.t_slider.value() == 77 and app_state.t == 77
    panel.t_slider.setValue(12)
    assert panel.t_spin.value() == 12 and app_state.t == 12
    app_state.set_t(250)
    assert panel.t_slider.value() == 250 and panel.t_spin.value() == 250


def test_keyboard_scrubbing(panel, app_state, qtbot):
    T = app_state.timesteps
    panel.t_slider.setFocus()
    qtbot.keyClick(panel.t_slider, Qt.Key_End)
    assert app_state.t == T - 1
    qtbot.keyClick(panel.t_slider, Qt.Key_Home)
    assert app_state.t == 0
    qtbot.keyClick(panel.t_slider, Qt.Key_PageUp)
    assert app_state.t == T // 10
    qtbot.keyClick(panel.t_slider, Qt.Key_Right)
    assert app_state.t == T // 10 + 1


def test_schedule_and_T_controls_drive_the_shared_state(panel, app_state):
    app_state.set_t(100)
    linear = panel.readouts["alphas_cumprod"].text()
    panel.schedule_combo.setCurrentText("cosine")
    assert app_state.schedule_name == "cosine"
    assert panel.readouts["alphas_cumprod"].text() != linear
    assert float(panel.readouts["alphas_cumprod"].text()) == pytest.approx(
        float(app_state.schedule.alphas_cumprod[100]), rel=1e-4
    )
    panel.steps_spin.setValue(1000)
    assert app_state.timesteps == 1000
    assert panel.t_slider.maximum() == 999 and panel.t_spin.maximum() == 999  # indices 0…T−1
    assert panel.strip_cells[-1].caption.text() == "t = 1000"  # shown as the paper's t = 1…T


def test_state_changes_from_elsewhere_update_the_controls(panel, app_state):
    app_state.set_t(250)
    app_state.set_schedule("sigmoid", 100)  # t is clamped to the new range
    assert panel.schedule_combo.currentText() == "sigmoid"
    assert panel.steps_spin.value() == 100
    assert app_state.t == 99 and panel.t_slider.value() == 99
    assert panel.xt_title.text().startswith("x<sub>t</sub> at t = 100 ")  # the last step, t = T
    assert panel.t_spin.text() == "100"


def test_strip_spans_the_schedule_and_clicking_jumps_to_t(panel, app_state, qtbot):
    captions = [c.caption.text() for c in panel.strip_cells]
    assert captions[0] == "x<sub>0</sub>"
    # x₀ is the clean image; t counts noising steps from 1 to T, as in the paper.
    assert captions[1] == "t = 1" and captions[-1] == f"t = {app_state.timesteps}"
    cell = panel.strip_cells[3]
    qtbot.mouseClick(cell.view, Qt.LeftButton, pos=cell.view.rect().center())
    assert app_state.t == cell.t


def test_clicking_x_t_opens_a_zoom_window(panel, qtbot):
    qtbot.mouseClick(panel.big_view, Qt.LeftButton, pos=panel.big_view.rect().center())
    assert panel._zoom is not None and panel._zoom.isVisible()
    panel._zoom.close()


def test_another_sample_changes_x0(panel, qtbot):
    before = panel.x0.copy()
    qtbot.mouseClick(panel.sample_button, Qt.LeftButton)
    assert not np.array_equal(panel.x0, before)


def write_png(path, size=(40, 30)) -> str:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return str(path)


def open_and_wait(panel, qtbot, path) -> None:
    with qtbot.waitSignal(panel.imagesShown, timeout=10_000):
        assert panel.open_image(path)


def test_open_image_file(panel, app_state, messages, tmp_path, qtbot, monkeypatch):
    # The file is read on another thread: decoding a large photo held the window 1.8 s.
    import threading

    from ddpm_gui import forward_panel

    threads = []
    real = forward_panel.load_image
    monkeypatch.setattr(forward_panel, "load_image", lambda *a: threads.append(threading.current_thread()) or real(*a))
    path = write_png(tmp_path / "cat.png")
    open_and_wait(panel, qtbot, path)
    assert threads and threads[0] is not threading.main_thread()
    assert panel.x0.shape == (1, 16, 16)  # resized and centre-cropped to the training size
    assert "cat.png" in panel.source_label.text()
    assert panel.last_image_dir == str(tmp_path)
    assert messages["error"] == []


@pytest.mark.parametrize("name, content", [("broken.png", b"not an image"), ("missing.png", None)])
def test_bad_image_file_reports_an_error(panel, app_state, messages, tmp_path, qtbot, name, content):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    before = panel.x0.copy()
    with qtbot.waitSignal(app_state.errorOccurred, timeout=10_000):
        panel.open_image(str(path))
    assert len(messages["error"]) == 1 and name in messages["error"][0]
    assert np.array_equal(panel.x0, before)


def test_a_bad_file_leaves_the_opened_image_shown(panel, app_state, messages, tmp_path, qtbot):
    # Opening a second file that cannot be read keeps the first on screen; only a failed
    # re-read of the file shown (moved, or changed at new settings) goes back to the dataset.
    open_and_wait(panel, qtbot, write_png(tmp_path / "photo.png"))
    shown = panel.x0.copy()
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    with qtbot.waitSignal(app_state.errorOccurred, timeout=10_000):
        panel.open_image(str(broken))
    assert np.array_equal(panel.x0, shown) and "photo.png" in panel.source_label.text()
    # The shown file is gone, and a size change reads it again: back to the dataset images.
    (tmp_path / "photo.png").unlink()
    with qtbot.waitSignal(app_state.errorOccurred, timeout=10_000):
        app_state.set_data(DataConfig(image_size=8))
    qtbot.waitUntil(lambda: panel.x0 is not None and panel.x0.shape == (1, 8, 8), timeout=10_000)
    assert "photo.png" not in panel.source_label.text()


def test_a_bad_file_opened_during_a_size_change_still_resizes_the_shown_one(panel, app_state, tmp_path, qtbot):
    open_and_wait(panel, qtbot, write_png(tmp_path / "photo.png"))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    app_state.set_data(DataConfig(image_size=8))  # photo.png is read again at 8 px...
    panel.open_image(str(broken))  # ...but this request replaces that one, and fails
    qtbot.waitUntil(lambda: panel.x0.shape == (1, 8, 8) and "photo.png" in panel.source_label.text(), timeout=10_000)


def test_drag_and_drop_an_image(panel, tmp_path, qtbot):
    path = write_png(tmp_path / "dropped.png")
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(path)])
    event = QDropEvent(QPointF(10, 10), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    with qtbot.waitSignal(panel.imagesShown, timeout=10_000):
        panel.dropEvent(event)
    assert "dropped.png" in panel.source_label.text()


def test_data_change_reloads_at_the_new_size(panel, app_state, qtbot, tmp_path):
    app_state.set_data(DataConfig(image_size=32, channels=3))
    qtbot.waitUntil(lambda: panel.x0.shape == (3, 32, 32), timeout=10_000)
    assert panel.noise.shape == (3, 32, 32)


def test_opened_image_follows_a_size_change(panel, app_state, qtbot, tmp_path):
    open_and_wait(panel, qtbot, write_png(tmp_path / "photo.png"))
    with qtbot.waitSignal(panel.imagesShown, timeout=10_000):
        app_state.set_data(DataConfig(image_size=8))
    assert panel.x0.shape == (1, 8, 8)
    assert "photo.png" in panel.source_label.text()
    qtbot.wait(50)  # the dataset pool reloads too; it must not replace the opened file
    qtbot.waitUntil(lambda: not panel._pool_loader.is_loading(), timeout=10_000)
    assert "photo.png" in panel.source_label.text()


def test_undownloaded_dataset_shows_shapes_and_says_why(panel, app_state, messages, qtbot, monkeypatch):
    from ddpm_gui import forward_samples

    monkeypatch.setattr(forward_samples.data, "needs_download", lambda cfg: True)  # never downloads here
    app_state.set_data(DataConfig(dataset="mnist", image_size=16))
    qtbot.waitUntil(lambda: any("not downloaded" in m for m in messages["status"]), timeout=10_000)
    assert "Built-in shapes" in panel.source_label.text()


def test_folder_dataset_samples_come_from_the_folder(panel, app_state, qtbot, tmp_path):
    for i in range(3):
        write_png(tmp_path / f"img{i}.png")
    app_state.set_data(DataConfig(dataset="folder", root=str(tmp_path), image_size=16))
    qtbot.waitUntil(lambda: "Folder" in panel.source_label.text(), timeout=10_000)
    assert panel.source_label.text().endswith(".png")


def test_missing_folder_falls_back_to_shapes(panel, app_state, messages, qtbot, tmp_path):
    app_state.set_data(DataConfig(dataset="folder", root=str(tmp_path / "nope"), image_size=16))
    qtbot.waitUntil(lambda: any("does not exist" in m for m in messages["status"]), timeout=10_000)
    assert messages["error"] == []


# ---- several images at once ---------------------------------------------------------------


def test_one_image_by_default_and_sixteen_on_request(panel, qtbot):
    assert panel.image_count() == 1 and panel.count_combo.currentData() == 1
    first = panel.x0.copy()
    panel.count_combo.setCurrentIndex(panel.count_combo.findData(16))
    assert panel.image_count() == 16 and panel.big_view.image_count() == 16
    assert panel.x0_batch.shape == (16,) + first.shape
    assert np.array_equal(panel.x0, first)  # the image explained stays the first one
    assert len({panel.x0_batch[i].tobytes() for i in range(16)}) > 1  # different dataset images


def test_each_image_keeps_its_own_noise_when_the_count_changes(panel):
    panel.set_image_count(4)
    noise = panel.noise_batch.copy()
    assert not np.array_equal(noise[0], noise[1])  # one ε per image
    panel.set_image_count(16)
    assert np.array_equal(panel.noise_batch[:4], noise)  # the first four keep theirs
    panel.set_image_count(1)
    assert np.array_equal(panel.noise, noise[0])


def test_every_image_of_the_grid_is_its_own_x_t(panel, app_state):
    panel.set_image_count(9)
    t = 123
    panel.t_slider.setValue(t)
    expected = q_sample(
        app_state.schedule,
        torch.from_numpy(panel.x0_batch),
        torch.full((9,), t),
        noise=torch.from_numpy(panel.noise_batch),
    ).numpy()
    np.testing.assert_allclose(panel.x_t_batch(t), expected, atol=1e-6)
    np.testing.assert_allclose(panel.x_t(t), expected[0], atol=1e-6)


def test_an_opened_image_is_shown_alone_until_a_count_is_chosen(panel, tmp_path, qtbot):
    panel.set_image_count(4)
    open_and_wait(panel, qtbot, write_png(tmp_path / "cat.png"))
    assert panel.image_count() == 1 and "cat.png" in panel.source_label.text()
    panel.set_image_count(16)  # a dataset choice: back to the dataset
    assert panel.image_count() == 16 and "Built-in shapes" in panel.source_label.text()


def test_clicking_an_image_of_the_grid_zooms_that_image(panel, qtbot):
    panel.set_image_count(4)
    panel._zoom_xt(3)
    assert panel._zoom is not None and panel._zoom.isVisible()
    assert "image 4" in panel._zoom.findChildren(type(panel.source_label))[-1].text()
    panel._zoom.close()


def test_flips_and_the_image_limit_keep_the_image_shown(panel, app_state, qtbot):
    # They change training, not what x₀ looks like: the image stays (CIFAR-10 is not re-read).
    import dataclasses

    shown = panel.x0.copy()
    app_state.set_data(dataclasses.replace(app_state.data, flip=not app_state.data.flip))
    app_state.set_data(dataclasses.replace(app_state.data, limit=100))
    qtbot.wait(100)
    assert not panel._pool_loader.is_loading() and np.array_equal(panel.x0, shown)


def test_a_long_file_name_does_not_widen_the_window(panel, qtbot, tmp_path):
    before = panel.minimumSizeHint().width()
    path = write_png(tmp_path / ("a_photo_with_a_very_long_name_" * 6 + ".png"))
    open_and_wait(panel, qtbot, path)
    assert panel.minimumSizeHint().width() <= before
    assert Path(path).name in panel.source_label.toolTip()


def test_t_is_shown_and_typed_as_the_papers_1_to_T(panel, app_state, qtbot):
    # The engine indexes 0…T−1; the window counts t = 1…T, so x₀ is the clean image and
    # t = 1 is one step of noise (β_1 = 1e-4 in the linear schedule).
    app_state.set_t(0)
    assert panel.t_spin.text() == "1" and panel.readouts["betas"].text() == "0.0001"
    panel.t_spin.lineEdit().selectAll()
    qtbot.keyClicks(panel.t_spin, str(app_state.timesteps))
    qtbot.keyClick(panel.t_spin, Qt.Key_Return)
    assert app_state.t == app_state.timesteps - 1 and panel.t_slider.value() == app_state.t
