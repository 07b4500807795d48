"""Where the app keeps its autosaves, and how many.

During training the worker saves a checkpoint every few minutes (the form's "Autosave
every"), so a crash or a power cut loses at most that much work. Each run writes one file,
named after the moment it started and replaced in place (atomically) at every autosave:

    <app data folder>/autosave/2026-11-26_14-03-52.safetensors

The app data folder is "DDPM Studio" in Qt's GenericDataLocation (on Linux
~/.local/share/DDPM Studio, on Windows %LOCALAPPDATA%\\DDPM Studio);
DDPM_STUDIO_AUTOSAVE_DIR overrides it. Only the newest `KEEP` files are kept, so an
afternoon of short runs does not fill the disk. File → "Recover autosave…" opens this folder.
Plain file operations: the worker thread calls `prune`, the GUI only lists the folder.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import Optional

from ddpm_core.atomic import numbered_names
from ddpm_core.checkpoint import CHECKPOINT_SUFFIX
from ddpm_gui.help_text import APP_NAME

ENV_FOLDER = "DDPM_STUDIO_AUTOSAVE_DIR"
KEEP = 5  # autosave files kept (one per run): the newest ones


def autosave_folder() -> Path:
    """The folder autosaves go to (not created here: the first save creates it)."""
    override = os.environ.get(ENV_FOLDER)
    if override:
        return Path(override).expanduser()
    from PySide6.QtCore import QStandardPaths

    # The generic data folder and our name once: AppDataLocation adds the organisation and
    # the application name, both "DDPM Studio" here (…/DDPM Studio/DDPM Studio/autosave).
    base = QStandardPaths.writableLocation(QStandardPaths.GenericDataLocation)
    return (Path(base) / APP_NAME if base else Path.home() / ".ddpm-studio") / "autosave"


def path_for_run(folder: Path, started: Optional[datetime.datetime] = None) -> Path:
    """The one autosave file of a run started at `started` (now by default)."""
    started = started or datetime.datetime.now()
    name = started.strftime("%Y-%m-%d_%H-%M-%S")
    # Two runs started in the same second keep their own files (…_2.safetensors).
    return next(p for p in numbered_names(folder / f"{name}{CHECKPOINT_SUFFIX}", "_") if not p.exists())


def autosaves(folder: Path) -> list[Path]:
    """The autosave files in `folder`, newest first (none when it does not exist)."""
    try:
        names = list(folder.iterdir())
    except OSError:  # no folder yet
        return []
    dated = []
    for p in names:
        try:
            if p.suffix == CHECKPOINT_SUFFIX and p.is_file():
                dated.append((p.stat().st_mtime, p))
        except OSError:  # deleted while listing
            continue
    return [p for _, p in sorted(dated, key=lambda d: d[0], reverse=True)]


def prune(folder: Path, keep: int = KEEP) -> None:
    """Delete all but the newest `keep` autosaves (a file that cannot go is left)."""
    for old in autosaves(folder)[keep:]:
        try:
            old.unlink()
        except OSError:
            pass
