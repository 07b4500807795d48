"""Autosave during long training: every N minutes (a fake clock here) the running training
is saved to the app's autosave folder, in a file that continues the run exactly; it is
shown where, the interval is a form field, and after a crash File → Recover autosave…
opens the folder. (Not writing after divergence: test_trust_divergence.py.)"""

from __future__ import annotations

import os
import time

import pytest
from PySide6.QtWidgets import QFileDialog

from ddpm_core.checkpoint import load_checkpoint
from ddpm_core.training import Trainer
from ddpm_gui import autosave_files
from ddpm_gui.main_window import TRAINING

WAIT_MS = 60_000


@pytest.fixture
def panel(clocked_training_panel):
    return clocked_training_panel


def test_autosave_writes_a_checkpoint_that_continues_the_run(
    qtbot, panel, state, fake_clock, autosave_folder, make_config
):
    statuses = []
    state.status.connect(statuses.append)
    panel.set_config(make_config(steps=5000, preview_every=0, autosave_minutes=2))
    assert panel.start()
    qtbot.waitUntil(lambda: panel.current_step() >= 2, timeout=WAIT_MS)
    fake_clock.advance(1)  # not due yet
    step = panel.current_step()
    qtbot.waitUntil(lambda: panel.current_step() >= step + 2, timeout=WAIT_MS)
    assert autosave_files.autosaves(autosave_folder) == []

    with qtbot.waitSignal(panel.autosaved, timeout=WAIT_MS) as autosaved:
        fake_clock.advance(1.5)
    path, step = autosaved.args
    assert os.path.dirname(path) == str(autosave_folder)
    assert load_checkpoint(path).step == step >= 2
    assert Trainer.from_checkpoint(path).step == step  # continues the run, not just readable
    assert any(path in s for s in statuses)  # the person is told where
    assert path in panel.autosave_label.text()

    # The next one replaces it (one file per run) once the interval has passed again.
    with qtbot.waitSignal(panel.autosaved, timeout=WAIT_MS) as again:
        fake_clock.advance(2)
    assert again.args[0] == path and again.args[1] > step
    assert autosave_files.autosaves(autosave_folder) == [autosave_folder / os.path.basename(path)]


def test_a_save_restarts_the_autosave_clock(qtbot, panel, fake_clock, autosave_folder, tmp_path, make_config):
    panel.set_config(make_config(steps=5000, preview_every=0, autosave_minutes=2))
    assert panel.start()
    qtbot.waitUntil(lambda: panel.current_step() >= 1, timeout=WAIT_MS)
    fake_clock.advance(1.5)
    with qtbot.waitSignal(panel.checkpointSaved, timeout=WAIT_MS):
        panel.save_checkpoint(str(tmp_path / "manual.safetensors"))
    fake_clock.advance(1)  # 2.5 min since the start, 1 since the save: not due
    step = panel.current_step()
    qtbot.waitUntil(lambda: panel.current_step() >= step + 3, timeout=WAIT_MS)
    assert autosave_files.autosaves(autosave_folder) == []


def test_autosave_off_writes_nothing(qtbot, panel, fake_clock, autosave_folder, make_config):
    panel.set_config(make_config(steps=5000, preview_every=0, autosave_minutes=0))
    assert panel.start()
    qtbot.waitUntil(lambda: panel.current_step() >= 1, timeout=WAIT_MS)
    fake_clock.advance(24 * 60)
    step = panel.current_step()
    qtbot.waitUntil(lambda: panel.current_step() >= step + 3, timeout=WAIT_MS)
    assert autosave_files.autosaves(autosave_folder) == []
    assert "off" in panel.autosave_label.text()


def test_the_interval_and_precision_are_form_fields(qtbot, panel, make_config):
    form = panel.form
    panel.set_config(make_config(autosave_minutes=7.5, precision="fp32"))
    assert form.autosave.text() == "7.5" and form.precision.currentData() == "fp32"
    form.autosave.setText("0")
    form.precision.setCurrentIndex(form.precision.findData("bf16"))
    cfg = panel.config()
    assert cfg.train.autosave_minutes == 0 and cfg.train.precision == "bf16"
    assert [form.precision.itemData(i) for i in range(form.precision.count())] == ["auto", "fp32", "bf16"]

    for bad, words in (("ten", "not a number"), ("-1", "out of range"), ("5000", "out of range"), ("", "enter")):
        form.autosave.setText(bad)
        assert not panel.start_button.isEnabled()
        assert "Autosave every" in panel.hint.text() and words in panel.hint.text(), bad
    form.autosave.setText("10")
    assert panel.start_button.isEnabled()


def test_recover_autosave_opens_the_folder_and_continues(
    qtbot, main_window, autosave_folder, monkeypatch, make_config
):
    """After a crash: the autosave of the lost run is there, and the menu opens it."""
    trainer = Trainer(make_config(steps=6, preview_every=0))
    for _ in trainer.steps():
        pass
    crashed = autosave_files.path_for_run(autosave_folder)
    trainer.save(crashed)

    asked_in = []

    def dialog(parent, title, folder, filters):
        asked_in.append(folder)
        return str(crashed), filters

    monkeypatch.setattr(QFileDialog, "getOpenFileName", dialog)
    assert main_window.actions["recover_autosave"].isEnabled()
    with qtbot.waitSignal(main_window.training.checkpointOpened, timeout=WAIT_MS):
        main_window.actions["recover_autosave"].trigger()
    assert asked_in == [str(autosave_folder)]
    assert main_window.tabs.currentIndex() == TRAINING
    assert "step 6" in main_window.statusBar().currentMessage()
    main_window.training.form.set_steps(8)
    with qtbot.waitSignal(main_window.training.runningChanged, timeout=WAIT_MS, check_params_cb=lambda r: r is False):
        assert main_window.training.start()
    assert main_window.training.trainer.step == 8


def test_only_the_newest_autosaves_are_kept(tmp_path):
    folder = tmp_path / "autosave"
    folder.mkdir()
    paths = []
    for i in range(autosave_files.KEEP + 3):
        p = folder / f"run{i}.safetensors"
        p.write_bytes(b"x")
        os.utime(p, (time.time() + i, time.time() + i))  # run{i} is newer than run{i-1}
        paths.append(p)
    (folder / ".run9.safetensors.abc.tmp").write_bytes(b"x")  # a save in progress: not an autosave
    autosave_files.prune(folder)
    assert autosave_files.autosaves(folder) == paths[::-1][: autosave_files.KEEP]
    assert (folder / ".run9.safetensors.abc.tmp").exists()
    assert autosave_files.autosaves(tmp_path / "missing") == []


def test_each_run_gets_its_own_file(tmp_path):
    import datetime

    when = datetime.datetime(2026, 11, 26, 14, 3, 52)
    first = autosave_files.path_for_run(tmp_path, when)
    assert first.name == "2026-11-26_14-03-52.safetensors"
    first.write_bytes(b"x")
    assert autosave_files.path_for_run(tmp_path, when).name == "2026-11-26_14-03-52_2.safetensors"


def test_the_autosave_folder_names_the_app_once(monkeypatch, tmp_path):
    # Qt's AppDataLocation adds organisation and application, both "DDPM Studio".
    from ddpm_gui import autosave_files

    monkeypatch.delenv(autosave_files.ENV_FOLDER, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    folder = autosave_files.autosave_folder()
    assert folder.parent.name == "DDPM Studio" and folder.parent.parent.name != "DDPM Studio"
    assert folder.name == "autosave"
