"""The main window: tabs, menus and shortcuts, messages, settings, and closing."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QSettings

from ddpm_gui.main_window import DENOISING, FORWARD, SCHEDULES, TAB_TITLES, TRAINING, MainWindow


SHORTCUTS = {
    "open_image": "Ctrl+O",
    "open_checkpoint": "Ctrl+Shift+O",
    "save_checkpoint": "Ctrl+S",
    "export_gif": "Ctrl+E",
    "export_png": "Ctrl+Shift+E",
    "quit": "Ctrl+Q",
    "start": "F5",
    "pause": "F6",
    "resume": "F7",
    "stop": "Shift+F5",
    "how_to_start": "F1",
    "tab_0": "Ctrl+1",
    "tab_1": "Ctrl+2",
    "tab_2": "Ctrl+3",
    "tab_3": "Ctrl+4",
}


@pytest.fixture
def settings_file(tmp_path):
    """Settings in tmp_path only: also any QSettings() made with the default constructor."""
    QSettings.setDefaultFormat(QSettings.IniFormat)
    for scope in (QSettings.UserScope, QSettings.SystemScope):
        QSettings.setPath(QSettings.IniFormat, scope, str(tmp_path / "qsettings"))
    return str(tmp_path / "studio.ini")


def open_window(qtbot, settings_file) -> MainWindow:
    from ddpm_gui.state import AppState

    window = MainWindow(AppState(), settings=QSettings(settings_file, QSettings.IniFormat))
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window.forward.x0 is not None, timeout=10_000)
    return window


@pytest.fixture
def window(qtbot, settings_file):
    w = open_window(qtbot, settings_file)
    yield w
    w.close()


def test_four_tabs_starting_on_the_forward_process(window):
    assert [window.tabs.tabText(i) for i in range(window.tabs.count())] == list(TAB_TITLES)
    assert window.tabs.currentIndex() == FORWARD
    assert window.tabs.widget(FORWARD).isAncestorOf(window.forward)
    assert window.tabs.widget(SCHEDULES).isAncestorOf(window.schedules)
    assert window.forward.t_slider.hasFocus() or not window.isActiveWindow()


def test_training_and_denoising_tabs_hold_the_real_panels(window):
    from ddpm_gui.training_panel import TrainingPanel
    from ddpm_gui.viewer_panel import ViewerPanel

    assert isinstance(window.training, TrainingPanel)
    assert isinstance(window.viewer, ViewerPanel)
    assert window.tabs.widget(TRAINING).isAncestorOf(window.training)
    assert window.tabs.widget(DENOISING).isAncestorOf(window.viewer)


def test_menus_and_shortcuts(window):
    menus = [a.text().replace("&", "") for a in window.menuBar().actions()]
    assert menus == ["File", "Training", "View", "Help"]
    in_menus = {a for m in window.menuBar().actions() for a in m.menu().actions()}
    for name, keys in SHORTCUTS.items():
        action = window.actions[name]
        assert action.shortcut().toString() == keys, name
        assert action in in_menus, name
    assert window.actions["about"] in in_menus


def test_view_shortcuts_switch_tabs(window):
    for i in (3, 1, 2, 0):
        window.actions[f"tab_{i}"].trigger()
        assert window.tabs.currentIndex() == i


def test_training_actions_follow_the_training_state(window):
    assert window.actions["start"].isEnabled()
    assert not any(window.actions[n].isEnabled() for n in ("pause", "resume", "stop"))


def test_about_names_the_papers(window):
    window.actions["about"].trigger()
    box = window._about_box
    assert box.isVisible()
    text = box.text()
    for needle in ("Ho", "Denoising Diffusion Probabilistic Models", "2020", "Song",
                   "Denoising Diffusion Implicit Models", "DDIM", "The Annotated Diffusion Model",
                   "Niels Rogge", "Kashif Rasul"):
        assert needle in text
    box.close()


def test_how_to_start(window):
    window.actions["how_to_start"].trigger()
    assert window._help_box.isVisible()
    assert "Start" in window._help_box.text() and "F5" in window._help_box.text()
    window._help_box.close()


def test_status_and_errors_reach_the_status_bar(window):
    window.state.status.emit("hello")
    assert window.statusBar().currentMessage() == "hello"
    window.state.errorOccurred.emit("the dataset folder is gone")
    window.state.errorOccurred.emit("a second problem")
    assert "a second problem" in window.statusBar().currentMessage()
    box = window._error_box
    assert box.isVisible() and box.text() == "a second problem"  # one box, the latest message
    box.close()


def test_menu_items_reach_the_panels(window, monkeypatch):
    calls = []
    # A menu item asks for the file: no path is passed on.
    monkeypatch.setattr(window.forward, "open_image", lambda path: calls.append(("open_image", path)))
    monkeypatch.setattr(window.viewer, "open_checkpoint", lambda path: calls.append(("viewer.open", path)))
    monkeypatch.setattr(window.training, "open_checkpoint", lambda path: calls.append(("training.open", path)))
    monkeypatch.setattr(window.training, "save_checkpoint", lambda: calls.append("save"))
    monkeypatch.setattr(window.viewer, "export_gif", lambda: calls.append("gif"))
    monkeypatch.setattr(window.viewer, "export_png", lambda: calls.append("png"))
    monkeypatch.setattr(window.training, "start", lambda: calls.append("start"))

    for name in ("save_checkpoint", "export_gif", "export_png"):  # offered once there is something to act on
        window.actions[name].setEnabled(True)
    window.actions["open_image"].trigger()
    assert window.tabs.currentIndex() == FORWARD
    window.actions["open_checkpoint"].trigger()  # from the forward tab: to sample from
    assert window.tabs.currentIndex() == DENOISING
    window.tabs.setCurrentIndex(TRAINING)
    window.actions["open_checkpoint"].trigger()  # from the training tab: to continue training
    window.actions["save_checkpoint"].trigger()
    window.actions["export_gif"].trigger()
    window.actions["export_png"].trigger()
    window.tabs.setCurrentIndex(FORWARD)
    window.actions["start"].trigger()
    assert window.tabs.currentIndex() == TRAINING
    assert calls == [("open_image", None), ("viewer.open", None), ("training.open", None), "save", "gif", "png", "start"]


def test_device_is_shown(window):
    assert window.device_label.text()


def test_close_asks_training_and_can_be_cancelled(window, monkeypatch):
    asked = []
    monkeypatch.setattr(window.training, "shutdown", lambda ask=True: asked.append(ask) or False)
    assert window.close() is False
    assert window.isVisible() and asked == [True]
    viewer_closed = []
    monkeypatch.setattr(window.training, "shutdown", lambda ask=True: True)
    monkeypatch.setattr(window.viewer, "shutdown", lambda: viewer_closed.append(True))
    assert window.close() is True
    assert viewer_closed == [True]


def test_settings_are_restored(qtbot, settings_file):
    first = open_window(qtbot, settings_file)
    first.state.set_schedule("cosine", 500)
    first.tabs.setCurrentIndex(SCHEDULES)
    first.resize(first.width(), 640)  # the offscreen screen is narrower than the window can be
    first.forward.last_image_dir = "/some/where"
    assert first.close()

    second = open_window(qtbot, settings_file)
    assert (second.state.schedule_name, second.state.timesteps) == ("cosine", 500)
    assert second.tabs.currentIndex() == SCHEDULES
    assert second.height() == 640
    assert second.forward.last_image_dir == "/some/where"
    assert second.forward.steps_spin.value() == 500
    second.close()


def test_engine_loads_after_the_window_shows(qtbot, settings_file):
    window = MainWindow(settings=QSettings(settings_file, QSettings.IniFormat))
    qtbot.addWidget(window)
    window.show()
    assert window.forward is None and not window.actions["open_image"].isEnabled()
    with qtbot.waitSignal(window.panelsReady, timeout=30_000):
        window.load_engine()
    assert window.forward is not None and window.actions["open_image"].isEnabled()
    qtbot.waitUntil(lambda: window.forward.x0 is not None, timeout=10_000)
    window.close()


def test_app_icon_has_every_size(qapp):
    from ddpm_gui.app import app_icon

    icon = app_icon()
    assert not icon.isNull()
    assert {s.width() for s in icon.availableSizes()} >= {16, 32, 256}


def test_main_shows_the_window_then_loads_the_engine(qapp, settings_file):
    """app.run(), which the launcher runs: the window closes itself once the panels are in."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from ddpm_gui.app import run

    seen = []

    def close_when_ready():
        for w in QApplication.topLevelWidgets():
            if isinstance(w, MainWindow) and w.isVisible():
                seen.append(w.forward is not None)
                if w.forward is not None and w.schedules is not None:
                    w.close()  # the last window: exec() returns
                    return
        QTimer.singleShot(50, close_when_ready)

    QTimer.singleShot(0, close_when_ready)
    QTimer.singleShot(60_000, QApplication.quit)  # never hang the test run
    assert run(["ddpm-studio"]) == 0
    assert seen[0] is False and seen[-1] is True  # shown first, panels afterwards


def test_a_missing_panel_leaves_the_other_tabs_working(qtbot, settings_file, monkeypatch):
    from ddpm_gui import main_window

    real = main_window.import_optional
    monkeypatch.setattr(
        main_window, "import_optional",
        lambda name: "ddpm_gui.training_panel is not available (test)" if name.endswith("training_panel") else real(name),
    )
    window = open_window(qtbot, settings_file)
    assert window.training is None and window.viewer is not None
    assert "not available" in window.tabs.widget(TRAINING).findChild(main_window._PlaceholderPage).text()
    assert not window.actions["start"].isEnabled() and not window.actions["save_checkpoint"].isEnabled()
    window.actions["start"].trigger()  # disabled: nothing happens, nothing raises
    assert window.close()


def test_settings_an_editor_broke_are_ignored(qtbot, settings_file):
    # A value of the wrong type or out of range in the settings file must not stop the
    # app from starting, every time, until the file is found and deleted.
    first = open_window(qtbot, settings_file)
    assert first.close()
    s = QSettings(settings_file, QSettings.IniFormat)
    s.setValue("window/state", "garbage")
    s.setValue("schedule/name", "cosine")
    s.setValue("schedule/T", 200000)  # training allows 2 to 10,000
    s.sync()
    second = open_window(qtbot, settings_file)
    assert (second.state.schedule_name, second.state.timesteps) == ("linear", 300)
    second.close()


def test_t_up_to_what_training_allows_is_kept_by_every_tab(window):
    # The schedule pickers once stopped at 2,000: T = 5,000 from the Training form showed
    # as 2,000, and touching the picker set it.
    window.state.set_schedule("linear", 5000)
    assert window.forward.steps_spin.value() == 5000
    window.forward.schedule_combo.setCurrentIndex(window.forward.schedule_combo.findText("cosine"))
    assert (window.state.schedule_name, window.state.timesteps) == ("cosine", 5000)
    window.state.set_schedule("linear", 10000)
    window.state.set_t(9999)
    title = window.forward.xt_title  # fixed in size, for the widest t and T: nothing cut off
    fixed = title.size()
    title.setMinimumSize(0, 0)
    title.setMaximumSize(10**4, 10**4)
    assert title.sizeHint().width() <= fixed.width()


def _drop(widget, path: str, accepted_by=None):
    from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
    from PySide6.QtGui import QDragEnterEvent, QDropEvent

    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(path)])
    # A file manager offers copy, move and link; Qt proposes Move, and a source that honours
    # Move deletes the original: every drop must come back as a copy.
    offered = Qt.CopyAction | Qt.MoveAction | Qt.LinkAction
    enter = QDragEnterEvent(widget.rect().center(), offered, mime, Qt.LeftButton, Qt.NoModifier)
    enter.ignore()
    widget.dragEnterEvent(enter)
    drop = QDropEvent(QPointF(widget.rect().center()), offered, mime, Qt.LeftButton, Qt.NoModifier)
    drop.ignore()
    if enter.isAccepted():
        assert enter.dropAction() == Qt.CopyAction
        widget.dropEvent(drop)
        assert drop.isAccepted() and drop.dropAction() == Qt.CopyAction
    return enter.isAccepted()


def test_a_drop_goes_to_the_tab_that_opens_it(qtbot, window, tmp_path, make_config):
    # Each tab takes only its kind of file; the window sends the rest where it belongs.
    from PIL import Image

    from ddpm_core.training import Trainer

    image = tmp_path / "photo.png"
    Image.new("RGB", (20, 20), (200, 30, 30)).save(image)
    trainer = Trainer(make_config(steps=1, preview_every=0))
    checkpoint = str(trainer.save(tmp_path / "model.safetensors"))
    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture")

    assert not _drop(window.forward, checkpoint) and not _drop(window.viewer, str(image))
    assert not _drop(window.training, str(image))
    assert not _drop(window, str(notes))  # nobody opens it: the pointer says no

    window.tabs.setCurrentIndex(FORWARD)
    with qtbot.waitSignal(window.viewer.sourceChanged, timeout=30_000):
        assert _drop(window, checkpoint)  # what the Forward tab passed on
    assert window.tabs.currentIndex() == DENOISING and "model.safetensors" in window.viewer.source_label.text()
    with qtbot.waitSignal(window.forward.imagesShown, timeout=30_000):
        assert _drop(window, str(image))  # what the Denoising tab passed on
    assert window.tabs.currentIndex() == FORWARD and "photo.png" in window.forward.source_label.text()

    # On the Training tab while a run trains, a checkpoint cannot be continued: it opens to
    # sample from, rather than being taken and then refused.
    window.training.set_config(make_config(steps=5000, preview_every=0))
    window.training.start()
    window.tabs.setCurrentIndex(TRAINING)
    assert not _drop(window.training, checkpoint)
    window.viewer._source = None
    with qtbot.waitSignal(window.viewer.sourceChanged, timeout=30_000):
        assert _drop(window, checkpoint)
    assert window.tabs.currentIndex() == DENOISING and window.training.is_running()
    window.training.stop()
    qtbot.waitUntil(lambda: not window.training.is_running(), timeout=30_000)


def test_save_and_export_are_offered_once_they_can_act(qtbot, window, make_config):
    actions = window.actions
    assert not any(actions[n].isEnabled() for n in ("save_checkpoint", "export_gif", "export_png"))
    window.training.set_config(make_config(steps=4, preview_every=0))
    with qtbot.waitSignal(window.training.runningChanged, timeout=30_000, check_params_cb=lambda r: not r):
        window.training.start()
    assert actions["save_checkpoint"].isEnabled() and not actions["export_gif"].isEnabled()
    window.viewer.use_training_model()
    window.viewer.steps.setValue(3)
    window.viewer.sampler.setCurrentIndex(window.viewer.sampler.findData("ddim"))
    with qtbot.waitSignal(window.viewer.samplingChanged, timeout=30_000, check_params_cb=lambda r: not r):
        window.viewer.sample()
    assert actions["export_gif"].isEnabled() and actions["export_png"].isEnabled()


def test_an_engine_that_cannot_load_says_how_to_repair_it(qtbot, monkeypatch):
    from ddpm_gui import engine_loader

    monkeypatch.setattr(engine_loader, "REQUIRED_MODULES", ("torch", "no_such_module_for_this_test"))
    loader = engine_loader.EngineLoader()
    with qtbot.waitSignal(loader.finished, timeout=30_000) as done:
        loader.start()
    error = done.args[0]
    assert "no_such_module_for_this_test" in error and "pip install -e ." in error and "\n" not in error
    qtbot.waitUntil(lambda: not loader.is_running(), timeout=30_000)  # it returns after reporting an error
