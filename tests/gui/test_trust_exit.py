"""The real entry point, `python main.py`, in its own process: train a few steps, close the
window (Save or Discard), and the process must end by itself, promptly, with exit status 0
and nothing alarming on stderr (no "QThread: Destroyed while thread is still running", no
traceback). The run is driven by DDPM_STUDIO_SELFTEST (see ddpm_gui/selftest.py). Closing with
Discard goes through the same exit path and is tested in-process (test_trust_close.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ddpm_core.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]
HANG_GUARD_S = 300  # a hang guard, not a timing: a run takes seconds, a stall would take forever
STEPS = 3


def run_app(tmp_path: Path, selftest: str) -> subprocess.CompletedProcess:
    home = tmp_path / "home"
    home.mkdir()
    env = dict(
        os.environ,
        QT_QPA_PLATFORM="offscreen",
        DDPM_STUDIO_SELFTEST=selftest,
        HOME=str(home),  # settings and data of this run only
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        DDPM_STUDIO_AUTOSAVE_DIR=str(tmp_path / "autosave"),
        DDPM_STUDIO_DATA=str(tmp_path / "data"),
        PYTHONFAULTHANDLER="1",  # if it ever crashes, say where
    )
    env.pop("OMP_NUM_THREADS", None)  # the app picks its own thread count, as when a person starts it
    try:
        return subprocess.run(
            [sys.executable, str(ROOT / "main.py")],
            cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=HANG_GUARD_S,
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"the app did not exit within {HANG_GUARD_S} s; stderr:\n{e.stderr}")


def assert_clean_exit(result: subprocess.CompletedProcess) -> None:
    err = result.stderr
    assert result.returncode == 0, err
    assert "selftest: closing the window (at step" in err, err  # it did train and close mid-run
    assert "QThread: Destroyed" not in err, err
    assert "Traceback" not in err and "Fatal Python error" not in err, err


def test_close_with_save_exits_cleanly_and_keeps_the_checkpoint(tmp_path):
    path = tmp_path / "on_exit.safetensors"
    result = run_app(tmp_path, f"train:{STEPS},save:{path}")
    assert_clean_exit(result)
    assert load_checkpoint(path).step >= STEPS  # flushed before the process ended


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="X11/Wayland displays")
def test_without_a_display_it_says_so_in_one_line(tmp_path):
    # Qt would abort the process (SIGABRT) with a plugin message that suggests reinstalling.
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    result = subprocess.run([sys.executable, str(ROOT / "main.py")], cwd=str(tmp_path), env=env,
                            capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no display is set" in lines[0] and "ddpm --help" in lines[0] and "xvfb-run" in lines[0]
