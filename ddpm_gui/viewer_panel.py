"""The Denoising tab: sample images and watch every reverse step, x_t beside x̂_0.

The model comes from the training run (`state.model`, a private copy the training panel
publishes) or from a checkpoint opened here (`load_for_sampling`, off the GUI thread).
Sampling is the engine's `sample_loop` (DDPM: all T steps; DDIM: fewer, with η) on a
`SamplingWorker`; frames appear while it runs and are kept in a `Trajectory`, so afterwards
a slider and Play scrub every step. Export writes the article's denoising GIF (one image
or the grid) or a PNG of the final samples, on a worker thread.
"""

from __future__ import annotations

import math
import os
from typing import Optional

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDoubleSpinBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ddpm_core import memory
from ddpm_core.export import save_png_grid, save_trajectory_gif, trajectory_frame_indices
from ddpm_core.model_io import load_for_sampling
from ddpm_gui.file_drop import OpensDroppedCheckpoints
from ddpm_gui.gif_dialog import GifOptions, GifOptionsDialog
from ddpm_gui.image_view import ImageGrid, ZoomDialog
from ddpm_gui.notation import shown_t
from ddpm_gui.sampling_worker import SampleRequest, SamplingWorker
from ddpm_gui.state import AppState, ModelSnapshot
from ddpm_gui.trajectory import Trajectory
from ddpm_gui.workers import TaskWorker

STOP_TIMEOUT_S = 60.0
EXPORT_WIDTH_PX = 512  # GIF/PNG exports are scaled up (whole pixels) to about this width


def _export_scale(columns: int, width: int) -> int:
    return max(1, min(8, EXPORT_WIDTH_PX // max(1, columns * width)))


class ViewerPanel(OpensDroppedCheckpoints, QWidget):
    samplingChanged = Signal(bool)  # a sampling thread started / ended
    controlsChanged = Signal()  # the buttons were enabled or disabled: the menus follow them
    sampled = Signal()  # a sampling run completed (all frames and the final x_0)
    frameShown = Signal(int)
    sourceChanged = Signal(str)
    exported = Signal(str)  # a GIF or PNG was written

    def __init__(self, state: AppState, parent=None):
        super().__init__(parent)
        self.state = state
        self._source: Optional[ModelSnapshot] = None
        self._from_checkpoint = False
        self._worker: Optional[SamplingWorker] = None
        self._tasks: list[TaskWorker] = []
        self._retired: list[SamplingWorker] = []
        self.trajectory: Optional[Trajectory] = None
        # The last run's trajectory while a new run has no frame yet: shown again if the
        # new run fails or is stopped before its first frame.
        self._previous: Optional[Trajectory] = None
        self._open_request = 0  # the latest checkpoint open asked for; earlier ones are dropped
        self._sampling_source = ""  # the model the run in progress samples from
        self._gif_options = GifOptions()
        self._zoom: Optional[ZoomDialog] = None
        self._play_timer = QTimer(self)
        self._play_timer.timeout.connect(self._play_tick)
        self._build()
        self.setAcceptDrops(True)  # a checkpoint dropped on the tab opens to sample from
        state.modelChanged.connect(self._on_state_model)
        if state.model is not None:
            self._use(state.model, from_checkpoint=False)
        self._update_controls()

    # ---- construction -----------------------------------------------------------------------
    def _build(self) -> None:
        self.source_label = QLabel("No model yet: train one on the Training tab, or open a checkpoint.")
        self.source_label.setWordWrap(True)
        self.use_training_button = QPushButton("Use training model")
        self.use_training_button.setToolTip("Sample from the model the Training tab published last (its EMA weights).")
        self.use_training_button.clicked.connect(self.use_training_model)
        self.open_button = QPushButton("Open checkpoint…")
        self.open_button.setToolTip("Sample from a saved checkpoint (DDPM Studio .safetensors, or the article's state_dict .pt).")
        self.open_button.clicked.connect(lambda: self.open_checkpoint())

        self.count = QSpinBox()
        self.count.setRange(1, 64)
        self.count.setValue(16)
        self.count.setToolTip("How many images to sample at once (one batch).")
        self.sampler = QComboBox()
        self.sampler.addItem("DDPM (all T steps)", "ddpm")
        self.sampler.addItem("DDIM (fewer steps)", "ddim")
        self.sampler.setToolTip(
            "DDPM: the paper's ancestral sampler, one step per timestep, adding fresh noise at each.\n"
            "DDIM: the same trained model on a subsequence of timesteps; η = 0 is deterministic."
        )
        self.steps = QSpinBox()
        self.steps.setRange(1, 1000)
        self.steps.setValue(50)
        self.steps.setToolTip("DDIM: how many of the T timesteps to visit (evenly spaced).")
        self.eta = QDoubleSpinBox()
        self.eta.setRange(0.0, 1.0)
        self.eta.setSingleStep(0.1)
        self.eta.setDecimals(2)
        self.eta.setToolTip("DDIM η: 0 adds no noise between steps (deterministic); 1 adds as much as DDPM.")
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setToolTip("Seed of the starting noise x_T (and of DDPM's per-step noise): the same seed gives the same images.")
        self.sample_button = QPushButton("Sample")
        self.sample_button.setToolTip("Run the reverse process from pure noise x_T to images x_0.")
        self.sample_button.clicked.connect(self.sample)
        self.stop_button = QPushButton("Stop")
        self.stop_button.clicked.connect(self.stop)
        self.sampler.currentIndexChanged.connect(self._update_controls)

        self.xt_grid = ImageGrid(placeholder="xₜ appears here while sampling.")
        self.x0_grid = ImageGrid(placeholder="The predicted x₀ appears here while sampling.")
        # Rich text with <i>: the hat of x̂ only renders in an italic font.
        self.xt_grid.setToolTip("<i>x</i><sub>t</sub>: the image at this step of the reverse process. "
                                "Click an image to enlarge it.")
        self.x0_grid.setToolTip(
            "<i>x̂</i><sub>0</sub>: the clean image the model predicts from <i>x</i><sub>t</sub> at this step,<br>"
            "<i>x̂</i><sub>0</sub> = (<i>x</i><sub>t</sub> − √(1−ᾱ<sub>t</sub>)·<i>ε̂</i>) / √ᾱ<sub>t</sub>. "
            "Click an image to enlarge it."
        )
        self.xt_grid.clicked.connect(lambda i: self._zoom_image("xₜ", i))
        self.x0_grid.clicked.connect(lambda i: self._zoom_image("predicted x₀", i))
        self.frame_label = QLabel("")
        self.frame_label.setAlignment(Qt.AlignCenter)

        self.play_button = QPushButton("Play")
        self.play_button.setToolTip("Play the denoising steps as an animation.")
        self.play_button.clicked.connect(self.toggle_play)
        self.slider = QSlider(Qt.Horizontal)
        self.slider.setRange(0, 0)
        self.slider.setToolTip("Scrub through the denoising steps: left is pure noise, right the final sample.")
        self.slider.valueChanged.connect(self.show_frame)
        self.speed = QSpinBox()
        self.speed.setRange(1, 60)
        self.speed.setValue(15)
        self.speed.setSuffix(" frames/s")
        self.speed.setToolTip("Playback speed.")
        self.speed.valueChanged.connect(self._update_play_interval)

        self.gif_button = QPushButton("Export GIF…")
        self.gif_button.setToolTip("Save the denoising animation (one image or the grid) as an animated GIF.")
        self.gif_button.clicked.connect(lambda: self.export_gif())
        self.png_button = QPushButton("Export PNG…")
        self.png_button.setToolTip("Save the final samples as a PNG grid.")
        self.png_button.clicked.connect(lambda: self.export_png())

        source_row = QHBoxLayout()
        source_row.addWidget(self.source_label, 1)
        source_row.addWidget(self.use_training_button)
        source_row.addWidget(self.open_button)

        settings = QHBoxLayout()
        for label, w in (("Images", self.count), ("Sampler", self.sampler), ("Steps", self.steps),
                         ("η", self.eta), ("Seed", self.seed)):
            lab = QLabel(label)
            lab.setToolTip(w.toolTip())
            settings.addWidget(lab)
            settings.addWidget(w)
            settings.addSpacing(8)
        settings.addStretch(1)
        settings.addWidget(self.sample_button)
        settings.addWidget(self.stop_button)

        grids = QHBoxLayout()
        for title, grid in (("<i>x</i><sub>t</sub> — the noisy image at this step", self.xt_grid),
                            ("<i>x̂</i><sub>0</sub> — the model's prediction of the clean image", self.x0_grid)):
            col = QVBoxLayout()
            head = QLabel(title)
            head.setAlignment(Qt.AlignCenter)
            col.addWidget(head)
            col.addWidget(grid, 1)
            grids.addLayout(col, 1)

        scrub = QHBoxLayout()
        scrub.addWidget(self.play_button)
        scrub.addWidget(self.slider, 1)
        scrub.addWidget(self.speed)

        export = QHBoxLayout()
        export.addStretch(1)
        export.addWidget(self.gif_button)
        export.addWidget(self.png_button)

        layout = QVBoxLayout(self)
        layout.addLayout(source_row)
        layout.addLayout(settings)
        layout.addLayout(grids, 1)
        layout.addWidget(self.frame_label)
        layout.addLayout(scrub)
        layout.addLayout(export)

    # ---- the model --------------------------------------------------------------------------
    def use_training_model(self) -> None:
        if self.state.model is not None:
            self._use(self.state.model, from_checkpoint=False)

    def _on_state_model(self) -> None:
        # A newer training model replaces the current one unless a checkpoint was chosen.
        if not self._from_checkpoint and self.state.model is not None:
            self._use(self.state.model, from_checkpoint=False)
        self._update_controls()

    def _use(self, snapshot: ModelSnapshot, from_checkpoint: bool) -> None:
        self._source = snapshot
        self._from_checkpoint = from_checkpoint
        self.steps.setMaximum(snapshot.schedule.num_timesteps)
        self._show_source()
        self._update_controls()
        self.sourceChanged.emit(snapshot.source)

    def _show_source(self) -> None:
        """The model Sample uses, and, when the images shown came from another (training
        went on, or another checkpoint was opened), which one they came from."""
        snapshot = self._source
        cfg, T = snapshot.config, snapshot.schedule.num_timesteps
        text = (
            f"Model: <b>{snapshot.source}</b> · {cfg.data.image_size}×{cfg.data.image_size}, "
            f"{cfg.model.channels} channel(s) · {cfg.schedule.name} schedule, T = {T}"
        )
        shown = self.trajectory
        if shown is not None and shown.filled and shown.source != snapshot.source:
            text += f"<br>The images below are from <b>{shown.source}</b>: press Sample for this model."
        self.source_label.setText(text)

    def open_checkpoint(self, path: Optional[str] = None) -> bool:
        """Load a checkpoint for sampling, off the GUI thread; `sourceChanged` when ready.

        Any file may be given: one that is not a checkpoint is reported in one line
        (`state.errorOccurred`) and the current model stays."""
        if path is None:
            path, _ = QFileDialog.getOpenFileName(
                self, "Open checkpoint to sample from", "",
                "Checkpoints (*.safetensors *.pt *.pth);;All files (*)",
            )
            if not path:
                return False
        path = str(path)
        self._open_request += 1
        request = self._open_request

        def load() -> tuple[int, ModelSnapshot]:
            loaded = load_for_sampling(path)
            weights = "EMA weights" if loaded.uses_ema else "live weights"
            return request, ModelSnapshot(
                model=loaded.model,
                schedule=loaded.schedule,
                config=loaded.config,
                source=f"{os.path.basename(loaded.source)}, step {loaded.step:,} ({weights})",
                step=loaded.step,
            )

        task = TaskWorker(load, name="open-checkpoint")
        task.succeeded.connect(self._on_checkpoint_loaded)
        task.failed.connect(self._on_task_failed)
        self.state.status.emit(f"Opening {path}…")
        self._run_task(task)
        return True

    def _on_checkpoint_loaded(self, result) -> None:
        request, snapshot = result
        if request != self._open_request:
            return  # another file was chosen (dropped, or opened from the menu) meanwhile
        self._use(snapshot, from_checkpoint=True)
        self.state.status.emit(f"Sampling from {snapshot.source}")

    # ---- sampling -------------------------------------------------------------------------------
    def is_sampling(self) -> bool:
        return self._worker is not None

    def sample(self) -> bool:
        """Start sampling with the current settings; False when there is no model or a run is on."""
        if self._worker is not None:
            return False
        src = self._source
        if src is None:
            self.state.status.emit("No model to sample from: train one or open a checkpoint.")
            return False
        cfg = src.config
        T = src.schedule.num_timesteps
        if not self._frames_fit(T, cfg):
            return False
        self.pause_playback()
        request = SampleRequest(
            model=src.model,
            schedule=src.schedule,
            count=self.count.value(),
            channels=cfg.model.channels,
            image_size=cfg.data.image_size,
            sampler=self.sampler.currentData(),
            steps=min(self.steps.value(), T),
            eta=self.eta.value(),
            seed=self.seed.value(),
            precision=cfg.train.precision,
        )
        worker = SamplingWorker(request)
        worker.begun.connect(self._on_begun)
        worker.frames.connect(self._on_frames)
        worker.completed.connect(self._on_completed)
        worker.failed.connect(self._on_failed)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self._previous, self.trajectory = self.trajectory, None
        self._sampling_source = src.source
        worker.start()
        self.frame_label.setText("Sampling…")
        self._update_controls()
        self.samplingChanged.emit(True)
        return True

    def _frames_fit(self, T: int, cfg) -> bool:
        """Every step of every image is kept for scrubbing: refuse (one line) a run whose
        frames would take more than half the free memory, before it fills it."""
        steps = T if self.sampler.currentData() == "ddpm" else min(self.steps.value(), T)
        count, size, channels = self.count.value(), cfg.data.image_size, cfg.model.channels
        need = Trajectory.nbytes(steps, count, size, size, channels)
        free = memory.over_share(need)
        if free is None:
            return True
        self.state.errorOccurred.emit(
            f"keeping all {steps:,} steps of {count} images at {size}×{size} for the viewer would take "
            f"{memory.human_bytes(need)} of memory, more than half of the {memory.human_bytes(free)} free: "
            "sample fewer images, or use DDIM with fewer steps"
        )
        return False

    def stop(self) -> None:
        if self._worker is not None:
            self._worker.stop()

    def _current(self) -> bool:
        return self._worker is not None and self.sender() is self._worker

    def _on_begun(self, info: dict) -> None:
        if not self._current():
            return
        self.trajectory = Trajectory(info["num_steps"], info["count"], info["height"], info["width"], info["channels"])
        self.trajectory.source = self._sampling_source
        self.slider.blockSignals(True)
        self.slider.setRange(0, 0)
        self.slider.blockSignals(False)

    def _on_frames(self, batch: dict) -> None:
        if not self._current() or self.trajectory is None:
            return
        self.trajectory.add_steps(batch["first"], batch["x_t"], batch["x0"], batch["t"], batch["noise"])
        if self._previous is not None or self.trajectory.filled == len(batch["x_t"]):  # its first frames
            self._previous = None  # the new run is on screen now
            self._show_source()
        self._follow_live()

    def _on_completed(self, final) -> None:
        if not self._current() or self.trajectory is None:
            return
        self.trajectory.finish(final)
        self._follow_live()

    def _follow_live(self) -> None:
        last = self.trajectory.filled - 1
        self.slider.blockSignals(True)
        self.slider.setRange(0, max(last, 0))
        self.slider.setValue(last)
        self.slider.blockSignals(False)
        self.show_frame(last)

    def _on_failed(self, message: str) -> None:
        if self._current():
            self.state.errorOccurred.emit(message)

    def _on_finished(self) -> None:
        worker = self.sender()
        if worker is self._worker and worker is not None:
            self._sampling_ended()
        elif worker in self._retired:
            self._retired.remove(worker)

    def _sampling_ended(self, retire: bool = False) -> None:
        worker, self._worker = self._worker, None
        if retire and worker is not None:
            # Kept until its last queued signal is delivered (sender() must stay valid).
            self._retired.append(worker)
        traj = self.trajectory
        failed = worker is not None and worker.error is not None  # the dialog says why
        if traj is not None and traj.complete:
            self.state.status.emit(f"Sampled {traj.count} images in {traj.num_steps} steps")
            self.sampled.emit()
        elif traj is not None and traj.filled:
            self.frame_label.setText(self.frame_label.text() + (" · failed" if failed else " · stopped"))
        elif self._previous is not None and self._previous.filled:  # no frame came: the last run is still there to see and export
            self._show_previous_run("Sampling failed" if failed else "Stopped before the first step")
        else:
            self.frame_label.setText("Sampling failed." if failed else "Stopped.")
        self._previous = None
        if self._source is not None:
            self._show_source()
        self._update_controls()
        self.samplingChanged.emit(False)

    def _show_previous_run(self, what: str) -> None:
        self.trajectory, self._previous = self._previous, None
        last = self.trajectory.filled - 1
        self.slider.blockSignals(True)
        self.slider.setRange(0, max(last, 0))
        self.slider.blockSignals(False)
        self.show_frame(min(self.slider.value(), last))
        self.frame_label.setText(f"{what}: showing the previous run again. " + self.frame_label.text())

    # ---- showing and scrubbing ------------------------------------------------------------------
    def frame_count(self) -> int:
        return 0 if self.trajectory is None else self.trajectory.filled

    def show_frame(self, k: int) -> None:
        traj = self.trajectory
        if traj is None or not 0 <= k < traj.filled:
            return
        if self.slider.value() != k:
            self.slider.blockSignals(True)
            self.slider.setValue(k)
            self.slider.blockSignals(False)
        self.xt_grid.set_images(traj.x_t[k])
        self.x0_grid.set_images(traj.x0[k])
        n = traj.num_steps
        if traj.t[k] < 0:
            self.frame_label.setText(f"Final sample <i>x</i><sub>0</sub> after {n} steps · noise level 0")
        else:
            self.frame_label.setText(
                f"Step {k + 1} / {n} · t = {shown_t(traj.t[k])} · noise level √(1−ᾱ<sub>t</sub>) = {traj.noise[k]:.3f}"
            )
        self.frameShown.emit(k)

    def toggle_play(self) -> None:
        if self._play_timer.isActive():
            self.pause_playback()
        else:
            self.play()

    def play(self) -> None:
        if self.frame_count() < 2 or self._worker is not None:
            return
        if self.slider.value() >= self.frame_count() - 1:
            self.show_frame(0)  # at the end: play from the start
        self._update_play_interval()
        self._play_timer.start()
        self.play_button.setText("Pause")

    def pause_playback(self) -> None:
        self._play_timer.stop()
        self.play_button.setText("Play")

    def is_playing(self) -> bool:
        return self._play_timer.isActive()

    def _update_play_interval(self) -> None:
        self._play_timer.setInterval(int(1000 / self.speed.value()))

    def _play_tick(self) -> None:
        k = self.slider.value() + 1
        if k >= self.frame_count():
            self.pause_playback()
            return
        self.show_frame(k)

    def _zoom_image(self, which: str, index: int) -> None:
        traj = self.trajectory
        grid = self.xt_grid if which == "xₜ" else self.x0_grid
        if traj is None or index >= grid.image_count():
            return
        k = self.slider.value()
        when = "final sample" if traj.t[k] < 0 else f"step {k + 1}/{traj.num_steps}, t = {shown_t(traj.t[k])}"
        self._zoom = ZoomDialog(grid.image(index), f"{which} — image {index + 1}", f"Image {index + 1} · {when}", self)
        self._zoom.setAttribute(Qt.WA_DeleteOnClose)
        self._zoom.show()

    # ---- export ---------------------------------------------------------------------------------
    def export_gif(
        self,
        path: Optional[str] = None,
        *,
        index: Optional[int] = None,
        frames: str = "x_t",
        stride: int = 1,
        duration_ms: int = 40,
        loop: bool = True,
    ) -> bool:
        """Write the denoising animation; with no path, ask for options and a file name.

        Asynchronous: `exported(path)` when written, `state.errorOccurred` on failure.
        """
        traj = self.trajectory
        if traj is None or not traj.complete:
            self.state.status.emit("Sample first: the GIF shows a finished denoising run.")
            return False
        if path is None:
            dialog = GifOptionsDialog(traj.count, traj.frame_count, self._gif_options, self)
            if dialog.exec() != QDialog.Accepted:
                return False
            self._gif_options = opts = dialog.options()
            path = self._ask_path("Export denoising GIF", "denoising.gif", "GIF animation (*.gif)", ".gif")
            if not path:
                return False
            index, frames, stride, duration_ms, loop = opts.index, opts.frames, opts.stride, opts.duration_ms, opts.loop
        if index is not None and not 0 <= index < traj.count:
            self.state.errorOccurred.emit(f"image {index + 1} does not exist: choose 1 to {traj.count}")
            return False
        stack = traj.x_t if frames == "x_t" else traj.x0
        keep = trajectory_frame_indices(traj.frame_count, stride)
        columns = 1 if index is not None else math.ceil(math.sqrt(traj.count))
        scale = _export_scale(columns, stack.shape[3])
        path = str(path)

        def write() -> str:
            # On the task's thread: copying a long run's frames took the window 1.7 s. The
            # array is a finished trajectory's; a new sampling run makes a new one.
            chosen = stack[keep] if index is None else stack[keep, index : index + 1]
            floats = Trajectory.to_model_range(chosen)
            return str(save_trajectory_gif(
                list(floats), path, stride=1, duration_ms=duration_ms, loop=0 if loop else None, scale=scale
            ))

        self._start_export(write, f"Writing {len(keep)}-frame GIF…")
        return True

    def export_png(self, path: Optional[str] = None) -> bool:
        """Write the final samples as a PNG grid (asynchronous, like export_gif)."""
        traj = self.trajectory
        if traj is None or not traj.complete:
            self.state.status.emit("Sample first: the PNG shows the final samples.")
            return False
        if path is None:
            path = self._ask_path("Export samples as PNG", "samples.png", "PNG image (*.png)", ".png")
            if not path:
                return False
        final = traj.final().copy()
        scale = _export_scale(math.ceil(math.sqrt(traj.count)), final.shape[2])
        path = str(path)

        def write() -> str:
            return str(save_png_grid(Trajectory.to_model_range(final), path, scale=scale))

        self._start_export(write, "Writing PNG…")
        return True

    def _ask_path(self, title: str, default: str, filters: str, suffix: str) -> Optional[str]:
        path, _ = QFileDialog.getSaveFileName(self, title, default, filters)
        if path and not os.path.splitext(path)[1]:
            path += suffix
        return path or None

    def _start_export(self, write, message: str) -> None:
        task = TaskWorker(write, name="export")
        task.succeeded.connect(self._on_exported)
        task.failed.connect(self._on_task_failed)
        self.state.status.emit(message)
        self._run_task(task)

    def _on_task_failed(self, message: str) -> None:
        # A method of this QObject, so it runs on the GUI thread (PySide calls a plain
        # callable connected to a worker's signal on the worker's thread).
        self.state.errorOccurred.emit(message)

    def _on_exported(self, path: str) -> None:
        self.state.status.emit(f"Saved {path}")
        self.exported.emit(path)

    # ---- threads --------------------------------------------------------------------------------
    def _run_task(self, task: TaskWorker) -> None:
        self._tasks.append(task)
        task.finished.connect(self._on_task_finished)
        task.start()
        self._update_controls()

    def _on_task_finished(self) -> None:
        task = self.sender()
        self._tasks = [t for t in self._tasks if t is not task]
        self._update_controls()

    def shutdown(self) -> bool:
        """Stop sampling and finish exports before the window closes."""
        self.pause_playback()
        if self._worker is not None:
            worker = self._worker
            worker.stop_and_wait(STOP_TIMEOUT_S) or worker.wait(None)
            self._sampling_ended(retire=True)
        for task in list(self._tasks):
            task.wait(None)  # kept in _tasks until their `finished` is delivered
        return True

    def _update_controls(self) -> None:
        running = self._worker is not None
        has_model = self._source is not None
        ddim = self.sampler.currentData() == "ddim"
        complete = self.trajectory is not None and self.trajectory.complete
        self.sample_button.setEnabled(has_model and not running)
        self.stop_button.setEnabled(running)
        self.steps.setEnabled(ddim and not running)
        self.eta.setEnabled(ddim and not running)
        for w in (self.count, self.sampler, self.seed):
            w.setEnabled(not running)
        self.use_training_button.setEnabled(self.state.model is not None and self._source is not self.state.model)
        self.open_button.setEnabled(not any(t.name == "open-checkpoint" for t in self._tasks))
        self.play_button.setEnabled(not running and self.frame_count() > 1)
        self.gif_button.setEnabled(complete and not running)
        self.png_button.setEnabled(complete and not running)
        self.controlsChanged.emit()
