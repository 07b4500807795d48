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
    monkeypatch.setattr(window.forward, "open_image", lambda: calls.append("open_image"))
    monkeypatch.setattr(window.viewer, "open_checkpoint", lambda: calls.append("viewer.open"))
    monkeypatch.setattr(window.training, "open_checkpoint", lambda: calls.append("training.open"))
    monkeypatch.setattr(window.training, "save_checkpoint", lambda: calls.append("save"))
    monkeypatch.setattr(window.viewer, "export_gif", lambda: calls.append("gif"))
    monkeypatch.setattr(window.viewer, "export_png", lambda: calls.append("png"))
    monkeypatch.setattr(window.training, "start", lambda: calls.append("start"))

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
    assert calls == ["open_image", "viewer.open", "training.open", "save", "gif", "png", "start"]


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
