"""A training run on disk: config, metrics log, preview grids and checkpoints.

    runs/<name>/config.json
    runs/<name>/metrics.jsonl          one JSON object per step
    runs/<name>/previews/step_0000250.png
    runs/<name>/checkpoints/step_0001000.safetensors   (the newest few are kept)
"""

from __future__ import annotations

import datetime
import json
import os
import re
from pathlib import Path
from typing import Optional

from .atomic import TEMP_SUFFIX, atomic_write, claim_first_free, numbered_names
from .checkpoint import read_checkpoint_config
from .errors import CheckpointError, ConfigError
from .export import save_png_grid

CHECKPOINT_RE = re.compile(r"^step_(\d+)\.safetensors$")
RUN_ENTRIES = ("config.json", "metrics.jsonl", "checkpoints", "previews")  # what a run folder holds


def run_root_of(checkpoint: Path) -> Optional[Path]:
    """The run folder a checkpoint file is in (<run>/checkpoints/step_N.safetensors), or None.
    The path is made absolute first (without following links): 'step_N.safetensors' typed
    inside checkpoints/ has '.' for a parent, whose name says nothing."""
    parent = Path(os.path.abspath(checkpoint)).parent
    if parent.name == "checkpoints" and (parent.parent / "config.json").is_file():
        return parent.parent
    return None


def choose_run_folder(out: Optional[Path], continuing: Optional[Path] = None) -> Optional[Path]:
    """Where a run writes: `out`, else the run folder it continues (`continuing`), else None:
    a new folder, which `new_run_folder` makes when the run starts. Never a folder that
    holds another run (its checkpoints would be pruned and its config and metrics
    replaced) nor a file: ConfigError (one line)."""
    if out is None:
        return continuing
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file: choose a folder for the run's files")
    same = continuing is not None and out.resolve() == continuing.resolve()
    taken = [name for name in RUN_ENTRIES if (out / name).exists()]
    if taken and not same:
        if not _has_checkpoint(out):
            # A run stopped before its first checkpoint: nothing to resume from, and its
            # metrics and previews are not ours to append to or replace.
            raise ConfigError(
                f"{out} holds the files of a run that saved no checkpoint ({', '.join(taken)}), so it cannot be "
                f"resumed: choose another --out, or delete {out} to start over there"
            )
        raise ConfigError(
            f"{out} already holds a run ({', '.join(taken)}): continue it with 'ddpm train --resume {out}', "
            "or choose another --out"
        )
    return out


def _has_checkpoint(run_dir: Path) -> bool:
    folder = run_dir / "checkpoints"
    return folder.is_dir() and any(CHECKPOINT_RE.match(p.name) for p in folder.iterdir())


def new_run_folder(base: Path = Path("runs")) -> Path:
    """Make and return base/<date-time> (base/<date-time>-2, ... when taken). mkdir without
    exist_ok claims the name, so two runs started in the same second, even from two
    processes, never share a folder."""
    base.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return claim_first_free(numbered_names(base / stamp), Path.mkdir)


class RunFolder:
    def __init__(self, root: str | Path, keep_checkpoints: int = 3):
        self.root = Path(root)
        self.previews = self.root / "previews"
        self.checkpoints = self.root / "checkpoints"
        for p in (self.root, self.previews, self.checkpoints):
            p.mkdir(parents=True, exist_ok=True)
        self.keep_checkpoints = keep_checkpoints
        # A process killed mid-save leaves a hidden temp file (never a damaged checkpoint).
        for stale in self.checkpoints.glob(".*" + TEMP_SUFFIX):
            stale.unlink(missing_ok=True)
        self._metrics = open(self.root / "metrics.jsonl", "a", encoding="utf-8")

    def write_config(self, config) -> None:
        text = config.to_json()
        atomic_write(self.root / "config.json", lambda f: f.write(text.encode("utf-8")))

    def log(self, record) -> None:
        row = {
            "step": record.step,
            "epoch": record.epoch,
            "loss": record.loss,
            "images_per_sec": round(record.images_per_sec, 2),
            "elapsed": round(record.elapsed, 3),
        }
        self._metrics.write(json.dumps(row) + "\n")
        if record.step % 50 == 0:
            self._metrics.flush()

    def save_preview(self, record) -> Optional[Path]:
        if record.preview is None:
            return None
        return save_png_grid(record.preview, self.previews / f"step_{record.step:07d}.png", scale=2)

    def save_checkpoint(self, trainer) -> Path:
        path = trainer.save(self.checkpoints / f"step_{trainer.step:07d}.safetensors")
        old = sorted(self._checkpoint_files())[: -self.keep_checkpoints]
        for _, p in old:
            p.unlink(missing_ok=True)
        return Path(path)

    def _checkpoint_files(self):
        for p in self.checkpoints.iterdir():
            m = CHECKPOINT_RE.match(p.name)
            if m:
                yield int(m.group(1)), p

    def close(self) -> None:
        self._metrics.close()


def latest_checkpoint(run_dir: str | Path) -> Path:
    """The newest complete checkpoint of a run folder; incomplete or corrupt ones are skipped.

    Completeness comes from the header alone (`read_checkpoint_config`, no weights read):
    the header must parse and pass every check loading makes, and the tensors' byte ranges
    must tile the data part exactly up to the end of the file, so a file cut short
    anywhere, header or data, is passed over. Hidden temporary files of killed saves
    (".step_....safetensors.<random>.tmp") never match the checkpoint name pattern.
    """
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        raise CheckpointError(f"{run_dir} is not a run folder (no checkpoints/ inside): give a checkpoint file or run folder")
    candidates = sorted(
        ((int(m.group(1)), p) for p in folder.iterdir() if (m := CHECKPOINT_RE.match(p.name))), reverse=True
    )
    newest_problem = None
    for _, p in candidates:
        try:
            read_checkpoint_config(p)
            return p
        except CheckpointError as e:
            newest_problem = newest_problem or str(e)
    if newest_problem is None:
        raise CheckpointError(f"no checkpoint in {folder}: start a new run or give a checkpoint file")
    raise CheckpointError(
        f"none of the {len(candidates)} checkpoints in {folder} is complete (the newest: {newest_problem}) — "
        "start a new run or give a checkpoint file"
    )
