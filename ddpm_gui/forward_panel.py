"""The "Forward process" tab: watch q(x_t | x₀) destroy an image as t grows.

x_t = √ᾱ_t · x₀ + √(1 − ᾱ_t) · ε  (Ho et al. 2020, eq. 4) is computed here in numpy with
one fixed ε, so scrubbing t changes only the noise level, never the noise pattern. For a
handful of small images that is microseconds, so every slider move redraws at once.
The schedule constants come from the engine's `NoiseSchedule` (the shared `AppState`),
never recomputed here.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFontDatabase, QPalette
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from ddpm_core.config import DataConfig
from ddpm_core.data import IMAGE_EXTENSIONS, load_image
from ddpm_gui.file_drop import accept_as_copy, dropped_file
from ddpm_gui.forward_samples import SamplePool, load_pool
from ddpm_gui.image_view import ImageGrid, ZoomDialog
from ddpm_gui.notation import TimestepSpinBox, index_of, shown_t
from ddpm_gui.schedule_controls import MAX_T, ScheduleControls
from ddpm_gui.state import AppState
from ddpm_gui.workers import LatestTask

STRIP_STEPS = 7  # t = 1, T/6, ..., T (indices 0…T−1): the article's "noise at several t" figure
IMAGE_COUNTS = (1, 4, 9, 16)  # how many dataset images the big view noises at once (square grids)

HINT = (
    "Scrub <b>t</b> (slider or arrow keys) to watch noise destroy the image  ·  "
    "<b>Training</b> tab → Start to train a model  ·  <b>File › Open checkpoint…</b> to load one  ·  "
    "drop any image here to noise it"
)

# (buffer key, label, short meaning, tooltip, format) of the readouts for the current t
READOUTS = (
    (
        "betas",
        "β<sub>t</sub>",
        "noise variance added at this step",
        "β_t: the variance of the Gaussian noise added at step t:\n"
        "q(x_t | x_{t−1}) = N(√(1−β_t)·x_{t−1}, β_t·I).",
        "{:.5g}",
    ),
    (
        "alphas_cumprod",
        "ᾱ<sub>t</sub>",
        "fraction of x<sub>0</sub>'s variance left",
        "ᾱ_t = (1−β_1)(1−β_2)…(1−β_t): the fraction of the original signal's variance left at step t.",
        "{:.5g}",
    ),
    (
        "sqrt_alphas_cumprod",
        "√ᾱ<sub>t</sub>",
        "weight of x<sub>0</sub> in x<sub>t</sub>",
        "√ᾱ_t: how strongly the clean image x₀ is still present in x_t (its weight in the sum).",
        "{:.5g}",
    ),
    (
        "sqrt_one_minus_alphas_cumprod",
        "√(1−ᾱ<sub>t</sub>)",
        "weight of ε: the noise's std",
        "√(1−ᾱ_t): the standard deviation of the noise in x_t (the weight of ε in the sum).",
        "{:.5g}",
    ),
    (
        "snr",
        "SNR",
        "signal-to-noise ratio ᾱ<sub>t</sub>/(1−ᾱ<sub>t</sub>)",
        "Signal-to-noise ratio ᾱ_t / (1−ᾱ_t): above 1 the image dominates x_t, below 1 the noise does.",
        "{:.4g}",
    ),
    (
        "log_snr",
        "log SNR",
        "0 where signal and noise are equal",
        "Natural log of the SNR: 0 where signal and noise are equally strong; it falls as t grows.",
        "{:+.3f}",
    ),
)


def _looks(data: DataConfig) -> tuple:
    """The data settings that change what x₀ looks like."""
    return data.dataset, data.root, data.image_size, data.channels


def _freeze_size(label: QLabel, widest_text: str) -> QLabel:
    """Fix a label's size to that of the widest text it will show at any t.

    A QLabel asks its whole window to re-lay out at every setText, and a plain QTabWidget
    then repaints every widget of the tab (see redraw.QuietTabWidget). A widget of fixed
    size stops that at itself, so scrubbing t repaints only the numbers and the images.
    """
    text = label.text()
    label.setText(widest_text)
    label.setFixedSize(label.sizeHint())
    label.setText(text)
    return label


def _muted(label: QLabel) -> QLabel:
    """Secondary text: the palette's placeholder colour, so it works on light and dark themes."""
    label.setForegroundRole(QPalette.PlaceholderText)
    return label


class _StripCell(QWidget):
    """One image of the strip with its caption underneath."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.view = ImageGrid(self, columns=1)
        self.view.setMinimumSize(56, 56)
        self.view.setCursor(Qt.PointingHandCursor)
        self.caption = QLabel(self)
        self.caption.setAlignment(Qt.AlignCenter)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.caption)
        self.t: Optional[int] = None  # None for the x₀ cell


class ForwardPanel(QWidget):
    imagesShown = Signal()  # new images x₀ are shown (the first time: the tab is ready to use)

    def __init__(self, state: AppState, parent=None):
        super().__init__(parent)
        self.state = state
        self.last_image_dir = ""  # restored/saved by the main window
        self._rng = np.random.default_rng()
        self._values = state.schedule.as_numpy()
        self._x0: Optional[np.ndarray] = None  # float32 (N, C, H, W) in [-1, 1]; [0] is the one explained
        self._eps: Optional[np.ndarray] = None  # float32 (N, C, H, W), drawn once, reused for every t
        self._count = 1  # images asked for (IMAGE_COUNTS); an opened file is shown alone
        self._pool: Optional[SamplePool] = None
        self._pool_index = 0
        self._image_path: Optional[str] = None  # set while showing an opened file
        self._opening: Optional[str] = None  # the file being read for it, off this thread
        self._image_cfg: Optional[DataConfig] = None  # the settings _image_path was read at
        self._caption = ""
        self._zoom: Optional[ZoomDialog] = None
        # Off the GUI thread: a dataset's example images, and an opened image file (a large
        # photo took 1.8 s to decode, a named pipe for ever).
        self._pool_loader = LatestTask("forward-samples", self)
        self._file_loader = LatestTask("open-image", self)

        self._build()
        self.setAcceptDrops(True)

        self._pool_loader.loaded.connect(self._on_pool_loaded)
        self._pool_loader.failed.connect(self._on_pool_failed)
        self._file_loader.loaded.connect(self._on_file_loaded)
        self._file_loader.failed.connect(self._on_file_failed)
        state.scheduleChanged.connect(self._on_schedule_changed)
        state.timestepChanged.connect(self._on_t_changed)
        state.dataChanged.connect(self._on_data_changed)
        self._shown_looks = _looks(state.data)  # the data settings the images shown were made for

        self._sync_schedule_controls()
        self._on_t_changed(state.t)
        self._request_pool()

    # ---- layout ------------------------------------------------------------------------
    def _build(self) -> None:
        hint = _muted(QLabel(HINT, self))
        hint.setWordWrap(True)

        # Schedule and T: the same AppState the training panel reads.
        self.schedule_controls = ScheduleControls(self.state, self)
        self.schedule_combo = self.schedule_controls.schedule_combo
        self.steps_spin = self.schedule_controls.steps_spin
        self.sample_button = QPushButton("Another sample", self)
        self.sample_button.setToolTip("Show another image x₀ of the current training dataset.")
        self.open_button = QPushButton("Open image…", self)
        self.open_button.setToolTip(
            "Noise your own picture (or drag and drop an image file onto this tab).\n"
            "It is resized and centre-cropped to the training image size and channels."
        )
        self.count_combo = QComboBox(self)
        for n in IMAGE_COUNTS:
            self.count_combo.addItem(f"{n} image{'s' if n > 1 else ''}", n)
        self.count_combo.setToolTip(
            "How many images of the dataset to noise side by side, each with its own fixed ε.\n"
            "The equation and the strip follow the first one. An opened image file is shown alone."
        )
        self.noise_button = QPushButton("New noise", self)
        self.noise_button.setToolTip(
            "Draw a new ε ~ N(0, I). The same ε is used at every t, so moving t changes only\n"
            "how much noise there is, not which noise: exactly the closed form of q(x_t | x₀)."
        )
        self.source_label = _muted(QLabel(self))
        # A long file name is cut at the window's edge (the tooltip has it whole); it must
        # not widen the window, as it did to 1,330 px.
        self.source_label.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)

        controls = QHBoxLayout()
        controls.addWidget(self.schedule_controls)
        controls.addSpacing(16)
        controls.addWidget(self.sample_button)
        controls.addWidget(self.open_button)
        controls.addWidget(self.count_combo)
        controls.addWidget(self.noise_button)
        controls.addSpacing(12)
        controls.addWidget(self.source_label, 1)

        # The noised image, large.
        self.xt_title = QLabel(self)
        font = self.xt_title.font()
        font.setPointSizeF(font.pointSizeF() * 1.25)
        font.setBold(True)
        self.xt_title.setFont(font)
        widest = int("8" * len(str(MAX_T)))  # 8: the widest digit in most fonts (a shown t, 1…T)
        _freeze_size(self.xt_title, self._title_text(widest, MAX_T))
        self.big_view = ImageGrid(self, placeholder="Loading an example image…")
        self.big_view.setMinimumSize(200, 200)
        self.big_view.setCursor(Qt.PointingHandCursor)
        self.big_view.setToolTip("x_t, the image after t noising steps. Click an image to open it in a window.")
        left = QVBoxLayout()
        left.addWidget(self.xt_title, 0, Qt.AlignLeft)
        left.addWidget(self.big_view, 1)

        right = QVBoxLayout()
        right.addWidget(self._build_equation())
        right.addWidget(self._build_readouts())
        right.addStretch(1)

        main = QHBoxLayout()
        main.addLayout(left, 3)
        main.addSpacing(12)
        main.addLayout(right, 2)

        # The timestep: slider and spin box, both keyboard-driven.
        self.t_slider = QSlider(Qt.Horizontal, self)
        self.t_slider.setFocusPolicy(Qt.StrongFocus)
        self.t_slider.setTickPosition(QSlider.TicksBelow)
        self.t_slider.setToolTip(
            "The timestep t = 1…T, as in the paper: x_t has had t steps of noise; x₀ is the clean image.\n"
            "Arrow keys: ±1 · Page Up/Down: ±T/10 · Home/End: first/last step."
        )
        self.t_spin = TimestepSpinBox(self)  # holds the index, as the slider does; shows t = index + 1
        self.t_spin.setToolTip(self.t_slider.toolTip())
        slider_row = QHBoxLayout()
        slider_row.addWidget(QLabel("t", self))
        slider_row.addWidget(self.t_slider, 1)
        slider_row.addWidget(self.t_spin)

        # The strip: x₀ then x_t at evenly spaced t.
        strip_box = QFrame(self)
        strip_box.setFrameShape(QFrame.StyledPanel)
        strip = QHBoxLayout(strip_box)
        strip.setContentsMargins(6, 6, 6, 6)
        self.strip_cells: list[_StripCell] = []
        for _ in range(STRIP_STEPS + 1):
            cell = _StripCell(strip_box)
            cell.view.clicked.connect(lambda _=0, c=cell: self._on_strip_clicked(c))
            strip.addWidget(cell, 1)
            self.strip_cells.append(cell)
        self.strip_cells[0].view.setToolTip("x₀, the clean image. Click to enlarge.")
        for cell in self.strip_cells[1:]:
            cell.view.setToolTip("x_t at this t, with the same ε. Click to jump there.")
        strip_box.setMinimumHeight(110)
        strip_box.setMaximumHeight(170)
        strip_box.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Preferred)

        layout = QVBoxLayout(self)
        layout.addWidget(hint)
        layout.addLayout(controls)
        layout.addLayout(main, 1)
        layout.addLayout(slider_row)
        layout.addWidget(strip_box)

        self.sample_button.clicked.connect(self.another_sample)
        self.open_button.clicked.connect(lambda: self.open_image())
        self.noise_button.clicked.connect(self.new_noise)
        self.count_combo.currentIndexChanged.connect(lambda _: self.set_image_count(self.count_combo.currentData()))
        self.t_slider.valueChanged.connect(self.state.set_t)
        self.t_spin.valueChanged.connect(self.state.set_t)
        self.big_view.clicked.connect(self._zoom_xt)

    def _build_equation(self) -> QWidget:
        box = QFrame(self)
        box.setFrameShape(QFrame.StyledPanel)
        self.x0_view = ImageGrid(box, columns=1)
        self.x0_view.setToolTip("x₀: the clean image")
        self.eps_view = ImageGrid(box, columns=1)
        self.eps_view.setToolTip(
            "ε ~ N(0, I): the fixed noise (shown clipped to [−1, 1]). 'New noise' draws another."
        )
        for view in (self.x0_view, self.eps_view):
            view.setMinimumSize(80, 80)
        self.equation = QLabel(box)
        self.equation.setAlignment(Qt.AlignCenter)
        self.equation.setToolTip(
            "q(x_t | x₀) in closed form (Ho et al. 2020, eq. 4): no need to apply t noising steps one by one."
        )
        grid = QGridLayout(box)
        grid.addWidget(self.x0_view, 0, 0)
        grid.addWidget(self.eps_view, 0, 1)
        grid.addWidget(QLabel("x<sub>0</sub> (clean)", box), 1, 0, Qt.AlignCenter)
        grid.addWidget(QLabel("ε (fixed noise)", box), 1, 1, Qt.AlignCenter)
        _freeze_size(self.equation, self._equation_text(0.888, 0.888))
        grid.addWidget(self.equation, 2, 0, 1, 2, Qt.AlignCenter)
        grid.setRowStretch(0, 1)
        return box

    def _build_readouts(self) -> QWidget:
        box = QFrame(self)
        box.setFrameShape(QFrame.StyledPanel)
        grid = QGridLayout(box)
        mono = QFontDatabase.systemFont(QFontDatabase.FixedFont)
        self.readouts: dict[str, QLabel] = {}
        widest = "-8.8888e-08"  # the longest a READOUTS format gives (a monospace font)
        for row, (key, name, meaning, tip, _) in enumerate(READOUTS):
            name_label = QLabel(name, box)
            value = QLabel(box)
            value.setFont(mono)
            _freeze_size(value, widest)
            value.setAlignment(Qt.AlignRight | Qt.AlignVCenter)
            value.setTextInteractionFlags(Qt.TextSelectableByMouse)  # copy a number into notes
            meaning_label = _muted(QLabel(meaning, box))
            for w in (name_label, value, meaning_label):
                w.setToolTip(tip)
            grid.addWidget(name_label, row, 0)
            grid.addWidget(value, row, 1)
            grid.addWidget(meaning_label, row, 2)
            self.readouts[key] = value
        grid.setColumnStretch(2, 1)
        grid.setHorizontalSpacing(12)
        return box

    # ---- schedule and t --------------------------------------------------------------
    def _sync_schedule_controls(self) -> None:
        T = self.state.timesteps
        widgets = (self.t_slider, self.t_spin)
        for w in widgets:
            w.blockSignals(True)
        self.t_slider.setRange(0, T - 1)
        self.t_slider.setPageStep(max(1, T // 10))
        self.t_slider.setTickInterval(max(1, T // 10))
        self.t_spin.setRange(0, T - 1)
        self.t_slider.setValue(min(self.state.t, T - 1))
        self.t_spin.setValue(min(self.state.t, T - 1))
        for w in widgets:
            w.blockSignals(False)

    def _on_schedule_changed(self) -> None:
        self._values = self.state.schedule.as_numpy()
        self._sync_schedule_controls()
        self._redraw()
        self._redraw_strip()

    def _on_t_changed(self, t: int) -> None:
        for w in (self.t_slider, self.t_spin):
            if w.value() != t:
                w.blockSignals(True)
                w.setValue(t)
                w.blockSignals(False)
        self._redraw()

    def _current_t(self) -> int:
        # scheduleChanged fires before the state clamps t into the new range.
        return min(self.state.t, self.state.timesteps - 1)

    # ---- the math: x_t from x₀ and the fixed ε -------------------------------------------
    @property
    def x0(self) -> Optional[np.ndarray]:
        """The clean image explained (the first), float32 (C, H, W) in [-1, 1] (None while loading)."""
        return None if self._x0 is None else self._x0[0]

    @property
    def noise(self) -> Optional[np.ndarray]:
        """The fixed ε of that image, same shape as x0."""
        return None if self._eps is None else self._eps[0]

    @property
    def x0_batch(self) -> Optional[np.ndarray]:
        """Every image shown, float32 (N, C, H, W)."""
        return self._x0

    @property
    def noise_batch(self) -> Optional[np.ndarray]:
        return self._eps

    def image_count(self) -> int:
        """How many images the big view shows (1 for an opened file, else the count chosen)."""
        return 0 if self._x0 is None else len(self._x0)

    def x_t_batch(self, t: Optional[int] = None) -> Optional[np.ndarray]:
        """x_t = √ᾱ_t·x₀ + √(1−ᾱ_t)·ε for every image, float32 (N, C, H, W), or None before loading."""
        if self._x0 is None:
            return None
        t = self._current_t() if t is None else t
        a = np.float32(self._values["sqrt_alphas_cumprod"][t])
        b = np.float32(self._values["sqrt_one_minus_alphas_cumprod"][t])
        return a * self._x0 + b * self._eps

    def x_t(self, t: Optional[int] = None) -> Optional[np.ndarray]:
        """x_t of the first image, float32 (C, H, W), or None before an image is loaded."""
        batch = self.x_t_batch(t)
        return None if batch is None else batch[0]

    def _redraw(self) -> None:
        t = self._current_t()
        v = self._values
        self.xt_title.setText(self._title_text(shown_t(t), self.state.timesteps))
        for key, _, _, _, fmt in READOUTS:
            self.readouts[key].setText(fmt.format(v[key][t]))
        self.equation.setText(self._equation_text(v["sqrt_alphas_cumprod"][t], v["sqrt_one_minus_alphas_cumprod"][t]))
        xt = self.x_t_batch(t)
        if xt is not None:
            self.big_view.set_images(xt)

    @staticmethod
    def _title_text(t: int, T: int) -> str:
        return f"x<sub>t</sub> at t = {t}  <small>(T = {T})</small>"

    @staticmethod
    def _equation_text(signal: float, noise: float) -> str:
        return f"x<sub>t</sub> = <b>{signal:.3f}</b>·x<sub>0</sub> + <b>{noise:.3f}</b>·ε"

    def _strip_steps(self) -> list[int]:
        """Indices whose shown t are 1, then multiples of T/6 up to T (t = 1, 50, 100, … 300)."""
        T = self.state.timesteps
        return sorted({index_of(max(1, round(k * T / (STRIP_STEPS - 1)))) for k in range(STRIP_STEPS)})

    def _redraw_strip(self) -> None:
        if self._x0 is None:
            return
        self.x0_view.set_images(self._x0[:1])
        self.eps_view.set_images(self._eps[:1])
        first = self.strip_cells[0]
        first.view.set_images(self._x0[:1])
        first.caption.setText("x<sub>0</sub>")
        steps = self._strip_steps()
        for i, cell in enumerate(self.strip_cells[1:]):
            if i < len(steps):  # T < STRIP_STEPS leaves some cells empty
                cell.t = steps[i]
                cell.view.set_images(self.x_t(steps[i])[None])
                cell.caption.setText(f"t = {shown_t(steps[i])}")
                cell.show()
            else:
                cell.t = None
                cell.hide()

    def _on_strip_clicked(self, cell: _StripCell) -> None:
        if cell.t is None:
            self._open_zoom(self.strip_cells[0].view, "x₀, the clean image", self._caption)
        else:
            self.state.set_t(cell.t)

    def _zoom_xt(self, index: int = 0) -> None:
        t = self._current_t()
        v = self._values
        caption = (
            f"t = {shown_t(t)}: x_t = {v['sqrt_alphas_cumprod'][t]:.3f}·x₀ + "
            f"{v['sqrt_one_minus_alphas_cumprod'][t]:.3f}·ε   ({self._caption if index == 0 else f'image {index + 1}'})"
        )
        self._open_zoom(self.big_view, f"x_t at t = {shown_t(t)}", caption, index)

    def _open_zoom(self, view: ImageGrid, title: str, caption: str, index: int = 0) -> None:
        if not 0 <= index < view.image_count():
            return
        if self._zoom is not None:
            self._zoom.close()
        self._zoom = ZoomDialog(view.image(index), title, caption, self)
        self._zoom.show()  # not modal: the user may keep scrubbing t

    # ---- where x₀ comes from -------------------------------------------------------------
    def _set_x0(self, x0: np.ndarray, caption: str) -> None:
        """Show these images, float (N, C, H, W); the first is the one the equation explains."""
        x0 = np.ascontiguousarray(x0, dtype=np.float32)
        if self._eps is None or self._eps.shape[1:] != x0.shape[1:]:
            self._eps = self._draw_noise(x0.shape)
        elif len(self._eps) != len(x0):
            # Keep the noise of the images still shown; only new images get new noise.
            extra = self._draw_noise((max(0, len(x0) - len(self._eps)),) + x0.shape[1:])
            self._eps = np.concatenate([self._eps[: len(x0)], extra])
        self._x0 = x0
        self._caption = caption
        self.source_label.setText(caption)
        self.source_label.setToolTip(f"Where x₀ comes from: {caption}")
        self._redraw()
        self._redraw_strip()
        self.imagesShown.emit()

    def _draw_noise(self, shape) -> np.ndarray:
        return self._rng.standard_normal(shape, dtype=np.float32)

    def new_noise(self) -> None:
        if self._x0 is None:
            return
        self._eps = self._draw_noise(self._x0.shape)
        self._redraw()
        self._redraw_strip()

    def another_sample(self) -> None:
        """Next image of the dataset pool (also leaves an opened image file)."""
        self._image_path = self._opening = None
        if self._pool is None:
            return  # still loading: the first image shows when it arrives
        n = len(self._pool.images)
        if n > 1:
            self._pool_index = (self._pool_index + int(self._rng.integers(1, n))) % n  # never the same one
        self._show_pool_image()

    def set_image_count(self, n: int) -> None:
        """Noise `n` dataset images side by side (one of IMAGE_COUNTS)."""
        n = int(n)
        if self.count_combo.currentData() != n:
            self.count_combo.setCurrentIndex(max(0, self.count_combo.findData(n)))  # comes back here
            return
        self._count = n
        self._image_path = self._opening = None  # like "Another sample", a dataset choice leaves an opened file
        if self._pool is not None:
            self._show_pool_image()

    def _show_pool_image(self) -> None:
        pool = self._pool
        i = self._pool_index
        label = pool.captions[i]
        n = min(self._count, len(pool.images))
        pick = [(i + k) % len(pool.images) for k in range(n)]
        self._set_x0(pool.images[pick], f"{pool.title} · {label}" if label else pool.title)

    def _request_pool(self, cfg: Optional[DataConfig] = None) -> None:
        self._pool = None
        cfg, seed = cfg or self.state.data, int(self._rng.integers(2**31))
        self._pool_loader.request(lambda: load_pool(cfg, seed))

    def _on_pool_loaded(self, pool: SamplePool) -> None:
        self._pool = pool
        self._pool_index = 0
        if pool.note:
            self.state.status.emit(pool.note)
        if self._image_path is None:
            self._show_pool_image()

    def _on_pool_failed(self, message: str) -> None:
        if self.state.data.dataset == "shapes":
            self.state.errorOccurred.emit(message)  # nothing left to fall back to
            return
        self.state.status.emit(f"{message} (showing the built-in shapes meanwhile)")
        self._request_pool(dataclasses.replace(self.state.data, dataset="shapes", root=None))

    def _on_data_changed(self) -> None:
        # Only what the images look like matters here: flips and the image limit change
        # training, not x₀, so they keep the image shown (and CIFAR-10 is not read again).
        looks = _looks(self.state.data)
        if looks == self._shown_looks:
            return
        self._shown_looks = looks
        # An opened file stays (or one being opened), read again at the new size; if that
        # fails, back to the dataset.
        path = self._opening or self._image_path
        if path is not None:
            self._read_file(path)
        self._request_pool()

    # ---- opening an image file -------------------------------------------------------------
    def open_image(self, path: Optional[str] = None) -> bool:
        """Use an image file as x₀. Without a path, ask with a file dialog. The file is read
        off the GUI thread: `imagesShown` when it is shown, `state.errorOccurred` if it cannot
        be read (the images shown stay). Returns whether reading started."""
        if path is None:
            patterns = " ".join(f"*{ext}" for ext in sorted(IMAGE_EXTENSIONS))
            path, _ = QFileDialog.getOpenFileName(
                self, "Open an image to noise", self.last_image_dir, f"Images ({patterns});;All files (*)"
            )
            if not path:
                return False
        self._read_file(str(path))
        self.last_image_dir = str(Path(path).parent)
        self.state.status.emit(f"Opening {Path(path).name}…")
        return True

    def _read_file(self, path: str) -> None:
        cfg = self.state.data
        self._opening = path
        self._file_loader.request(lambda: (path, cfg, load_image(path, cfg.image_size, cfg.channels).numpy()))

    def _on_file_loaded(self, result) -> None:
        path, cfg, x0 = result
        if path != self._opening or cfg != self.state.data:
            return  # left for a dataset image meanwhile, or read at a size no longer wanted
        self._opening = None
        self._image_path, self._image_cfg = path, cfg
        self._set_x0(x0[None], f"{Path(path).name} at {cfg.image_size}×{cfg.image_size} (the training size)")
        self.state.status.emit(f"Noising {Path(path).name}")

    def _on_file_failed(self, message: str) -> None:
        failed, self._opening = self._opening, None
        if failed is None:
            return
        self.state.errorOccurred.emit(message)
        if self._image_path is None:
            return  # dataset images shown: they stay
        if failed == self._image_path:  # the file shown was moved or changed: back to the dataset
            self._image_path = None
            if self._pool is not None:
                self._show_pool_image()
        elif self._image_cfg != self.state.data:
            # Another file failed, and the one shown was waiting to be read at new settings
            # (its request was replaced by the failed one): read it now.
            self._read_file(self._image_path)

    # ---- drag and drop: an image file (a checkpoint goes on to the main window) ---------------
    def dragEnterEvent(self, event) -> None:
        if dropped_file(event, IMAGE_EXTENSIONS):
            accept_as_copy(event)
        else:
            event.ignore()

    def dropEvent(self, event) -> None:
        path = dropped_file(event, IMAGE_EXTENSIONS)
        if path:
            accept_as_copy(event)
            self.open_image(path)
        else:
            event.ignore()

    # ---- closing -------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Wait for background image loads, so no QThread outlives the window."""
        self._pool_loader.shutdown()
        self._file_loader.shutdown()
        if self._zoom is not None:
            self._zoom.close()
