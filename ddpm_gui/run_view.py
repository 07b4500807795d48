"""What a training run shows while it goes: the right-hand side of the Training tab.

Step, epoch, images per second and time left; a progress bar and a line of text under it;
the loss curve, the loss by timestep and the latest preview grid (click an image to
enlarge it). `TrainingPanel` owns the run and tells this view what happened; the view
holds no run state beyond what it draws.
"""

from __future__ import annotations

from typing import Optional

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QSplitter, QVBoxLayout, QWidget

from ddpm_gui.image_view import ImageGrid, ZoomDialog
from ddpm_gui.loss_by_t import LossByTimestepPlot
from ddpm_gui.loss_plot import LossPlot

STEPS_FORMAT = "%v / %m steps"


def format_duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h {m:02d}m" if h else f"{m}m {s:02d}s"


PREVIEW_CAPTION = "Preview samples"


class RunView(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self._preview_step = 0
        self._continuing = False  # the run being prepared goes on from the one shown
        self._zoom: Optional[ZoomDialog] = None

        self.step_label = QLabel("Step –")
        self.epoch_label = QLabel("Epoch –")
        self.speed_label = QLabel("– images/s")
        self.eta_label = QLabel("ETA –")
        self.step_label.setToolTip("Optimizer steps done / steps this run will make.")
        self.epoch_label.setToolTip("Full passes over the training images.")
        self.speed_label.setToolTip("Training images processed per second (previews excluded).")
        self.eta_label.setToolTip("Time left at the average speed so far (previews excluded).")
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.progress.setFormat("")
        self.info_label = QLabel("Choose settings and press Start.")
        self.info_label.setWordWrap(True)
        stats = QHBoxLayout()
        for w in (self.step_label, self.epoch_label, self.speed_label, self.eta_label):
            stats.addWidget(w)
            stats.addSpacing(12)
        stats.addStretch(1)

        self.loss_plot = LossPlot()
        self.loss_by_t = LossByTimestepPlot()
        self.preview_grid = ImageGrid(placeholder="Samples from the model appear here at every preview.")
        self.preview_grid.setToolTip("Samples from the current model, always from the same starting noise x_T: click one to enlarge.")
        self.preview_grid.clicked.connect(self._zoom_preview)
        self.preview_caption = QLabel(PREVIEW_CAPTION)
        # Wrapped, so a long caption does not widen the column when the first preview comes.
        self.preview_caption.setWordWrap(True)
        preview_box = QWidget()
        pv = QVBoxLayout(preview_box)
        pv.setContentsMargins(0, 0, 0, 0)
        pv.addWidget(self.preview_caption)
        pv.addWidget(self.preview_grid, 1)

        bottom = QSplitter(Qt.Horizontal)
        bottom.addWidget(self.loss_by_t)
        bottom.addWidget(preview_box)
        bottom.setSizes([500, 360])
        plots = QSplitter(Qt.Vertical)
        plots.addWidget(self.loss_plot)
        plots.addWidget(bottom)
        plots.setSizes([380, 320])

        rv = QVBoxLayout(self)
        rv.setContentsMargins(0, 0, 0, 0)
        rv.addLayout(stats)
        rv.addWidget(self.progress)
        rv.addWidget(self.info_label)
        rv.addWidget(plots, 1)

    def say(self, text: str) -> None:
        """The line of text under the progress bar."""
        self.info_label.setText(text)

    def begin(self, timesteps: int, continuing: bool = False) -> None:
        """A run is being prepared: empty plots, a busy bar. `continuing`: the run shown
        goes on (the same model), so its curves and previews stay and are added to."""
        self._continuing = continuing and timesteps == self.loss_by_t.stats.timesteps
        if not continuing:
            self.loss_plot.clear()
            # Nothing of the last run stays: its previews were of another model.
            self.preview_grid.set_images(None)
            self.preview_caption.setText(PREVIEW_CAPTION)
            self.show_numbers(None, None, None, None, None)
        if not self._continuing:
            self.loss_by_t.reset(timesteps)
        self.progress.setRange(0, 0)  # busy until the trainer exists
        self.progress.setFormat("preparing…")
        self.say("Preparing the data and the model…")

    def show_loading(self, done, total, message: str) -> None:
        """Data being downloaded or read: bytes for a download, files for a folder."""
        if total:
            self.progress.setRange(0, 1000)
            self.progress.setValue(int(1000 * min(done / total, 1.0)))
            if "download" in message:
                self.progress.setFormat(f"{message}: {done / 2**20:.1f} / {total / 2**20:.1f} MB")
            else:
                self.progress.setFormat(f"{message}: %p%")
        else:
            self.progress.setRange(0, 0)
            self.progress.setFormat(message)
        self.say(message)

    def show_ready(self, info: dict, text: str) -> None:
        """The trainer exists (the worker's `ready`): steps to go, and what the run is."""
        self.progress.setRange(0, max(info["total_steps"], 1))
        self.progress.setValue(info["step"])
        # torch.compile works through the first step for a minute or so: say why nothing moves.
        self.progress.setFormat("compiling the network (about a minute)…" if info.get("compile") else STEPS_FORMAT)
        self.loss_plot.set_run_length(info["total_steps"] - info["step"])
        if not self._continuing:  # the same T and model: the recent losses by t still hold
            self.loss_by_t.reset(info["timesteps"], info["total_steps"] - info["step"])
        self.say(text)
        self.show_numbers(info["step"], info["total_steps"], None, None, None)

    def show_progress(self, p: dict) -> None:
        """A batch of steps from the worker's `progress`."""
        self.loss_plot.append(p["steps"], p["losses"])
        self.loss_by_t.add(p["t"], p["per_sample"], steps=len(p["steps"]))
        self.progress.setMaximum(max(p["total_steps"], 1))
        self.progress.setValue(p["step"])
        self.progress.setFormat(STEPS_FORMAT)
        self.show_numbers(p["step"], p["total_steps"], p["epoch"], p["images_per_sec"], p["eta_seconds"])

    def show_numbers(self, step, total, epoch, speed, eta) -> None:
        self.step_label.setText("Step –" if step is None else f"Step <b>{step:,}</b> / {total:,}")
        self.epoch_label.setText("Epoch –" if epoch is None else f"Epoch <b>{epoch}</b>")
        self.speed_label.setText("– images/s" if speed is None else f"<b>{speed:,.0f}</b> images/s")
        self.eta_label.setText("ETA –" if eta is None else f"ETA <b>{format_duration(eta)}</b>")

    def show_preview(self, step: int, images, how: str) -> None:
        self.preview_grid.set_images(images)
        self._preview_step = step
        self.preview_caption.setText(f"Preview samples at step {step:,}{how} · same starting noise every time")

    def end(self, text: str, steps_done: bool) -> None:
        """The run's thread ended: the plots take their last points; with `steps_done`
        the bar keeps the steps (no longer 'compiling'), else it is emptied."""
        self.loss_plot.flush()
        self.loss_by_t.flush()
        self.eta_label.setText("ETA –")  # nothing is left to wait for; the last speed stays
        if steps_done:
            self.progress.setFormat(STEPS_FORMAT)
        else:
            self.progress.setRange(0, 1)
            self.progress.setValue(0)
            self.progress.setFormat("")
        self.say(text)

    def _zoom_preview(self, index: int) -> None:
        if index >= self.preview_grid.image_count():
            return
        self._zoom = ZoomDialog(
            self.preview_grid.image(index),
            "Preview sample",
            f"Sample {index + 1} at step {self._preview_step:,}",
            self,
        )
        self._zoom.setAttribute(Qt.WA_DeleteOnClose)
        self._zoom.show()
