"""The training settings form: every control, what it means in DDPM terms, and validation.

The form turns its fields into a `RunConfig` and runs the engine's own `validate()` on it,
so the app accepts exactly what the command line accepts. A field that cannot be read is
outlined in red with the reason; `check()` returns the first reason for the panel to show
next to Start. Schedule, T and the data settings are shared with the other tabs through
`AppState`: the form writes them there and follows changes made elsewhere.
"""

from __future__ import annotations

import copy
import os
from typing import Optional

import torch
from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ddpm_core.config import SCHEDULE_NAMES, TIMESTEPS_RANGE, DataConfig, RunConfig
from ddpm_core.data import DATASET_TITLES, DOWNLOAD_SIZE_MB, NATIVE_SHAPE, needs_download
from ddpm_core.errors import ConfigError, DDPMError
from ddpm_gui.fields import mark_invalid, parse_float, parse_int, parse_int_list
from ddpm_gui.state import AppState

LEVEL_CHOICES = ("1,2", "1,2,4", "1,2,4,8")
PRECISION_TITLES = {"auto": "Auto (bf16 where fast)", "fp32": "fp32", "bf16": "bf16"}
MAX_AUTOSAVE_MINUTES = 24 * 60.0  # the engine's limit for train.autosave_minutes
LOSS_TITLES = {"l1": "L1 (mean absolute error)", "l2": "L2 (mean squared error)", "huber": "Huber (smooth L1)"}
# The settings a configuration message may name, as the form labels them (longest keys
# first, so "model.dim_mults" is not read as "model.dim" + "_mults").
FORM_NAMES = {
    "model.resnet_block_groups": "the GroupNorm group count",
    "model.dim_mults": "Levels",
    "model.init_dim": "the first layer's width",
    "model.channels": "Channels",
    "model.out_dim": "the output channels",
    "model.dim": "Width (dim)",
    "data.image_size": "Image size",
    "data.channels": "Channels",
    "data.root": "Image folder",
    "schedule.timesteps": "Steps T",
    "train.batch_size": "Batch size",
    "train.lr": "Learning rate",
    "train.preview_every": "Preview every",
    "train.autosave_minutes": "Autosave every",
}


def available_devices() -> list[tuple[str, str]]:
    """(config value, title) for the devices this machine has; 'auto' picks the best."""
    devices = [("auto", "Auto (best available)"), ("cpu", "CPU")]
    if torch.cuda.is_available():
        devices.append(("cuda", "CUDA (NVIDIA GPU)"))
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append(("mps", "MPS (Apple GPU)"))
    return devices


def _combo(items, tooltip: str) -> QComboBox:
    box = QComboBox()
    for value, title in items:
        box.addItem(title, value)
    box.setToolTip(tooltip)
    return box


def _select(box: QComboBox, value) -> None:
    i = box.findData(value)
    if i >= 0:
        box.setCurrentIndex(i)


def _edit(tooltip: str) -> QLineEdit:
    e = QLineEdit()
    e.setToolTip(tooltip)
    return e


class TrainingForm(QWidget):
    changed = Signal()  # any field changed: the panel re-checks and updates Start

    def __init__(self, state: AppState, parent=None):
        super().__init__(parent)
        self.state = state
        self._base = RunConfig()  # settings without a control keep these values
        self._base.schedule.name, self._base.schedule.timesteps = state.schedule_name, state.timesteps
        self._base.data = copy.deepcopy(state.data)
        self._base.model.channels = self._base.data.channels
        self.min_steps = 0  # continuing a checkpoint: Steps must be above its step
        self._model_locked = False
        self._build()
        self.set_config(self._base, publish=False)
        state.scheduleChanged.connect(self._follow_schedule)
        state.dataChanged.connect(self._follow_data)

    # ---- construction ----------------------------------------------------------------
    def _build(self) -> None:
        # Data
        self.dataset = _combo(
            [(k, v) for k, v in DATASET_TITLES.items()],
            "The images the model learns to generate. The built-in shapes need no download and "
            "train fastest; Fashion-MNIST is the dataset of The Annotated Diffusion Model.",
        )
        self.folder = _edit("A folder of images (PNG, JPEG, …), searched with its subfolders.")
        self.folder.setPlaceholderText("choose a folder of images")
        self.browse = QPushButton("Browse…")
        self.browse.setToolTip("Pick the image folder")
        self.image_size = _edit(
            "Images are resized to this many pixels square. Small images train much faster; "
            "the size must be divisible by 2 for every U-Net level after the first."
        )
        self.channels = _combo(
            [(1, "1 (greyscale)"), (3, "3 (colour)")],
            "Colour channels of the images, and so of x_t, ε and the U-Net's input and output.",
        )
        self.flip = QCheckBox("Random horizontal flips")
        self.flip.setToolTip(
            "Mirror each training image left-right at random, as the article does: more variety "
            "for free. Turn it off for digits and text."
        )
        self.download_note = QLabel("")
        self.download_note.setWordWrap(True)
        self.download_note.setObjectName("downloadNote")

        # Model
        self.dim = _edit(
            "Base width of the U-Net ε_θ(x_t, t) (channels of its first level). Wider learns more "
            "and trains slower. Must be a multiple of 4 (its GroupNorm groups)."
        )
        self.levels = QComboBox()
        self.levels.setEditable(True)
        self.levels.addItems(LEVEL_CHOICES)
        self.levels.setToolTip(
            "Width multiplier of each U-Net level (dim_mults): '1,2,4' means three levels of width "
            "dim, 2·dim and 4·dim, each halving the image size. More levels see larger structures."
        )

        # Diffusion
        self.schedule = _combo(
            [(n, n) for n in SCHEDULE_NAMES],
            "How the noise variance β_t grows over the T steps of the forward process q(x_t | x_{t−1}). "
            "Linear is the DDPM paper's; cosine destroys information more slowly. Shared with the "
            "Forward and Schedules tabs.",
        )
        self.timesteps = _edit(
            "T, the number of diffusion steps. The forward process adds noise over T steps; the "
            "DDPM sampler removes it in T steps. Shared with the Forward and Schedules tabs."
        )

        # Training
        self.loss = _combo(
            list(LOSS_TITLES.items()),
            "How the predicted noise ε_θ(x_t, t) is compared with the true noise ε. The paper uses L2; "
            "the article uses Huber, which is less sensitive to outliers.",
        )
        self.batch = _edit("Images per optimizer step. Larger batches give a less noisy loss but take longer per step.")
        self.lr = _edit("Adam's learning rate, e.g. 1e-3. Too high and the loss jumps around; too low and it barely falls.")
        self.length = _edit("How long to train: the number of optimizer steps (or of passes over the data).")
        self.length_unit = _combo(
            [("steps", "steps"), ("epochs", "epochs")],
            "Count training length in optimizer steps, or in epochs (full passes over the dataset).",
        )
        self.ema = QCheckBox("Keep EMA weights")
        self.ema.setToolTip(
            "Keep an exponential moving average of the weights and sample from it: it averages out "
            "the noise of single steps and gives cleaner images."
        )
        self.preview_every = _edit(
            "Every this many steps, sample a preview grid from the current (EMA) model with the same "
            "starting noise each time, so you can watch samples improve. 0: never. Previews pause training briefly."
        )
        self.seed = _edit("Seed of every random draw in training (t, ε, flips, initial weights): the same seed repeats a run.")
        self.device = _combo(
            available_devices(),
            "Where training runs. Auto picks an NVIDIA GPU (CUDA), then an Apple GPU (MPS), then the CPU.",
        )
        self.precision = _combo(
            list(PRECISION_TITLES.items()),
            "Number format of the U-Net's arithmetic. Auto uses bf16 (half the bits, often twice the speed) "
            "where the GPU or CPU computes it fast, else fp32. fp32 is the safe choice if the loss turns NaN. "
            "The Denoising tab samples in the same precision.",
        )
        self.compile = QCheckBox("Compile the network (long runs)")
        self.compile.setToolTip(
            "Compile the U-Net with torch.compile, which fuses its many small operations into fewer, "
            "faster ones. The first step then takes about a minute and each later step is faster "
            "(1.4x on an H100), so it pays off only for runs of many thousands of steps. "
            "NVIDIA GPUs (CUDA) only: on a CPU it made training slower, so there it is not used. "
            "While it compiles, sampling on the Denoising tab waits. "
            "If compiling fails, training goes on without it."
        )
        self.autosave = _edit(
            "Save a checkpoint of the running training this often, so a crash or power cut loses at most "
            "this much work. Minutes; 0 turns autosave off. File → Recover autosave… opens them."
        )

        data_box = QGroupBox("Data")
        f = QFormLayout(data_box)
        f.addRow("Dataset", self.dataset)
        folder_row = QHBoxLayout()
        folder_row.addWidget(self.folder, 1)
        folder_row.addWidget(self.browse)
        self.folder_label = QLabel("Folder")
        f.addRow(self.folder_label, folder_row)
        f.addRow("Image size", self.image_size)
        f.addRow("Channels", self.channels)
        f.addRow("", self.flip)
        f.addRow(self.download_note)

        model_box = QGroupBox("Model (U-Net)")
        f = QFormLayout(model_box)
        f.addRow("Width (dim)", self.dim)
        f.addRow("Levels", self.levels)

        diffusion_box = QGroupBox("Diffusion")
        f = QFormLayout(diffusion_box)
        f.addRow("Schedule", self.schedule)
        f.addRow("Steps T", self.timesteps)

        train_box = QGroupBox("Training")
        f = QFormLayout(train_box)
        f.addRow("Loss", self.loss)
        f.addRow("Batch size", self.batch)
        f.addRow("Learning rate", self.lr)
        length_row = QHBoxLayout()
        length_row.addWidget(self.length, 1)
        length_row.addWidget(self.length_unit)
        f.addRow("Train for", length_row)
        f.addRow("", self.ema)
        f.addRow("Preview every", self.preview_every)
        f.addRow("Seed", self.seed)
        f.addRow("Device", self.device)
        f.addRow("Precision", self.precision)
        f.addRow("", self.compile)
        autosave_row = QHBoxLayout()
        autosave_row.addWidget(self.autosave, 1)
        autosave_row.addWidget(QLabel("minutes (0: off)"))
        f.addRow("Autosave every", autosave_row)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for box in (data_box, model_box, diffusion_box, train_box):
            layout.addWidget(box)
        self._model_widgets = (self.image_size, self.channels, self.dim, self.levels)

        # Which widget a ConfigError is about, by the field its message names (longest first).
        self._field_widgets = [
            ("model.dim_mults", self.levels),
            ("model.resnet_block_groups", self.dim),
            ("model.channels", self.channels),
            ("model.dim", self.dim),
            ("data.image_size", self.image_size),
            ("data.channels", self.channels),
            ("data.root", self.folder),
            ("schedule.timesteps", self.timesteps),
            ("train.batch_size", self.batch),
            ("train.lr", self.lr),
            ("train.steps", self.length),
            ("train.epochs", self.length),
            ("train.preview_every", self.preview_every),
            ("train.seed", self.seed),
            ("train.device", self.device),
            ("train.precision", self.precision),
            ("train.autosave_minutes", self.autosave),
        ]

        for w in (self.folder, self.image_size, self.dim, self.timesteps, self.batch, self.lr,
                  self.length, self.preview_every, self.seed, self.autosave):
            w.textChanged.connect(self.changed)
        self.levels.editTextChanged.connect(self.changed)  # typing, and picking a listed item
        for box in (self.loss, self.length_unit, self.device, self.precision):
            box.currentIndexChanged.connect(self.changed)
        self.ema.toggled.connect(self.changed)
        self.compile.toggled.connect(self.changed)
        # Shared settings go to the state when a value is complete, not on every keystroke.
        self.dataset.currentIndexChanged.connect(self._on_dataset_chosen)
        self.channels.currentIndexChanged.connect(self._publish_data)
        self.flip.toggled.connect(self._publish_data)
        self.image_size.editingFinished.connect(self._publish_data)
        self.folder.editingFinished.connect(self._publish_data)
        self.browse.clicked.connect(self.choose_folder)
        self.schedule.currentIndexChanged.connect(self._publish_schedule)
        self.timesteps.editingFinished.connect(self._publish_schedule)

    # ---- values in and out -------------------------------------------------------------
    def set_config(self, cfg: RunConfig, publish: bool = True) -> None:
        """Show `cfg` in the fields (settings without a field are kept for `config()`)."""
        self._base = copy.deepcopy(cfg)
        widgets = self.findChildren(QWidget)
        for w in widgets:
            w.blockSignals(True)
        try:
            d, m, s, t = cfg.data, cfg.model, cfg.schedule, cfg.train
            _select(self.dataset, d.dataset)
            self.folder.setText(d.root or "")
            self.image_size.setText(str(d.image_size))
            _select(self.channels, d.channels)
            self.flip.setChecked(bool(d.flip))
            self.dim.setText(str(m.dim))
            self.levels.setCurrentText(",".join(str(v) for v in m.dim_mults))
            _select(self.schedule, s.name)
            self.timesteps.setText(str(s.timesteps))
            _select(self.loss, t.loss)
            self.batch.setText(str(t.batch_size))
            self.lr.setText(f"{t.lr:g}")
            if t.steps is not None:
                self.length.setText(str(t.steps))
                _select(self.length_unit, "steps")
            else:
                self.length.setText(str(t.epochs))
                _select(self.length_unit, "epochs")
            self.ema.setChecked(bool(t.ema))
            self.preview_every.setText(str(t.preview_every))
            self.seed.setText(str(t.seed))
            if self.device.findData(t.device) < 0:
                self.device.addItem(f"{t.device} (not available here)", t.device)
            _select(self.device, t.device)
            _select(self.precision, t.precision)
            self.compile.setChecked(bool(t.compile))
            self.autosave.setText(f"{t.autosave_minutes:g}")
        finally:
            for w in widgets:
                w.blockSignals(False)
        self._update_data_widgets()
        if publish:
            self._publish_schedule()
            self._publish_data()
        self.changed.emit()

    def set_steps(self, steps: int) -> None:
        _select(self.length_unit, "steps")
        self.length.setText(str(steps))

    def config(self) -> RunConfig:
        """The validated RunConfig; raises ConfigError (or ValueError from a field)."""
        cfg, reason = self.check()
        if cfg is None:
            raise ConfigError(reason)
        return cfg

    def check(self) -> tuple[Optional[RunConfig], Optional[str]]:
        """(config, None) when everything is valid, else (None, the first reason)."""
        errors: list[str] = []

        def read(widget, label, parse):
            try:
                value = parse()
            except ValueError as e:
                mark_invalid(widget, str(e))
                errors.append((label, f"{label}: {e}"))
                return None
            mark_invalid(widget, None)
            return value

        for _, widget in self._field_widgets:
            mark_invalid(widget, None)  # each check starts clean; read() marks again
        cfg = copy.deepcopy(self._base)
        d, m, s, t = cfg.data, cfg.model, cfg.schedule, cfg.train
        d.dataset = self.dataset.currentData()
        d.root = read(self.folder, "Image folder", self._read_folder)
        d.image_size = read(self.image_size, "Image size", lambda: parse_int(self.image_size.text(), 4, 512))
        d.channels = m.channels = self.channels.currentData()
        d.flip = self.flip.isChecked()
        m.dim = read(self.dim, "Width", lambda: parse_int(self.dim.text(), 4, 1024))
        m.dim_mults = read(self.levels, "Levels", lambda: parse_int_list(self.levels.currentText(), 1, 64))
        s.name = self.schedule.currentData()
        s.timesteps = read(self.timesteps, "Steps T", lambda: parse_int(self.timesteps.text(), *TIMESTEPS_RANGE))
        t.loss = self.loss.currentData()
        t.batch_size = read(self.batch, "Batch size", lambda: parse_int(self.batch.text(), 1, 65536))
        t.lr = read(self.lr, "Learning rate", lambda: parse_float(self.lr.text(), 1e-8, 1.0))
        length = read(self.length, "Train for", self._read_length)
        if self.length_unit.currentData() == "steps":
            t.steps, t.epochs = length, None
        else:
            t.steps, t.epochs = None, length
        t.ema = self.ema.isChecked()
        t.preview_every = read(self.preview_every, "Preview every", lambda: parse_int(self.preview_every.text(), 0, 10**9))
        t.seed = read(self.seed, "Seed", lambda: parse_int(self.seed.text(), 0, 2**63 - 1))
        t.device = self.device.currentData()
        t.precision = self.precision.currentData()
        t.compile = self.compile.isChecked()
        t.autosave_minutes = read(
            self.autosave, "Autosave every",
            lambda: parse_float(self.autosave.text(), 0.0, MAX_AUTOSAVE_MINUTES, example="10 (minutes), or 0 for off"),
        )
        if errors:
            others = [label for label, _ in errors[1:]]
            more = f" (also to fix: {', '.join(others)})" if others else ""
            return None, errors[0][1] + more
        try:
            cfg.validate()
        except ConfigError as e:
            message = self._in_form_words(str(e))
            widget = next((w for key, w in self._field_widgets if key in str(e)), None)
            if widget is not None:
                mark_invalid(widget, message)
            return None, message
        if t.device not in [v for v, _ in available_devices()]:
            mark_invalid(self.device, "not available on this machine")
            return None, f"Device: {t.device} is not available on this machine; choose Auto or CPU"
        return cfg, None

    @staticmethod
    def _in_form_words(message: str) -> str:
        """A config message names settings as a config file does ('data.image_size=17'):
        here they are named as the form's labels ('Image size 17')."""
        for key, name in FORM_NAMES.items():
            message = message.replace(f"{key}=", f"{name} ").replace(key, name)
        return message[:1].upper() + message[1:]

    def _read_folder(self) -> Optional[str]:
        if self.dataset.currentData() != "folder":
            return None  # only an image folder has a root
        path = self.folder.text().strip()
        if not path:
            raise ValueError("choose a folder of images (Browse…)")
        if not os.path.isdir(os.path.expanduser(path)):
            raise ValueError(f"{path} is not an existing folder")
        return path

    def _read_length(self) -> int:
        n = parse_int(self.length.text(), 1, 10**9)
        if self.length_unit.currentData() == "steps" and n <= self.min_steps:
            raise ValueError(
                f"the checkpoint is already at step {self.min_steps:,}: set more steps to continue training"
            )
        return n

    # ---- continuing a checkpoint -----------------------------------------------------------
    def lock_model(self, locked: bool) -> None:
        """A checkpoint's model cannot change shape: freeze the fields that define it."""
        self._model_locked = locked
        for w in self._model_widgets:
            w.setEnabled(not locked)

    # ---- shared state ----------------------------------------------------------------------
    def choose_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Choose an image folder", self.folder.text())
        if path:
            self.folder.setText(path)
            self._publish_data()

    def _on_dataset_chosen(self) -> None:
        # The well-known datasets' own channels and size (Fashion-MNIST: 1 × 28 px, as in the
        # article); the user may still change them. A checkpoint's model keeps its own.
        key = self.dataset.currentData()
        if key in NATIVE_SHAPE and not self._model_locked:
            channels, size = NATIVE_SHAPE[key]
            _select(self.channels, channels)
            self.image_size.setText(str(size))
        self._update_data_widgets()
        self._publish_data()
        self.changed.emit()

    def _update_data_widgets(self) -> None:
        key = self.dataset.currentData()
        is_folder = key == "folder"
        for w in (self.folder_label, self.folder, self.browse):
            w.setVisible(is_folder)
        self.download_note.setText(self._download_text(key))

    def _download_text(self, key: str) -> str:
        if key not in DOWNLOAD_SIZE_MB:
            return ""
        try:
            if not needs_download(DataConfig(dataset=key)):
                return f"{DATASET_TITLES[key]} is already downloaded."
        except DDPMError as e:
            return str(e)
        return f"{DATASET_TITLES[key]} will be downloaded (~{DOWNLOAD_SIZE_MB[key]} MB) on Start."

    def _publish_data(self) -> None:
        """Tell the other tabs which images we train on (only complete, valid values)."""
        try:
            size = parse_int(self.image_size.text(), 4, 512)
            root = self._read_folder()
        except ValueError:
            return
        data = copy.deepcopy(self.state.data)
        data.dataset = self.dataset.currentData()
        data.image_size = size
        data.channels = self.channels.currentData()
        data.root = root
        data.flip = self.flip.isChecked()
        data.limit = self._base.data.limit
        self.state.set_data(data)
        self.changed.emit()

    def _publish_schedule(self) -> None:
        try:
            T = parse_int(self.timesteps.text(), *TIMESTEPS_RANGE)
        except ValueError:
            self.changed.emit()
            return
        try:
            self.state.set_schedule(self.schedule.currentData(), T)
        except DDPMError as e:
            mark_invalid(self.timesteps, str(e))
        self.changed.emit()

    def _follow_schedule(self) -> None:
        for w in (self.schedule, self.timesteps):
            w.blockSignals(True)
        _select(self.schedule, self.state.schedule_name)
        self.timesteps.setText(str(self.state.timesteps))
        for w in (self.schedule, self.timesteps):
            w.blockSignals(False)
        self.changed.emit()

    def _follow_data(self) -> None:
        d = self.state.data
        widgets = (self.dataset, self.image_size, self.channels, self.folder, self.flip)
        for w in widgets:
            w.blockSignals(True)
        _select(self.dataset, d.dataset)
        self.image_size.setText(str(d.image_size))
        _select(self.channels, d.channels)
        self.folder.setText(d.root or "")
        self.flip.setChecked(bool(d.flip))
        self._base.data.limit = d.limit
        for w in widgets:
            w.blockSignals(False)
        self._update_data_widgets()
        self.changed.emit()
