"""SIGKILL at random moments while checkpoints are being saved, many times over.

A helper process (this file run as a script) imports torch once and then, for each kill,
forks a child that resumes from the checkpoint on disk and saves checkpoints in a loop
(one file saved over and over, or a run folder's step_*.safetensors with pruning). Once
the child is saving, the helper sleeps a random delay, kills it with SIGKILL and reports
back. After every kill this test checks that:

* the checkpoint loads completely and is self-consistent (every weight equals its step);
* no completed save was lost: the step on disk is the last one whose save returned (the
  child logs each one after `save_checkpoint` returns), or the one being saved;
* the step never goes backwards;
* whatever else the kill left is a hidden temporary file that no reader takes for a
  checkpoint, and it is cleaned up (`remove_stale_temp_files`, `RunFolder`).

The figures are printed (`pytest -s`) and asserted: every one of the kills is survived.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

KILLS_PER_MODE = 20  # two modes: 40 SIGKILLs per run
WEIGHTS = 200_000  # float32 values per tensor: a 1.2 MB checkpoint takes a while to write
SEED = 2024  # the random delays are the same every run

pytestmark = pytest.mark.skipif(os.name == "nt" or not hasattr(os, "fork"), reason="SIGKILL and fork are POSIX")


# ---- the helper process ------------------------------------------------------------------


def _state(step: int):
    import numpy as np
    import torch

    # numpy, not torch ops: nothing in the forked child touches torch's thread pool
    w = torch.from_numpy(np.full(WEIGHTS, float(step), dtype=np.float32))
    b = torch.from_numpy(np.full(WEIGHTS // 2, float(step), dtype=np.float32))
    return {"w": w, "b": b}


class _FakeTrainer:
    """What RunFolder.save_checkpoint needs from a Trainer: `step` and `save(path)`."""

    def __init__(self, step: int):
        self.step = step

    def save(self, path):
        from ddpm_core.checkpoint import save_checkpoint
        from ddpm_core.config import RunConfig

        return save_checkpoint(
            path, config=RunConfig().to_dict(), model=_state(self.step), step=self.step, extra={"step": self.step}
        )


def _save_forever(mode: str, folder: Path, started_fd: int) -> None:
    """The child: resume from what is on disk, then save checkpoints until killed."""
    from ddpm_core.checkpoint import load_checkpoint
    from ddpm_core.run_folder import RunFolder, latest_checkpoint

    log = os.open(folder / f"saved-{mode}.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    if mode == "file":
        path = folder / "latest.safetensors"
        step = load_checkpoint(path).step if path.exists() else 0
        run = None
    else:
        run = RunFolder(folder / "run", keep_checkpoints=2)  # also removes temp files of earlier kills
        step = load_checkpoint(latest_checkpoint(run.root)).step if any(run.checkpoints.iterdir()) else 0
    os.write(started_fd, b"s")  # from here on, the helper's clock runs
    trainer = _FakeTrainer(step)
    while True:
        trainer.step += 1
        if run is None:
            trainer.save(path)
        else:
            run.save_checkpoint(trainer)
        # Only after save_checkpoint returned: this step is promised to be on disk.
        os.write(log, f"{trainer.step}\n".encode())


def _helper(folder: Path) -> None:
    """Read "MODE DELAY" lines; for each, fork a saving child, kill it after DELAY seconds
    of saving, and answer "killed" (or how it ended otherwise)."""
    import torch

    torch.set_num_threads(1)  # no worker threads in the process that forks
    import ddpm_core.checkpoint  # noqa: F401  (imported once, shared by every child)
    import ddpm_core.run_folder  # noqa: F401

    print("ready", flush=True)
    for line in sys.stdin:
        mode, delay = line.split()
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child
            os.close(r)
            try:
                _save_forever(mode, folder, w)
            except BaseException as e:  # e.g. the checkpoint on disk did not load
                sys.stderr.write(f"child failed: {type(e).__name__}: {e}\n")
            os._exit(1)
        os.close(w)
        started = os.read(r, 1)
        if started:
            time.sleep(float(delay))
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        os.close(r)
        killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        print("killed" if killed else f"ended-by-itself status={status}", flush=True)


if __name__ == "__main__":
    _helper(Path(sys.argv[1]))


# ---- the test ----------------------------------------------------------------------------


def _last_logged(folder: Path, mode: str) -> int:
    log = folder / f"saved-{mode}.log"
    lines = log.read_text().split() if log.exists() else []
    return int(lines[-1]) if lines else 0


def _check_complete(path: Path, expect_between: tuple[int, int]) -> int:
    """The checkpoint at `path` loads in full and is consistent; returns its step."""
    from ddpm_core.checkpoint import load_checkpoint

    ck = load_checkpoint(path)
    lo, hi = expect_between
    assert lo <= ck.step <= hi, f"{path.name}: step {ck.step}, expected {lo}..{hi}"
    assert ck.extra["step"] == ck.step
    for name, t in ck.model.items():
        assert t.numel() and bool((t == ck.step).all()), f"{path.name}: {name} does not hold step {ck.step}"
    return ck.step


def test_random_sigkills_during_saves_never_lose_a_checkpoint(tmp_path):
    from ddpm_core.atomic import TEMP_SUFFIX, remove_stale_temp_files
    from ddpm_core.run_folder import CHECKPOINT_RE, RunFolder, latest_checkpoint

    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    helper = subprocess.Popen(
        [sys.executable, __file__, str(tmp_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True
    )
    rng = random.Random(SEED)
    figures = {"kills": 0, "survived": 0, "left a temp file": 0, "completed saves lost": 0, "saves": 0}
    try:
        assert helper.stdout.readline().strip() == "ready"
        for mode in ["file"] * KILLS_PER_MODE + ["run"] * KILLS_PER_MODE:
            previous_step = _last_logged(tmp_path, mode)  # what is on disk before this child
            delay = rng.uniform(0.0, 0.06)
            helper.stdin.write(f"{mode} {delay:.4f}\n")
            helper.stdin.flush()
            answer = helper.stdout.readline().strip()
            assert answer == "killed", f"the saving child was not killed mid-run: {answer}"
            figures["kills"] += 1

            logged = _last_logged(tmp_path, mode)  # the last save that returned before the kill
            figures["saves"] += logged - previous_step
            if mode == "file":
                folder = tmp_path
                newest = folder / "latest.safetensors" if (folder / "latest.safetensors").exists() else None
            else:
                folder = tmp_path / "run" / "checkpoints"
                named = [p for p in folder.iterdir() if CHECKPOINT_RE.match(p.name)]
                newest = latest_checkpoint(tmp_path / "run") if named else None
            if newest is None:
                assert logged == 0, "a completed save is gone"
                step = 0  # killed before its very first save finished: nothing to lose yet
            else:
                # the last completed save, or the one in flight if its rename happened
                step = _check_complete(newest, (logged, logged + 1))
            if mode == "run":
                for p in folder.iterdir():  # every file named like a checkpoint is one
                    if CHECKPOINT_RE.match(p.name):
                        _check_complete(p, (1, step))
            figures["completed saves lost"] += step < logged
            leftovers = [p for p in folder.iterdir() if p.name.startswith(".")]
            assert all(p.name.endswith(TEMP_SUFFIX) for p in leftovers), leftovers
            if mode == "file":  # besides the checkpoint, only what the test itself keeps there
                others = {p.name for p in folder.iterdir()} - {p.name for p in leftovers}
                assert others <= {"latest.safetensors", "saved-file.log", "saved-run.log", "run"}, others
            figures["left a temp file"] += bool(leftovers)
            if mode == "file":
                # what to do before the next writer starts (also when no save finished yet)
                removed = remove_stale_temp_files(folder / "latest.safetensors")
                assert sorted(removed) == sorted(leftovers)
            figures["survived"] += 1
            with (tmp_path / f"saved-{mode}.log").open("a") as log:
                log.write(f"{step}\n")  # the next child resumes from this step: it may only go up
        # run folders clean up after killed saves by themselves
        RunFolder(tmp_path / "run").close()
        assert not [p for p in (tmp_path / "run" / "checkpoints").iterdir() if p.name.endswith(TEMP_SUFFIX)]
    finally:
        helper.stdin.close()
        try:
            helper.wait(timeout=30)
        except subprocess.TimeoutExpired:
            helper.kill()
            helper.wait()
        helper.stdout.close()

    print(
        f"\nSIGKILL during saves: {figures['survived']} of {figures['kills']} kills survived, "
        f"{figures['left a temp file']} killed mid-write (left a temp file), "
        f"{figures['saves']} saves completed in between, {figures['completed saves lost']} completed saves lost"
    )
    assert figures["kills"] == 2 * KILLS_PER_MODE
    assert figures["survived"] == figures["kills"]
    assert figures["completed saves lost"] == 0
    assert figures["saves"] > 0  # the children really were saving when killed
