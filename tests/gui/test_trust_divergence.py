"""A NaN or infinite loss: training stops with a message that says what to try, the app
stays usable, and no file is overwritten by the broken weights (not the last checkpoint,
not the autosave, not on close). The NaN is simulated from a chosen step on by wrapping
the engine's loss function."""

from __future__ import annotations

from pathlib import Path

import pytest

from ddpm_core import training
from ddpm_core.errors import TrainingDiverged
from ddpm_gui import workers

WAIT_MS = 60_000


class NanLoss:
    """p_losses, returning NaN once `armed`."""

    def __init__(self, real):
        self.real = real
        self.armed = False

    def __call__(self, *args, **kwargs):
        loss, per_sample = self.real(*args, **kwargs)
        if self.armed:
            return loss * float("nan"), per_sample * float("nan")
        return loss, per_sample


@pytest.fixture
def nan_loss(monkeypatch) -> NanLoss:
    fake = NanLoss(training.p_losses)
    monkeypatch.setattr(training, "p_losses", fake)
    return fake


@pytest.fixture
def panel(clocked_training_panel):
    return clocked_training_panel


def train_save_and_autosave(qtbot, panel, fake_clock, path: Path, make_config) -> Path:
    """Start a long run, save `path` and let one autosave happen; returns the autosave file."""
    panel.set_config(make_config(steps=5000, preview_every=0, autosave_minutes=1))
    assert panel.start()
    qtbot.waitUntil(lambda: panel.current_step() >= 2, timeout=WAIT_MS)
    with qtbot.waitSignal(panel.checkpointSaved, timeout=WAIT_MS):
        assert panel.save_checkpoint(str(path))
    with qtbot.waitSignal(panel.autosaved, timeout=WAIT_MS) as autosave:
        fake_clock.advance(2)
    return Path(autosave.args[0])


def test_nan_stops_training_with_advice_and_keeps_every_file(
    qtbot, panel, state, errors, fake_clock, nan_loss, tmp_path, make_config
):
    saved = tmp_path / "good.safetensors"
    autosave = train_save_and_autosave(qtbot, panel, fake_clock, saved, make_config)
    before = {p: p.read_bytes() for p in (saved, autosave)}

    with qtbot.waitSignal(state.errorOccurred, timeout=WAIT_MS) as failed:
        nan_loss.armed = True
    message = failed.args[0]
    assert "diverged" in message and "learning rate" in message and "\n" not in message
    qtbot.waitUntil(lambda: not panel.is_running(), timeout=WAIT_MS)
    fake_clock.advance(60)  # an autosave would be long due

    # The app goes on: Start is enabled; saving is refused with a reason; files are intact.
    assert panel.start_button.isEnabled() and panel.form.isEnabled()
    assert not panel.save_button.isEnabled()
    assert "autosave" in panel.view.info_label.text() and str(autosave) in panel.view.info_label.text()
    assert panel.save_checkpoint(str(saved)) is False
    assert "diverged" in errors[-1]
    assert {p: p.read_bytes() for p in (saved, autosave)} == before

    # Closing does not offer to save the broken run.
    panel.ask_save_before_close = lambda: pytest.fail("asked to save a diverged run")
    assert not panel.has_unsaved_progress()
    assert panel.shutdown(ask=True)
    assert {p: p.read_bytes() for p in (saved, autosave)} == before
    assert [e.error_type for e in workers.take_errors()] == [TrainingDiverged]

    # And a new run trains.
    nan_loss.armed = False
    panel.set_config(make_config(steps=3, preview_every=0))
    with qtbot.waitSignal(panel.runningChanged, timeout=WAIT_MS, check_params_cb=lambda r: r is False):
        assert panel.start()
    assert panel.trainer.step == 3 and not panel.trainer.diverged


def test_nan_not_yet_seen_by_the_engine_is_never_saved(
    qtbot, panel, state, errors, fake_clock, nan_loss, tmp_path, make_config, monkeypatch
):
    """On a GPU the engine checks each loss one step late; saves in between must not write.
    Simulated by switching the engine's check off: NaN steps then go on being yielded."""
    monkeypatch.setattr(training.Trainer, "_check_finite", lambda self, record: None)
    saved = tmp_path / "good.safetensors"
    autosave = train_save_and_autosave(qtbot, panel, fake_clock, saved, make_config)
    before = {p: p.read_bytes() for p in (saved, autosave)}
    autosaves = []
    panel.autosaved.connect(lambda path, step: autosaves.append(step))

    nan_loss.armed = True
    step = panel.current_step()
    qtbot.waitUntil(lambda: panel.current_step() >= step + 2, timeout=WAIT_MS)  # NaN steps done
    fake_clock.advance(2)  # autosave due: it must be skipped
    step = panel.current_step()
    qtbot.waitUntil(lambda: panel.current_step() >= step + 3, timeout=WAIT_MS)
    with qtbot.waitSignal(state.errorOccurred, timeout=WAIT_MS) as refused:
        assert panel.save_checkpoint(str(saved))  # accepted for "between two steps", then refused
    assert "diverged" in refused.args[0] and "\n" not in refused.args[0]
    assert autosaves == []
    assert {p: p.read_bytes() for p in (saved, autosave)} == before
    assert [e.error_type for e in workers.take_errors()] == [TrainingDiverged]
