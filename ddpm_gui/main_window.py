"""The main window: four tabs (forward process, schedules, training, denoising), menus,
status bar, saved settings, and an orderly shutdown.

The window itself needs only Qt, so it can be shown before PyTorch is imported: each tab
starts as a placeholder page, and `build_panels` fills the pages once the engine is
loaded (`load_engine` does that off the GUI thread; passing a state to the constructor
does it at once, as tests do). The panels never talk to each other; they share `AppState`.
"""

from __future__ import annotations

import traceback
from typing import TYPE_CHECKING, Callable, Optional

from PySide6.QtCore import QByteArray, QSettings, Qt, Signal
from PySide6.QtGui import QAction, QGuiApplication, QKeySequence, QPalette
from PySide6.QtWidgets import QLabel, QMainWindow, QMessageBox, QVBoxLayout, QWidget

from ddpm_gui import selftest
from ddpm_gui.engine_loader import EngineLoader, describe_compute_device, import_optional
from ddpm_gui.help_text import APP_NAME, about_html, how_to_start_html
from ddpm_gui.notation import index_of
from ddpm_gui.redraw import QuietTabWidget

if TYPE_CHECKING:  # importing these at run time pulls in torch: see load_engine
    from ddpm_gui.state import AppState

TAB_TITLES = ("Forward process", "Schedules", "Training", "Denoising")
FORWARD, SCHEDULES, TRAINING, DENOISING = range(4)

# name: (menu text, shortcut, status tip)
ACTIONS = {
    "open_image": ("Open &image…", "Ctrl+O", "Noise an image file of your own in the Forward process tab"),
    "open_checkpoint": (
        "Open &checkpoint…",
        "Ctrl+Shift+O",
        "Load a trained model: to sample from it (Denoising), or to continue training it when the Training tab is open",
    ),
    "recover_autosave": (
        "&Recover autosave…",
        "",
        "Open a checkpoint saved automatically during training (after a crash) to continue it",
    ),
    "save_checkpoint": (
        "&Save checkpoint…",
        "Ctrl+S",
        "Save the model being trained, to sample from or resume later",
    ),
    "export_gif": ("Export &GIF…", "Ctrl+E", "Save the denoising process as an animated GIF"),
    "export_png": ("Export &PNG…", "Ctrl+Shift+E", "Save the generated images as a PNG"),
    "quit": ("&Quit", "Ctrl+Q", "Stop any training and close DDPM Studio"),
    "start": ("&Start training", "F5", "Train a model with the settings of the Training tab"),
    "pause": ("&Pause", "F6", "Pause training (the model and optimizer are kept)"),
    "resume": ("&Resume", "F7", "Continue a paused training run"),
    "stop": ("S&top", "Shift+F5", "Stop training (save a checkpoint first to keep the model)"),
    "how_to_start": ("&How to start", "F1", "A short guide to the four tabs"),
    "about": ("&About DDPM Studio", "", "Version, papers and credits"),
}
TRAINING_ACTIONS = ("start", "pause", "resume", "stop", "save_checkpoint", "recover_autosave")


def _button_enabled(panel, name: str) -> bool:
    """Whether a panel's button can act now (False without the panel, or for a page that
    stands in for one that could not load)."""
    button = getattr(panel, name, None)
    return button is not None and button.isEnabled()


class _PlaceholderPage(QLabel):
    """What a tab shows before (or instead of) its panel."""

    def __init__(self, text: str, parent=None):
        super().__init__(text, parent)
        self.setAlignment(Qt.AlignCenter)
        self.setWordWrap(True)
        self.setForegroundRole(QPalette.PlaceholderText)
        self.setTextInteractionFlags(Qt.TextSelectableByMouse)  # let people copy an error


class MainWindow(QMainWindow):
    panelsReady = Signal()  # the four panels exist (the engine is loaded)

    def __init__(self, state: Optional["AppState"] = None, settings: Optional[QSettings] = None, parent=None):
        super().__init__(parent)
        self.settings = settings if settings is not None else QSettings()
        self.state: Optional["AppState"] = None
        self.forward = self.schedules = self.training = self.viewer = None
        self.actions: dict[str, QAction] = {}
        self._pages: list[QWidget] = []
        self._loader = None
        self._error_box: Optional[QMessageBox] = None
        self._about_box: Optional[QMessageBox] = None
        self._help_box: Optional[QMessageBox] = None
        self._closed = False

        self.setWindowTitle(APP_NAME)
        self.tabs = QuietTabWidget(self)  # a page's relayout does not repaint every tab widget
        self.tabs.setDocumentMode(True)
        for title in TAB_TITLES:
            page = QWidget(self.tabs)
            layout = QVBoxLayout(page)
            layout.setContentsMargins(0, 0, 0, 0)
            layout.addWidget(_PlaceholderPage("Loading the diffusion engine (PyTorch)…", page))
            self.tabs.addTab(page, title)
            self._pages.append(page)
        self.setCentralWidget(self.tabs)
        self.setAcceptDrops(True)  # what a tab does not take is sent to the tab that opens it

        self.device_label = QLabel(self)
        self.device_label.setToolTip("Where training and sampling run (CUDA GPU, Apple MPS, or the CPU)")
        self.statusBar().addPermanentWidget(self.device_label)
        self.statusBar().showMessage("Starting…")

        self._build_menus()
        self._enable_panel_actions()
        self._restore_window()
        selftest.install_if_requested(self)  # DDPM_STUDIO_SELFTEST: automated end-to-end checks
        if state is not None:
            self.build_panels(state)

    # ---- menus -----------------------------------------------------------------------------
    def _action(self, name: str, slot: Callable) -> QAction:
        text, shortcut, tip = ACTIONS[name]
        action = QAction(text, self)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
        action.setStatusTip(tip)
        action.setToolTip(tip)
        action.triggered.connect(lambda *_: slot())
        self.actions[name] = action
        return action

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        file_menu.addAction(self._action("open_image", self.open_image))
        file_menu.addAction(self._action("open_checkpoint", self.open_checkpoint))
        file_menu.addAction(self._action("recover_autosave", self.recover_autosave))
        file_menu.addAction(self._action("save_checkpoint", self.save_checkpoint))
        file_menu.addSeparator()
        file_menu.addAction(self._action("export_gif", self.export_gif))
        file_menu.addAction(self._action("export_png", self.export_png))
        file_menu.addSeparator()
        quit_action = self._action("quit", self.close)
        quit_action.setMenuRole(QAction.QuitRole)  # macOS moves it to the application menu
        file_menu.addAction(quit_action)

        training_menu = bar.addMenu("&Training")
        for name in ("start", "pause", "resume", "stop"):
            training_menu.addAction(self._action(name, getattr(self, f"training_{name}")))

        view_menu = bar.addMenu("&View")
        for i, title in enumerate(TAB_TITLES):
            action = QAction(title, self)
            action.setShortcut(QKeySequence(f"Ctrl+{i + 1}"))
            action.setStatusTip(f"Show the {title} tab")
            action.triggered.connect(lambda *_, i=i: self.tabs.setCurrentIndex(i))
            view_menu.addAction(action)
            self.actions[f"tab_{i}"] = action

        help_menu = bar.addMenu("&Help")
        help_menu.addAction(self._action("how_to_start", self.show_how_to_start))
        about = self._action("about", self.show_about)
        about.setMenuRole(QAction.AboutRole)
        help_menu.addAction(about)

    def _enable_panel_actions(self) -> None:
        """Menu items act on panels: enable them only when their panel exists."""
        ready = self.forward is not None
        self.actions["open_image"].setEnabled(ready)
        self.actions["open_checkpoint"].setEnabled(self.training is not None or self.viewer is not None)
        # An item does what its panel's button does, when that button can: Export GIF is
        # not offered before there are samples, nor Save before there is a model.
        self.actions["export_gif"].setEnabled(_button_enabled(self.viewer, "gif_button"))
        self.actions["export_png"].setEnabled(_button_enabled(self.viewer, "png_button"))
        running = self._training_query("is_running")
        paused = running and self._training_query("is_paused")
        self.actions["save_checkpoint"].setEnabled(_button_enabled(self.training, "save_button"))
        self.actions["recover_autosave"].setEnabled(self.training is not None and not running)
        self.actions["start"].setEnabled(self.training is not None and not running)
        self.actions["pause"].setEnabled(running and not paused)
        self.actions["resume"].setEnabled(paused)
        self.actions["stop"].setEnabled(running)

    def _training_query(self, method: str) -> bool:
        """training.is_running() / is_paused(), False without a training panel."""
        fn = getattr(self.training, method, None)
        try:
            return bool(fn()) if fn is not None else False
        except Exception:
            return False

    # ---- building the panels -------------------------------------------------------------------
    def load_engine(self, before_panels: Optional[Callable[[], None]] = None) -> None:
        """Import torch and the panels in the background, then build them (see engine_loader).

        `before_panels` runs on the GUI thread after the imports, before any panel exists
        (the app configures pyqtgraph there)."""
        self._loader = loader = EngineLoader(self)

        def done(error: str, device: str) -> None:
            if self._closed:
                return
            if error:
                for page in self._pages:
                    self._set_page(page, _PlaceholderPage(error, page))
                self._show_error(error)
                return
            if before_panels is not None:
                before_panels()
            from ddpm_gui.state import AppState

            self.build_panels(AppState(self), device)
            # The loader's last task, importing ahead for training, would compete for the
            # GIL with the first image being made and drawn: it waits for that image.
            self.forward.imagesShown.connect(loader.allow_warm_up)

        loader.finished.connect(done)
        loader.start()

    def build_panels(self, state: "AppState", device: Optional[str] = None) -> None:
        """Fill the four tabs (imports torch if `load_engine` has not already)."""
        from ddpm_gui.forward_panel import ForwardPanel
        from ddpm_gui.schedule_panel import SchedulePanel

        self.state = state
        state.status.connect(self.show_status)
        state.errorOccurred.connect(self._show_error)
        self._restore_schedule()
        if state.t == 0:
            # Open on a half-destroyed image: the first screen shows what noising does.
            state.set_t(index_of(state.timesteps // 3))  # t = 100 of 300, as the window counts

        self.forward = ForwardPanel(state, self._pages[FORWARD])
        self.forward.last_image_dir = str(self.settings.value("paths/image_dir", "") or "")
        self._set_page(self._pages[FORWARD], self.forward)
        self.schedules = SchedulePanel(state, self._pages[SCHEDULES])
        self._set_page(self._pages[SCHEDULES], self.schedules)
        self.training = self._optional_panel(TRAINING, "ddpm_gui.training_panel", "TrainingPanel")
        self.viewer = self._optional_panel(DENOISING, "ddpm_gui.viewer_panel", "ViewerPanel")
        # Keep the menus truthful: they follow the panels' own buttons.
        for panel, signal in ((self.training, "runningChanged"), (self.training, "pausedChanged"),
                              (self.training, "controlsChanged"), (self.viewer, "controlsChanged")):
            if panel is not None and hasattr(panel, signal):
                getattr(panel, signal).connect(lambda *_: self._enable_panel_actions())
        self._enable_panel_actions()

        self.device_label.setText(device if device is not None else describe_compute_device())
        self.statusBar().showMessage("Ready: scrub t in the Forward process tab, or press F5 to train a model")
        if self.tabs.currentIndex() == FORWARD:
            self.forward.t_slider.setFocus()  # arrow keys scrub t straight away
        self.panelsReady.emit()

    def _optional_panel(self, index: int, module_name: str, class_name: str):
        """The training or denoising panel; if its module is missing or broken, a page saying
        why, so the other tabs still work."""
        page = self._pages[index]
        module = import_optional(module_name)
        if isinstance(module, str):
            self._set_page(page, _PlaceholderPage(f"The {TAB_TITLES[index]} tab is not available.\n\n{module}", page))
            return None
        try:
            panel = getattr(module, class_name)(self.state, page)
        except Exception as e:
            traceback.print_exc()
            self._set_page(page, _PlaceholderPage(f"The {TAB_TITLES[index]} tab failed to start:\n{e}", page))
            return None
        self._set_page(page, panel)
        return panel

    @staticmethod
    def _set_page(page: QWidget, widget: QWidget) -> None:
        layout = page.layout()
        while layout.count():
            old = layout.takeAt(0).widget()
            if old is not None and old is not widget:
                old.deleteLater()
        layout.addWidget(widget)

    # ---- menu handlers -------------------------------------------------------------------------
    def open_image(self, path: Optional[str] = None) -> None:
        """Noise an image file on the Forward tab (without `path`, a file dialog asks)."""
        if self.forward is None:
            return
        self.tabs.setCurrentIndex(FORWARD)
        self.forward.open_image(path)

    def open_checkpoint(self, path: Optional[str] = None) -> None:
        # In the Training tab a checkpoint is opened to continue training it (not while a
        # run trains: then it is opened to sample from); anywhere else, to sample from, in
        # the Denoising tab.
        on_training = self.tabs.currentIndex() == TRAINING and not self._training_query("is_running")
        if self.training is not None and (on_training or self.viewer is None):
            self.tabs.setCurrentIndex(TRAINING)
            self.training.open_checkpoint(path)
        elif self.viewer is not None:
            self.tabs.setCurrentIndex(DENOISING)
            self.viewer.open_checkpoint(path)

    # ---- drops the tab under the pointer does not take ------------------------------------------
    def _dropped(self, event) -> Optional[str]:
        if self.forward is None:  # the engine is still loading: nothing can open it yet
            return None
        from ddpm_gui.file_drop import CHECKPOINT_SUFFIXES, dropped_file  # the engine is loaded by now

        from ddpm_core.image_folder import IMAGE_EXTENSIONS

        return dropped_file(event, IMAGE_EXTENSIONS | CHECKPOINT_SUFFIXES)

    def dragEnterEvent(self, event) -> None:
        if self._dropped(event):
            from ddpm_gui.file_drop import accept_as_copy

            accept_as_copy(event)

    def dropEvent(self, event) -> None:
        # An image dropped on another tab is noised on the Forward tab; a checkpoint dropped
        # on the Forward or Schedules tab is opened to sample from, as File → Open does.
        path = self._dropped(event)
        if not path:
            return
        from ddpm_gui.file_drop import accept_as_copy, is_image

        accept_as_copy(event)
        if is_image(path):
            self.open_image(path)
        else:
            self.open_checkpoint(path)

    def recover_autosave(self) -> None:
        if self.training is not None:
            self.tabs.setCurrentIndex(TRAINING)
            self.training.recover_autosave()

    def save_checkpoint(self) -> None:
        if self.training is not None:
            self.training.save_checkpoint()

    def export_gif(self) -> None:
        if self.viewer is not None:
            self.tabs.setCurrentIndex(DENOISING)
            self.viewer.export_gif()

    def export_png(self) -> None:
        if self.viewer is not None:
            self.tabs.setCurrentIndex(DENOISING)
            self.viewer.export_png()

    def _training_call(self, method: str) -> None:
        if self.training is not None:
            self.tabs.setCurrentIndex(TRAINING)  # show what the key just did
            getattr(self.training, method)()
            self._enable_panel_actions()

    def training_start(self) -> None:
        self._training_call("start")

    def training_pause(self) -> None:
        self._training_call("pause")

    def training_resume(self) -> None:
        self._training_call("resume")

    def training_stop(self) -> None:
        self._training_call("stop")

    # ---- messages and dialogs -----------------------------------------------------------------
    def show_status(self, message: str) -> None:
        self.statusBar().showMessage(message)

    def _show_error(self, message: str) -> None:
        """A one-line error: in the status bar and a warning box (never a crash)."""
        self.statusBar().showMessage(f"Error: {message}")
        box = self._error_box
        if box is None:
            box = self._error_box = QMessageBox(QMessageBox.Warning, APP_NAME, "", QMessageBox.Ok, self)
        box.setText(message)  # a burst of errors updates one box instead of stacking dialogs
        # open(), not exec(): no nested event loop, so worker signals keep flowing.
        box.open()

    def _message_box(self, html: str) -> QMessageBox:
        box = QMessageBox(QMessageBox.NoIcon, APP_NAME, "", QMessageBox.Ok, self)
        box.setTextFormat(Qt.RichText)
        box.setText(html)
        box.setIconPixmap(self.windowIcon().pixmap(64, 64))
        box.setTextInteractionFlags(Qt.TextBrowserInteraction)
        for label in box.findChildren(QLabel):
            label.setOpenExternalLinks(True)  # the paper links open in the browser
        return box

    def show_about(self) -> None:
        if self._about_box is None:
            self._about_box = self._message_box(about_html())
            self._about_box.setWindowTitle(f"About {APP_NAME}")
        self._about_box.open()

    def show_how_to_start(self) -> None:
        if self._help_box is None:
            self._help_box = self._message_box(how_to_start_html())
            self._help_box.setWindowTitle(f"{APP_NAME}: how to start")
        self._help_box.open()

    # ---- settings -----------------------------------------------------------------------------
    def _restore_window(self) -> None:
        s = self.settings
        geometry = s.value("window/geometry")
        if isinstance(geometry, QByteArray) and self.restoreGeometry(geometry):
            state = s.value("window/state")
            if isinstance(state, QByteArray):  # an edited settings file may hold anything
                self.restoreState(state)
        else:
            self._default_geometry()
        try:
            tab = int(s.value("window/tab", FORWARD))  # first launch: the forward process
        except (TypeError, ValueError):
            tab = FORWARD
        self.tabs.setCurrentIndex(tab if 0 <= tab < len(TAB_TITLES) else FORWARD)

    def _default_geometry(self) -> None:
        screen = QGuiApplication.primaryScreen()
        if screen is None:
            self.resize(1200, 800)
            return
        area = screen.availableGeometry()
        w, h = min(1280, int(area.width() * 0.9)), min(860, int(area.height() * 0.9))
        self.resize(w, h)
        self.move(area.center().x() - w // 2, area.center().y() - h // 2)

    def _restore_schedule(self) -> None:
        name = self.settings.value("schedule/name")
        steps = self.settings.value("schedule/T")
        if name is None or steps is None:
            return
        try:
            self.state.set_schedule(str(name), int(steps))
        except Exception:  # an edited or outdated settings file: keep the defaults
            pass

    def save_settings(self) -> None:
        s = self.settings
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/state", self.saveState())
        s.setValue("window/tab", self.tabs.currentIndex())
        if self.state is not None:
            s.setValue("schedule/name", self.state.schedule_name)
            s.setValue("schedule/T", self.state.timesteps)
        if self.forward is not None:
            s.setValue("paths/image_dir", self.forward.last_image_dir)
        s.sync()

    # ---- closing ------------------------------------------------------------------------------
    def closeEvent(self, event) -> None:
        """Closing stops every worker thread and joins it before the window goes.

        Training first: with unsaved progress it asks Save / Discard / Cancel (Cancel, or a
        save that failed, keeps the window open and training going); it stops within one
        step, and a checkpoint load or save in flight is waited for. Then sampling and the
        other panels' threads. So exec() returns with no thread left running.
        """
        if self._closed:
            event.accept()
            return
        if self.training is not None:
            try:
                keep_open = not self.training.shutdown(ask=True)
            except Exception:  # a bug there must not make the window impossible to close
                traceback.print_exc()
                keep_open = False
            if keep_open:
                event.ignore()  # the user chose to keep training
                return
        self._closed = True
        self.save_settings()
        for panel in (self.viewer, self.forward):
            if panel is not None:
                try:
                    panel.shutdown()
                except Exception:  # a bug in one panel must not keep the others' threads running
                    traceback.print_exc()
        super().closeEvent(event)
