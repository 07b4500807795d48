"""The Training tab: set up a run, start / pause / resume / stop it, and watch it learn.

The engine's `Trainer.steps()` runs on a `TrainingWorker` thread; this panel only shows
what the worker reports, in a `RunView` (run_view.py: the loss curve, loss by timestep,
step / epoch / images per second / ETA, and the preview grids). At every preview, pause
and stop the worker publishes a copy of the EMA model to `state.model`, which the
Denoising tab samples from.

Checkpoints: Save writes the trainer's full state (between two steps when a run is live);
Open (or a file dropped on the tab) reads a checkpoint and switches the panel to "continue"
mode, in which Start resumes that run with `Trainer.from_checkpoint`, possibly with more
steps or another learning rate. A live run also autosaves every few minutes (see
`autosave_files`), and File → "Recover autosave…" opens one after a crash.

When training ends with an error the panel says why and what to try: a NaN loss (the run's
weights are then never saved, so earlier files stay as they were), or a batch too large
for the memory (with a button that sets the suggested batch size).
"""

from __future__ import annotations

import copy
import os
import time
from pathlib import Path
from typing import Callable, Optional

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from ddpm_core.checkpoint import CHECKPOINT_SUFFIX
from ddpm_core.config import RunConfig
from ddpm_core.errors import OutOfMemory
from ddpm_core.training import Trainer, read_training_checkpoint
from ddpm_gui import autosave_files
from ddpm_gui.file_drop import OpensDroppedCheckpoints
from ddpm_gui.run_view import RunView
from ddpm_gui.state import AppState
from ddpm_gui.training_form import TrainingForm
from ddpm_gui.training_worker import SaveResult, TrainingWorker
from ddpm_gui.wheel_scrolls import wheel_scrolls_form
from ddpm_gui.workers import TaskWorker

STOP_TIMEOUT_S = 120.0  # a step with a preview on a slow CPU can take a while; never abandon it


class TrainingPanel(OpensDroppedCheckpoints, QWidget):
    runningChanged = Signal(bool)  # a training thread started (True) or ended (False)
    controlsChanged = Signal()  # the buttons were enabled or disabled: the menus follow them
    progressed = Signal(int)  # the latest step shown
    previewShown = Signal(int)  # the step of the preview grid just shown
    pausedChanged = Signal(bool)  # the worker has actually paused (True) or resumed (False)
    checkpointSaved = Signal(str)
    checkpointOpened = Signal(str)
    autosaved = Signal(str, int)  # the run's autosave file was written: path, step

    def __init__(self, state: AppState, parent=None):
        super().__init__(parent)
        self.state = state
        self._worker: Optional[TrainingWorker] = None
        self._trainer = None  # the last run's trainer, kept for saving after it ends
        self._tasks: list[TaskWorker] = []  # checkpoint loads and saves in flight
        # Workers let go of early (shutdown) are kept until their last queued signal has
        # been delivered: Qt's sender() must never point at a deleted object.
        self._retired: list[TrainingWorker] = []
        self._continue = None  # (Checkpoint, RunConfig) while continuing an opened checkpoint
        self._ended_run = None  # the ended run's Trainer, while it is the one being continued
        self._step = 0  # the latest step reported
        self._saved_step = 0  # the step the last save (or the opened checkpoint) holds
        self._discarded_step = 0  # progress up to here was let go of on purpose (closing without saving)
        self._last_path = ""
        self._after_save: Optional[Callable[[], object]] = None  # what waits for a save of the ended run
        self._open_request = 0  # the latest checkpoint open asked for; earlier ones are dropped
        self._paused = False
        self._run_batch_size = 0  # the live run's batch size, for an out-of-memory suggestion
        self._run_info: dict = {}  # the live run's description, from its worker's `ready`
        # Autosave: the folder (None: autosave_files.autosave_folder()) and the clock the
        # worker's AutosaveClock reads; tests point both elsewhere.
        self.autosave_dir: Optional[Path] = None
        self.autosave_clock: Callable[[], float] = time.monotonic
        self._autosave_path: Optional[Path] = None  # the live run's autosave file
        self._autosaved: Optional[tuple[str, int]] = None  # (path, step) of its last autosave
        self._build()
        self.setAcceptDrops(True)  # a checkpoint dropped on the tab opens to continue training
        self.form.changed.connect(self._update_controls)
        self._update_controls()

    # ---- construction --------------------------------------------------------------------
    def _build(self) -> None:
        self.form = TrainingForm(self.state)

        self.start_button = QPushButton("Start")
        self.start_button.setToolTip("Start training with these settings (or continue the opened checkpoint).")
        self.pause_button = QPushButton("Pause")
        self.pause_button.setToolTip("Pause after the current step; the Denoising tab can sample the model meanwhile.")
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip("Go on training from where it paused.")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("End training after the current step. The model stays available to sample and save.")
        self.start_button.clicked.connect(self.start)
        self.pause_button.clicked.connect(self.pause)
        self.resume_button.clicked.connect(self.resume)
        self.stop_button.clicked.connect(self.stop)
        self.hint = QLabel("")
        self.hint.setWordWrap(True)
        self.hint.setObjectName("validationHint")
        self.hint.setStyleSheet("color: #d9363e;")
        # Shown after running out of memory: one click sets the batch size the message suggests.
        self.suggestion_button = QPushButton("")
        self.suggestion_button.setVisible(False)
        self.suggestion_button.clicked.connect(self._apply_suggestion)
        self._suggested_batch: Optional[int] = None

        self.save_button = QPushButton("Save checkpoint…")
        self.save_button.setToolTip("Save weights, EMA weights, optimizer and RNG state: training can continue exactly from it.")
        self.open_button = QPushButton("Open checkpoint…")
        self.open_button.setToolTip("Open a checkpoint to continue training it (more steps, another learning rate).")
        self.save_button.clicked.connect(lambda: self.save_checkpoint())
        self.open_button.clicked.connect(lambda: self.open_checkpoint())
        self.continue_label = QLabel("")
        self.continue_label.setWordWrap(True)
        self.new_run_button = QPushButton("New run instead")
        self.new_run_button.setToolTip("Forget the opened checkpoint: Start begins a new model from scratch.")
        self.new_run_button.clicked.connect(self.new_run_instead)
        self.continue_run_button = QPushButton("Continue this run")
        self.continue_run_button.setToolTip(
            "Train the model that just stopped further, from its last step (more steps, another\n"
            "learning rate): the weights, optimizer and random state go on as they were."
        )
        self.continue_run_button.clicked.connect(self.continue_last_run)
        self.continue_run_button.setVisible(False)
        self.autosave_label = QLabel("")
        self.autosave_label.setWordWrap(True)
        self.autosave_label.setTextInteractionFlags(Qt.TextSelectableByMouse)  # the path can be copied

        buttons = QHBoxLayout()
        for b in (self.start_button, self.pause_button, self.resume_button, self.stop_button):
            buttons.addWidget(b)
        ckpt_box = QGroupBox("Checkpoint")
        ck = QVBoxLayout(ckpt_box)
        row = QHBoxLayout()
        row.addWidget(self.save_button)
        row.addWidget(self.open_button)
        ck.addLayout(row)
        ck.addWidget(self.continue_label)
        ck.addWidget(self.new_run_button)
        ck.addWidget(self.autosave_label)

        left = QWidget()
        lv = QVBoxLayout(left)
        lv.addWidget(self.form)
        lv.addWidget(ckpt_box)
        lv.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidget(left)
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        scroll.setMinimumWidth(340)
        self.settings_area = scroll
        wheel_scrolls_form(scroll)
        controls = QWidget()
        cv = QVBoxLayout(controls)
        cv.setContentsMargins(0, 0, 0, 0)
        cv.addWidget(scroll, 1)
        cv.addWidget(self.hint)
        cv.addWidget(self.suggestion_button)
        cv.addWidget(self.continue_run_button)
        cv.addLayout(buttons)

        self.view = RunView()  # what the run shows: numbers, progress, plots, previews

        layout = QHBoxLayout(self)
        layout.addWidget(controls)
        layout.addWidget(self.view, 1)

    # ---- public API ----------------------------------------------------------------------
    def is_running(self) -> bool:
        """True from Start until the training thread has ended (paused counts as running)."""
        return self._worker is not None

    def is_paused(self) -> bool:
        return self._worker is not None and self._paused

    def current_step(self) -> int:
        return self._step

    @property
    def trainer(self):
        """The last run's Trainer once its thread has ended (None while one runs)."""
        return self._trainer if self._worker is None else None

    def config(self) -> RunConfig:
        return self.form.config()

    def set_config(self, cfg: RunConfig) -> None:
        self.form.set_config(cfg)

    def start(self) -> bool:
        """Start a new run, or continue the opened checkpoint. False if it cannot start."""
        if self._worker is not None:
            return False
        cfg, reason = self.form.check()
        if cfg is None:
            self._update_controls()
            self.state.status.emit(f"Cannot start: {reason}")
            return False
        ended_run = self._ended_run  # continuing the run that ended here: nothing is let go of
        if ended_run is None and not self._settle_unsaved("starting a new run", self.start):
            return False
        self.state.set_schedule(cfg.schedule.name, cfg.schedule.timesteps)

        if self._continue is not None:
            ckpt = self._continue[0]
            # The run that ended here has its images in memory: read again only if they changed.
            images = ended_run.dataset if ended_run is not None and ended_run.config.data == cfg.data else None

            def overrides(c: RunConfig) -> None:
                # Everything but the model may change when a run continues.
                c.schedule, c.data, c.train = cfg.schedule, cfg.data, cfg.train

            def make(progress):
                return Trainer.from_checkpoint(ckpt, images=images, progress=progress, overrides=overrides)

            self._step = ckpt.step
            if ended_run is None:  # an opened file holds the steps so far; an ended run's are not saved
                self._saved_step = self._discarded_step = ckpt.step
        else:

            def make(progress):
                return Trainer(cfg, progress=progress)

            self._step = self._saved_step = self._discarded_step = 0
        self._autosave_path = autosave_files.path_for_run(self._autosave_folder())
        self._autosaved = None
        self._run_batch_size = 0
        self._show_suggestion(None)

        worker = TrainingWorker(make, autosave_path=self._autosave_path, clock=self.autosave_clock)
        worker.loading.connect(self._on_loading)
        worker.ready.connect(self._on_ready)
        worker.progress.connect(self._on_progress)
        worker.preview.connect(self._on_preview)
        worker.snapshot.connect(self._on_snapshot)
        worker.saved.connect(self._on_saved)
        worker.autosaved.connect(self._on_autosaved)
        worker.autosaveFailed.connect(self._on_save_failed)
        worker.requestFailed.connect(self._on_save_failed)
        worker.pausedChanged.connect(self._on_paused_changed)
        worker.failed.connect(self._on_failed)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self._trainer = None
        self._paused = False
        self.form.setEnabled(False)  # a live run's settings are fixed
        self.view.begin(cfg.schedule.timesteps, continuing=ended_run is not None)
        worker.start()
        minutes = cfg.train.autosave_minutes
        self.autosave_label.setText(
            f"Autosave every {minutes:g} min to {self._autosave_path.parent}" if minutes > 0 else "Autosave is off."
        )
        self.autosave_label.setToolTip(str(self._autosave_path))
        self.state.status.emit("Training: preparing data and model…")
        self._update_controls()
        self.runningChanged.emit(True)
        return True

    def pause(self) -> None:
        if self._worker is not None and not self._paused:
            self._paused = True
            self._worker.pause()
            self.view.say("Pausing after the current step…")
            self._update_controls()

    def resume(self) -> None:
        if self._worker is not None and self._paused:
            self._paused = False
            self._worker.resume()
            self._update_controls()

    def stop(self) -> None:
        """End training after the current step (returns at once; see runningChanged)."""
        if self._worker is not None:
            self._worker.stop()
            self.view.say("Stopping after the current step…")
            self._update_controls()

    def save_checkpoint(self, path: Optional[str] = None) -> bool:
        """Save the run's full state; asynchronous, `checkpointSaved(path)` when written."""
        if self._worker is None and self._trainer is None:
            self.state.status.emit("Nothing to save yet: train a model first.")
            return False
        if self._diverged():
            self.state.errorOccurred.emit(
                "nothing to save: this run diverged (NaN loss), so its weights are broken; "
                "the checkpoints saved before are kept — start again with a lower learning rate"
            )
            return False
        if path is None:
            path = self.choose_save_path()
            if not path:
                return False
        path = str(path)
        if self._worker is not None and self._worker.request_save(path) is not None:
            self.state.status.emit(f"Saving checkpoint after the current step: {path}")
            return True
        if self._trainer is None:
            self.state.status.emit("Nothing to save yet: the run has not started training.")
            return False
        self._start_save_task(path)
        return True

    def _start_save_task(self, path: str) -> TaskWorker:
        """Save the ended run's trainer on a task thread (`checkpointSaved` or an error)."""
        trainer = self._trainer
        step = int(trainer.step)
        task = TaskWorker(lambda: (str(trainer.save(path)), step, trainer), name="save-checkpoint")
        task.succeeded.connect(self._on_saved_task)
        task.failed.connect(self._on_save_failed)
        self._run_task(task)
        return task

    def open_checkpoint(self, path: Optional[str] = None, start_in: Optional[str] = None) -> bool:
        """Read a checkpoint (off the GUI thread) and set up to continue training it.

        Any file may be given: one that is not a checkpoint is reported in one line
        (`state.errorOccurred`) and the panel stays as it was."""
        if self._worker is not None:
            self.state.status.emit("Stop training before opening a checkpoint.")
            return False
        if not self._settle_unsaved("opening a checkpoint", lambda: self.open_checkpoint(path, start_in)):
            return False
        if path is None:
            path, _ = QFileDialog.getOpenFileName(
                self, "Open checkpoint to continue training", start_in or self._last_path,
                f"DDPM Studio checkpoints (*{CHECKPOINT_SUFFIX});;All files (*)",
            )
            if not path:
                return False
        path = str(path)
        self._open_request += 1
        request = self._open_request
        task = TaskWorker(lambda: (request, *read_training_checkpoint(path)), name="open-checkpoint")
        task.succeeded.connect(self._on_checkpoint_loaded)
        task.failed.connect(self._on_task_failed)
        self.open_button.setEnabled(False)
        self.state.status.emit(f"Opening {path}…")
        self._run_task(task)
        return True

    def recover_autosave(self) -> bool:
        """Choose an autosave (the file dialog opens in the autosave folder) to continue it."""
        return self.open_checkpoint(start_in=str(self._autosave_folder()))

    def _autosave_folder(self) -> Path:
        return Path(self.autosave_dir) if self.autosave_dir is not None else autosave_files.autosave_folder()

    def new_run_instead(self) -> None:
        """Forget the checkpoint or run being continued: Start trains a new model with the
        settings shown, for as long as they say (not up to the continued run's step count)."""
        if self._continue is not None:
            steps = self._continue[1].train.steps
            self.leave_continue_mode()
            if steps is not None:
                self.form.set_steps(steps)
        self.state.status.emit("Start trains a new model from step 0")

    def leave_continue_mode(self) -> None:
        self._continue = None
        self._ended_run = None
        self.form.min_steps = 0
        self.form.lock_model(False)
        self.continue_label.setText("")
        self._update_controls()

    def _live_trainer(self):
        """The trainer of the run shown: the live one (None while it is being built) or the last."""
        return self._worker.trainer if self._worker is not None else self._trainer

    def _diverged(self) -> bool:
        trainer = self._live_trainer()
        return trainer is not None and bool(trainer.diverged)

    def has_unsaved_progress(self) -> bool:
        """Steps trained since the last save that are worth keeping (a diverged run's are not)."""
        if (self._worker is None and self._trainer is None) or self._diverged():
            return False
        return self._step > max(self._saved_step, self._discarded_step)

    def shutdown(self, ask: bool = True) -> bool:
        """Stop training (within a step) before the window closes; False: keep the window.

        With unsaved progress, asks (when `ask`) Save / Discard / Cancel. Save writes the
        checkpoint on the worker thread between two steps, then training stops; if that
        save fails, its message is shown and False keeps the window open to try again.
        Without asking, unsaved progress is let go of, and not asked about again.
        """
        save_to, hidden = None, False
        if ask and self.has_unsaved_progress():
            answer = self.ask_save_before_close()
            if answer == "cancel":
                return False
            if answer == "yes":
                save_to = self.choose_save_path()
                if not save_to:
                    return False
        result: Optional[SaveResult] = None
        if self._worker is not None:
            worker = self._worker
            if save_to:
                result = worker.request_save(save_to)  # served before the loop ends
            # A step ends before the thread does: the first one, which may compile the
            # network for a minute, can take long. The window goes away meanwhile rather
            # than stand frozen, and comes back only if the user is to decide again.
            if not worker.stop_and_wait(0.5):
                self.window().hide()
                hidden = True
                worker.stop_and_wait(STOP_TIMEOUT_S) or worker.wait(None)
            self._worker_ended(worker, retire=True)
        for task in list(self._tasks):
            task.wait(None)  # kept in _tasks until their `finished` is delivered
        if save_to and result is None:  # no live loop to save from: a task thread does it
            result = self._save_and_wait(save_to)
        if not save_to:
            self._discarded_step = self._step
            return True
        # The worker's requestFailed / the task's failed shows the message once the
        # window is back in its event loop.
        if result is None or result.error or result.step is None:
            if hidden:
                self.window().show()
            return False
        self._saved_step = result.step
        return True

    def _save_and_wait(self, path: str) -> Optional[SaveResult]:
        """Save the ended run's trainer on a task thread and wait for it (closing only)."""
        if self._trainer is None:
            return None
        step = int(self._trainer.step)
        task = self._start_save_task(path)
        task.wait(None)
        return SaveResult(path, done=True, step=None if task.error else step, error=task.error)

    # ---- dialogs (methods, so tests can replace them) --------------------------------
    def ask_save_before_close(self) -> str:
        """'yes' (Save), 'no' (Discard) or 'cancel' (keep the window, training goes on)."""
        cancel = "Cancel keeps training." if self._worker is not None else "Cancel keeps the window open."
        return self._ask_save(
            f"Training has progress that is not saved (step {self._step:,}).\n\n"
            f"Save a checkpoint before closing? {cancel}"
        )

    def ask_save_before(self, doing: str) -> str:
        """'yes' (Save, then go on), 'no' (Discard and go on) or 'cancel' before `doing`
        replaces an ended run whose last steps are not saved."""
        return self._ask_save(
            f"The last run has progress that is not saved (step {self._step:,}).\n\n"
            f"Save a checkpoint before {doing}? Discard lets it go; Cancel keeps it."
        )

    def _ask_save(self, text: str) -> str:
        answer = QMessageBox.question(
            self, "Save checkpoint?", text,
            QMessageBox.Save | QMessageBox.Discard | QMessageBox.Cancel, QMessageBox.Save,
        )
        return {QMessageBox.Save: "yes", QMessageBox.Discard: "no"}.get(answer, "cancel")

    def choose_save_path(self) -> Optional[str]:
        default = self._last_path or os.path.join(os.getcwd(), f"ddpm_step_{self._step}{CHECKPOINT_SUFFIX}")
        path, _ = QFileDialog.getSaveFileName(
            self, "Save checkpoint", default, f"DDPM Studio checkpoints (*{CHECKPOINT_SUFFIX})"
        )
        if path and not os.path.splitext(path)[1]:
            path += CHECKPOINT_SUFFIX
        return path or None

    # ---- worker signals (GUI thread) -----------------------------------------------------
    def _current(self) -> bool:
        """Signals of a worker this panel has already let go of are ignored."""
        return self._worker is not None and self.sender() is self._worker

    def _on_loading(self, done, total, message: str) -> None:
        if self._current():
            self.view.show_loading(done, total, message)

    def _on_ready(self, info: dict) -> None:
        if not self._current():
            return
        self._step = info["step"]
        self._run_batch_size = info["batch_size"]
        self._run_info = info
        text = self._describe_run()
        self.view.show_ready(info, text)
        self.state.status.emit(f"Training: {text}")

    def _describe_run(self) -> str:
        info = self._run_info
        return (
            f"{info['dataset']} · {info['parameters']:,} parameters · batch {info['batch_size']} · "
            f"T = {info['timesteps']} · {info['device']}"
        )

    def _on_progress(self, p: dict) -> None:
        if not self._current():
            return
        if self._continue is not None:
            # The checkpoint is now a live run. Not before its first step: a run that fails
            # or is stopped before it trains leaves Start continuing the same checkpoint.
            self.leave_continue_mode()
        self._step = p["step"]
        self.view.show_progress(p)
        if p["device"] != self._run_info["device"]:  # torch.compile failed; training went on without it
            self._run_info = {**self._run_info, "device": p["device"]}
            self.view.say(self._describe_run())
            self.state.status.emit(p["compile_failure"])
        self.progressed.emit(self._step)

    def _on_preview(self, step: int, images) -> None:
        if not self._current():
            return
        cfg = self._worker.trainer.config.train if self._worker.trainer is not None else None
        how = f" · {cfg.preview_sampler.upper()}, {cfg.preview_steps} steps" if cfg else ""
        self.view.show_preview(step, images, how)
        self.previewShown.emit(step)

    def _on_snapshot(self, snapshot) -> None:
        if self._current():
            self.state.set_model(snapshot)

    def _on_paused_changed(self, paused: bool) -> None:
        if not self._current():
            return
        if paused:
            self.view.say(f"Paused at step {self._step:,}. The Denoising tab can sample this model.")
            self.state.status.emit(f"Training paused at step {self._step:,}")
        elif not self._worker.stopping:  # a Stop ends a pause too: that is not "resumed"
            self.view.say("Training…")
            self.state.status.emit("Training resumed")
        self.pausedChanged.emit(paused)

    def _on_saved(self, path: str, step: int, of_the_run_shown: bool = True) -> None:
        if of_the_run_shown:
            self._saved_step = step
        self._last_path = path
        self.state.status.emit(f"Saved checkpoint (step {step:,}): {path}")
        self.checkpointSaved.emit(path)

    def _on_autosaved(self, path: str, step: int) -> None:
        self._autosaved = (path, step)
        self.autosave_label.setText(f"Autosaved step {step:,} at {time.strftime('%H:%M')}: {path}")
        self.state.status.emit(f"Autosaved step {step:,} to {path}")
        self.autosaved.emit(path, step)

    def _on_saved_task(self, result) -> None:
        # A save of an ended run may finish after a new run began: it is not the new run's.
        path, step, trainer = result
        current = trainer is self._live_trainer()
        self._on_saved(path, step, of_the_run_shown=current)
        then, self._after_save = self._after_save, None
        if then is not None and current:
            then()

    def _on_save_failed(self, message: str) -> None:
        self._after_save = None  # what waited for the save does not go ahead
        self.state.errorOccurred.emit(message)

    def _settle_unsaved(self, doing: str, then: Callable[[], object]) -> bool:
        """Before `doing` replaces an ended run that has unsaved steps, ask Save / Discard /
        Cancel, as closing the window does. True: go on now. False: not now: cancelled, or
        saving first, after which `then` (the same action) runs again."""
        if self._worker is not None or not self.has_unsaved_progress():
            return True
        answer = self.ask_save_before(doing)
        if answer == "no":
            self._discarded_step = self._step
            return True
        if answer == "yes":
            path = self.choose_save_path()
            if path:
                self._after_save = then
                self._start_save_task(path)
        return False

    def _on_failed(self, message: str) -> None:
        if self._current():
            self.state.errorOccurred.emit(message)

    def _on_finished(self) -> None:
        worker = self.sender()
        if worker is self._worker and worker is not None:
            self._worker_ended(worker)
        elif worker in self._retired:
            self._retired.remove(worker)

    def _worker_ended(self, worker: TrainingWorker, retire: bool = False) -> None:
        if worker is not self._worker:
            return
        if retire:
            self._retired.append(worker)
        self._worker = None
        self._paused = False
        # A continued run that failed before its trainer was built leaves the run it was to
        # continue: that one still holds the unsaved steps, to save or continue again.
        self._trainer = worker.trainer if worker.trainer is not None else self._ended_run
        if worker.error:
            self._explain_error(worker)
        elif self._continue is not None:  # a continued run that trained no step: still in continue mode
            self.view.end("Training was stopped before its first step: press Start to continue the checkpoint.",
                          steps_done=True)
            self.state.status.emit("Training stopped before its first step")
        elif self._trainer is not None and self._trainer.step == 0:
            self.view.end("Training was stopped before its first step: press Start to begin.", steps_done=True)
            self.state.status.emit("Training stopped before its first step")
        elif self._trainer is not None:
            done = self._trainer.step >= self._trainer.total_steps
            verb = "finished" if done else "stopped"
            self.view.end(
                f"Training {verb} at step {self._trainer.step:,}. Continue it (the button at the left), "
                "sample it on the Denoising tab, or save a checkpoint.",
                steps_done=True,
            )
            self.state.status.emit(f"Training {verb} at step {self._trainer.step:,}")
        else:
            self.view.end("Training was stopped before it began.", steps_done=False)
        self.form.setEnabled(True)
        self._update_controls()
        self.runningChanged.emit(False)

    def _explain_error(self, worker: TrainingWorker) -> None:
        """The info line after a failed run (the dialog shows the message too), and for an
        out-of-memory error, the button that sets the batch size the message suggests."""
        text = f"Training stopped: {worker.error}"
        if self._diverged() and self._autosaved is not None:
            path, step = self._autosaved
            text += f". The autosave of step {step:,} is kept: {path}"
        self.view.end(text, steps_done=False)
        too_big = worker.error_type is not None and issubclass(worker.error_type, OutOfMemory)
        if too_big and worker.error.startswith("training") and self._run_batch_size > 1:
            self._show_suggestion(max(1, self._run_batch_size // 2))

    def _show_suggestion(self, batch_size: Optional[int]) -> None:
        self._suggested_batch = batch_size
        self.suggestion_button.setVisible(batch_size is not None)
        if batch_size is not None:
            self.suggestion_button.setText(f"Use batch size {batch_size}")
            self.suggestion_button.setToolTip("The last run did not fit in memory: train with smaller batches.")

    def _apply_suggestion(self) -> None:
        if self._suggested_batch is not None:
            self.form.batch.setText(str(self._suggested_batch))
            self.state.status.emit(f"Batch size set to {self._suggested_batch}: press Start to train again")
        self._show_suggestion(None)

    def accepts_drop(self) -> bool:
        return self._worker is None  # a checkpoint opens to continue, not during a run

    # ---- checkpoint tasks -----------------------------------------------------------------------
    def _run_task(self, task: TaskWorker) -> None:
        self._tasks.append(task)
        task.finished.connect(self._on_task_finished)
        task.start()

    def _on_task_finished(self) -> None:
        task = self.sender()
        self._tasks = [t for t in self._tasks if t is not task]
        self._update_controls()

    def _on_task_failed(self, message: str) -> None:
        self.state.errorOccurred.emit(message)

    def _on_checkpoint_loaded(self, result) -> None:
        request, ckpt, cfg = result
        if self._worker is not None or request != self._open_request:
            return  # training was started, or another file chosen, meanwhile: not wanted now
        self._ended_run = None
        self._step = self._saved_step = ckpt.step
        self._trainer = None
        self._last_path = str(ckpt.path)
        name = os.path.basename(str(ckpt.path))
        if len(name) > 32:
            name = name[:14] + "…" + name[-16:]
        self._enter_continue_mode(ckpt, cfg, f"<b>{name}</b>", "the checkpoint's")
        self.continue_label.setToolTip(str(ckpt.path))
        self.state.status.emit(f"Opened {ckpt.path} at step {ckpt.step:,}: press Start to continue training")
        self.checkpointOpened.emit(str(ckpt.path))

    def continue_last_run(self) -> bool:
        """Set up to train on the run that ended here (stopped, or finished): Start continues
        it from its last step, as from a checkpoint of it, without a file. Its steps stay
        unsaved until saved."""
        trainer = self.trainer
        if trainer is None or trainer.step == 0 or self._diverged():
            return False
        self._ended_run = trainer
        self._enter_continue_mode(trainer.to_checkpoint(), copy.deepcopy(trainer.config), "this run", "the run's")
        self.continue_label.setToolTip("")
        self.state.status.emit(f"Continuing this run from step {trainer.step:,}: set how long, then press Start")
        return True

    def _enter_continue_mode(self, ckpt, cfg: RunConfig, what: str, whose: str) -> None:
        """Start will continue `ckpt`: its model settings are fixed, the rest may change."""
        self._continue = (ckpt, cfg)
        self.form.set_config(cfg)
        self.form.lock_model(True)
        self.form.min_steps = ckpt.step
        steps = cfg.train.steps
        if steps is not None:
            self.form.set_steps(steps if steps > ckpt.step else ckpt.step + steps)
        # Explicit line breaks: a word-wrapped label in a scroll area gets one line's height.
        self.continue_label.setText(
            f"Continuing {what} from step {ckpt.step:,}.<br>"
            f"Start trains on up to “Train for”;<br>the model settings are {whose}."
        )
        # Also where the eye is (the label above may be scrolled out of view).
        self.view.say(
            f"Continuing {what} from step {ckpt.step:,}: set “Train for” (now {self.form.length.text()} "
            f"{self.form.length_unit.currentText()}), then press Start. “New run instead” (under the settings) "
            "forgets it."
        )
        self._update_controls()

    # ---- controls --------------------------------------------------------------------------------
    def _update_controls(self) -> None:
        running = self._worker is not None
        cfg, reason = (None, None) if running else self.form.check()
        self.hint.setText("" if running or reason is None else reason)
        self.start_button.setEnabled(not running and cfg is not None)
        stopping = running and self._worker.stopping
        self.pause_button.setEnabled(running and not self._paused and not stopping)
        self.resume_button.setEnabled(running and self._paused and not stopping)
        self.stop_button.setEnabled(running and not stopping)
        self.save_button.setEnabled((running or self._trainer is not None) and not self._diverged())
        self.open_button.setEnabled(not running and not any(t.name == "open-checkpoint" for t in self._tasks))
        self.new_run_button.setVisible(self._continue is not None and not running)
        ended = self.trainer
        self.continue_run_button.setVisible(
            self._continue is None and ended is not None and ended.step > 0 and not self._diverged()
        )
        self.continue_label.setVisible(self._continue is not None)
        self.controlsChanged.emit()
