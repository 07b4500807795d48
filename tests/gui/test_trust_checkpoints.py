"""Opening a file that is not a good checkpoint: a one-line message naming the file and
the problem, no traceback, no hang, and the app goes on (trains and samples afterwards).

Every way in is covered: the Training tab's "Open checkpoint…" (to continue training),
the Denoising tab's (to sample from), the File menu through the real file dialog call,
and a file dropped on either tab.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QFileDialog

from ddpm_gui import workers
from ddpm_gui.main_window import DENOISING, FORWARD, TRAINING
from ddpm_gui.training_panel import TrainingPanel
from ddpm_gui.viewer_panel import ViewerPanel

WAIT_MS = 60_000


@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory, make_config) -> str:
    from ddpm_core.training import Trainer

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trainer = Trainer(make_config(steps=3, preview_every=0))
        for _ in trainer.steps():
            pass
        return str(trainer.save(tmp_path_factory.mktemp("good") / "good.safetensors"))
    finally:
        torch.set_num_threads(threads)


def _png() -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(out, format="PNG")
    return out.getvalue()


def _corrupt_header(raw: bytes) -> bytes:
    # safetensors: 8-byte header length, then JSON; break the JSON, keep the length.
    return raw[:8] + b"{" * 16 + raw[24:]


def _unrelated_torch_file() -> bytes:
    out = io.BytesIO()
    torch.save({"weight": torch.zeros(3, 3), "bias": torch.zeros(3)}, out)
    return out.getvalue()


def _foreign_safetensors() -> bytes:
    import safetensors.torch

    return safetensors.torch.save({"w": torch.zeros(2)})


# name: bytes made from the good checkpoint's bytes
BAD_FILES = {
    "empty.safetensors": lambda raw: b"",
    "truncated.safetensors": lambda raw: raw[: len(raw) // 2],
    "corrupt_header.safetensors": _corrupt_header,
    "random_bytes.safetensors": lambda raw: np.random.default_rng(0).bytes(4096),
    "picture.png": lambda raw: _png(),
    "notes.txt": lambda raw: b"these are not weights\n",
    "other_model.pt": lambda raw: _unrelated_torch_file(),
    "foreign.safetensors": lambda raw: _foreign_safetensors(),
}


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, good_checkpoint) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("bad")
    raw = open(good_checkpoint, "rb").read()
    paths = {}
    for name, make in BAD_FILES.items():
        path = folder / name
        path.write_bytes(make(raw))
        paths[name] = str(path)
    return paths


def expect_one_line_naming(messages: list[str], name: str) -> str:
    assert len(messages) == 1, messages
    message = messages[0]
    assert "\n" not in message and name in message, message
    assert "Traceback" not in message and len(message) < 400, message
    return message


def expect_no_bug(capfd) -> None:
    """The failure was a user error (DDPMError), not a crash: nothing printed, nothing left over."""
    taken = workers.take_errors()
    assert taken and not any(e.is_bug for e in taken), taken
    assert "Traceback" not in capfd.readouterr().err


def _drop_event(path: str) -> tuple[QDropEvent, QMimeData]:
    """The event and its data: the event does not own the data, so the caller keeps both."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(path)])
    return QDropEvent(QPointF(10, 10), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier), mime


def drop(widget, path: str) -> None:
    event, _mime = _drop_event(path)
    widget.dragEnterEvent(event)
    assert event.isAccepted()
    widget.dropEvent(event)


def drop_is_taken(widget, path: str) -> bool:
    event, _mime = _drop_event(path)
    event.ignore()
    widget.dragEnterEvent(event)
    return event.isAccepted()


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_training_tab_reports_a_bad_file_and_trains_after(qtbot, state, errors, bad_files, name, make_config, capfd):
    panel = TrainingPanel(state)
    qtbot.addWidget(panel)
    panel.set_config(make_config(steps=2, preview_every=0))
    with qtbot.waitSignal(state.errorOccurred, timeout=WAIT_MS):
        assert panel.open_checkpoint(bad_files[name])
    expect_one_line_naming(errors, name)
    expect_no_bug(capfd)
    qtbot.waitUntil(lambda: panel.open_button.isEnabled(), timeout=WAIT_MS)  # ready for another try
    assert not panel.continue_label.isVisible() and panel.form.dim.isEnabled()  # nothing half-opened

    with qtbot.waitSignal(panel.runningChanged, timeout=WAIT_MS, check_params_cb=lambda r: r is False):
        assert panel.start()
    assert panel.trainer.step == 2 and len(errors) == 1


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_denoising_tab_reports_a_bad_file_and_samples_after(
    qtbot, state, errors, bad_files, good_checkpoint, name, capfd
):
    viewer = ViewerPanel(state)
    qtbot.addWidget(viewer)
    with qtbot.waitSignal(state.errorOccurred, timeout=WAIT_MS):
        assert viewer.open_checkpoint(bad_files[name])
    expect_one_line_naming(errors, name)
    expect_no_bug(capfd)
    assert viewer.sample() is False  # still no model, and no half-loaded one

    with qtbot.waitSignal(viewer.sourceChanged, timeout=WAIT_MS):
        viewer.open_checkpoint(good_checkpoint)
    viewer.count.setValue(2)
    viewer.sampler.setCurrentIndex(viewer.sampler.findData("ddim"))
    viewer.steps.setValue(2)
    with qtbot.waitSignal(viewer.sampled, timeout=WAIT_MS):
        assert viewer.sample()
    qtbot.waitUntil(lambda: not viewer.is_sampling(), timeout=WAIT_MS)
    assert len(errors) == 1


def test_a_bad_checkpoint_replaces_nothing(qtbot, state, errors, bad_files, good_checkpoint):
    """A bad file opened after a good one leaves the good one in use, in both tabs."""
    viewer = ViewerPanel(state)
    panel = TrainingPanel(state)
    for w in (viewer, panel):
        qtbot.addWidget(w)
    with qtbot.waitSignal(viewer.sourceChanged, timeout=WAIT_MS):
        viewer.open_checkpoint(good_checkpoint)
    with qtbot.waitSignal(panel.checkpointOpened, timeout=WAIT_MS):
        panel.open_checkpoint(good_checkpoint)
    with qtbot.waitSignal(state.errorOccurred, timeout=WAIT_MS):
        viewer.open_checkpoint(bad_files["truncated.safetensors"])
    with qtbot.waitSignal(state.errorOccurred, timeout=WAIT_MS):
        panel.open_checkpoint(bad_files["truncated.safetensors"])
    assert "good.safetensors" in viewer.source_label.text() and viewer.sample_button.isEnabled()
    assert "good.safetensors" in panel.continue_label.text() and not panel.form.dim.isEnabled()
    assert len(errors) == 2
    workers.take_errors()


def test_menu_dialog_and_drop_in_the_window(qtbot, main_window, bad_files, monkeypatch, capfd):
    """Through the window: File → Open checkpoint… on each tab, and drops; then it trains."""
    window = main_window
    seen: list[str] = []
    window.state.errorOccurred.connect(seen.append)
    chosen = []
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (chosen[-1], ""))

    ways = [
        ("menu, Training tab", TRAINING, "truncated.safetensors", lambda: window.actions["open_checkpoint"].trigger()),
        ("menu, Denoising tab", DENOISING, "picture.png", lambda: window.actions["open_checkpoint"].trigger()),
        ("menu, Forward tab", FORWARD, "empty.safetensors", lambda: window.actions["open_checkpoint"].trigger()),
        ("drop on Training", TRAINING, "random_bytes.safetensors", lambda: drop(window.training, chosen[-1])),
        ("drop on Denoising", DENOISING, "other_model.pt", lambda: drop(window.viewer, chosen[-1])),
    ]
    for way, tab, name, act in ways:
        window.tabs.setCurrentIndex(tab)
        chosen.append(bad_files[name])
        with qtbot.waitSignal(window.state.errorOccurred, timeout=WAIT_MS):
            act()
        assert name in seen[-1] and "\n" not in seen[-1], way
        assert name in window.statusBar().currentMessage(), way
        assert window._error_box.isVisible() and window._error_box.text() == seen[-1], way
        window._error_box.close()
    assert len(seen) == len(ways)
    expect_no_bug(capfd)
    # A file of neither kind is not taken by any tab, nor by the window: nothing to report.
    for widget in (window.viewer, window.training, window.forward, window):
        assert not drop_is_taken(widget, bad_files["notes.txt"])
    assert len(seen) == len(ways)

    # Still usable: Start trains.
    window.training.set_config(window.training.config())
    window.training.form.set_steps(2)
    window.training.form.preview_every.setText("0")
    with qtbot.waitSignal(window.training.runningChanged, timeout=WAIT_MS, check_params_cb=lambda r: r is False):
        window.actions["start"].trigger()
    assert window.training.trainer.step == 2
