"""The `ddpm` command line: train, sample and inspect checkpoints on a headless machine.

    ddpm train [--config FILE] [flags] [--out runs/NAME] [--resume CKPT_OR_RUN]
    ddpm sample CHECKPOINT [--png grid.png] [--gif denoise.gif] [--sampler ddim --steps 50]
    ddpm forward [--image PHOTO] [--schedule cosine] --gif forward.gif
    ddpm info CHECKPOINT

Any problem with what the user gave (a flag, a file) is printed as one line on stderr with
exit code 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Optional

from .config import DATASET_NAMES, DEVICE_NAMES, LOSS_NAMES, PRECISION_NAMES, SCHEDULE_NAMES, RunConfig
from .errors import ConfigError, DDPMError, shown

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a Ctrl+C
DEFAULT_PNG = Path("samples.png")  # `ddpm sample` without --png or --gif; never replaces a file


def export_scale(image_size: int) -> int:
    """How much `ddpm sample` and `ddpm forward` enlarge their images (nearest neighbour),
    the PNG grid and the GIF frames alike: 16-pixel images are tiny at 1:1, and 256-pixel
    ones need nothing (an 8,192-pixel grid at 4×)."""
    return max(1, min(4, 128 // image_size))


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument prints one line (not the whole usage) and exits 2."""

    def error(self, message):
        sys.stderr.write(f"{self.prog}: error: {_one_line(message)} (see '{self.prog} --help')\n")
        sys.exit(EXIT_USAGE)


def _one_line(message, limit: int = 400) -> str:
    # A file name may hold a line break; the error must still be one line, and a value of
    # thousands of characters (argparse quotes what it refuses) not fill the screen.
    text = str(message).replace("\r", "\\r").replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{shown(text)} is not a whole number") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{shown(v)} must be at least 1")
    return v


def _int_upto(hi: int, what: str):
    """An argparse type: a whole number from 1 to `hi` (beyond it the work or memory is absurd)."""

    def parse(text: str) -> int:
        v = _positive_int(text)
        if v > hi:
            raise argparse.ArgumentTypeError(f"{shown(v)} is more than {hi:,}, the most {what}")
        return v

    return parse


def _seed(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{shown(text)} is not a whole number") from None
    if not 0 <= v < 2**63:  # what torch.Generator.manual_seed takes (and train.seed allows)
        raise argparse.ArgumentTypeError(f"{shown(v)} is not a seed from 0 to {2**63 - 1}")
    return v


def _mults(text: str) -> tuple:
    try:
        values = tuple(int(p) for p in text.replace(" ", "").split(",") if p)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{shown(text)} is not a comma-separated list of whole numbers, e.g. 1,2,4") from None
    if not values:
        raise argparse.ArgumentTypeError("give at least one multiplier, e.g. 1,2")
    return values


def _one_of(names) -> str:
    """('a', 'b', 'c') -> 'a, b or c': the choices a help text lists, from the config's own tuples."""
    return f"{', '.join(names[:-1])} or {names[-1]}"


def _as_typed(value) -> str:
    """A config value as it is typed on the command line (1,2 for a tuple, 0.001 for 1e-3)."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def build_parser() -> argparse.ArgumentParser:
    # The train flags default to None (a --config file or a resumed checkpoint decides), so
    # their help shows what a new run gets without them: read from RunConfig() here, not
    # written out by hand, so the help cannot drift from the config.
    built_in = RunConfig()

    def default(section: str, name: str, what: str = "", unset: str = "none") -> str:
        value = getattr(getattr(built_in, section), name)
        shown_value = unset if value is None else _as_typed(value)
        return f" (default: {f'{what} ' if what else ''}{shown_value})"

    p = _Parser(prog="ddpm", description="Train and sample denoising diffusion models (DDPM Studio's command line).")
    sub = p.add_subparsers(dest="command", metavar="{train,sample,forward,info}", parser_class=_Parser)
    sub.required = True

    t = sub.add_parser(
        "train",
        help="train a model (writes a run folder with previews, checkpoints and metrics)",
        description="Train a model. The defaults shown are the built-in config's, what a new run gets "
        "without --config; a config file or a resumed checkpoint brings its own settings.",
    )
    t.add_argument("--config", type=Path, help="JSON config file (flags given too override it)")
    t.add_argument("--resume", type=Path, help="continue from a checkpoint file or a run folder's newest checkpoint")
    t.add_argument("--out", type=Path, help="run folder (default: runs/<date-time>)")
    t.add_argument("--save-config", type=Path, help="write the resulting config to this JSON file and exit")
    g = t.add_argument_group("data")
    g.add_argument("--dataset", help=f"{_one_of(DATASET_NAMES)}{default('data', 'dataset')}")
    g.add_argument("--data-root", help="image folder, with --dataset folder")
    g.add_argument("--image-size", type=_positive_int,
                   help=f"image width and height in pixels{default('data', 'image_size')}")
    g.add_argument("--channels", type=int, choices=(1, 3),
                   help=f"1 (greyscale) or 3 (colour){default('data', 'channels')}")
    g.add_argument("--no-flip", action="store_true",
                   help=f"no random horizontal flips (digits, text){default('data', 'flip', 'flips')}")
    g.add_argument("--limit", type=_positive_int,
                   help=f"use only the first N images{default('data', 'limit', unset='all')}")
    g = t.add_argument_group("model and schedule")
    g.add_argument("--dim", type=_positive_int, help=f"U-Net base width{default('model', 'dim')}")
    g.add_argument("--dim-mults", type=_mults,
                   help=f"width multiplier per level, e.g. 1,2,4{default('model', 'dim_mults')}")
    g.add_argument("--schedule", help=f"{_one_of(SCHEDULE_NAMES)}{default('schedule', 'name')}")
    g.add_argument("--timesteps", type=_positive_int,
                   help=f"T, the number of diffusion steps{default('schedule', 'timesteps')}")
    g = t.add_argument_group("training")
    g.add_argument("--loss", help=f"{_one_of(LOSS_NAMES)}{default('train', 'loss')}")
    g.add_argument("--batch-size", type=_positive_int, help=f"images per step{default('train', 'batch_size')}")
    g.add_argument("--lr", type=float, help=f"learning rate (Adam){default('train', 'lr')}")
    g.add_argument("--steps", type=_positive_int, help=f"train this many steps{default('train', 'steps')}")
    g.add_argument("--epochs", type=_positive_int, help="train this many epochs (instead of --steps)")
    g.add_argument("--no-ema", action="store_true",
                   help=f"keep no EMA copy of the weights{default('train', 'ema', 'EMA')}")
    g.add_argument("--ema-decay", type=float, help=f"EMA decay per step{default('train', 'ema_decay')}")
    g.add_argument("--preview-every", type=int,
                   help=f"sample a preview grid every N steps (0: never){default('train', 'preview_every')}")
    g.add_argument("--checkpoint-every", type=int,
                   help=f"save a checkpoint every N steps (0: only at the end){default('train', 'checkpoint_every')}")
    g.add_argument("--seed", type=_seed, help=f"random seed{default('train', 'seed')}")
    g.add_argument("--device", help=f"{_one_of(DEVICE_NAMES)}{default('train', 'device')}")
    g.add_argument("--precision",
                   help=f"{_one_of(PRECISION_NAMES)}; auto: bf16 where fast{default('train', 'precision')}")
    g.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        help="CUDA GPUs: compile the network with torch.compile, about a minute at the start, then "
        "faster steps (1.4x on an H100); for long runs (--no-compile: a resumed run without it)"
        + default("train", "compile"),
    )
    g.add_argument(
        "--autosave-minutes", type=float,
        help=f"save a checkpoint at least every N minutes (0: never){default('train', 'autosave_minutes')}",
    )

    # Below, argparse itself holds the default: %(default)s shows it.
    s = sub.add_parser("sample", help="sample images from a checkpoint (PNG grid and/or denoising GIF)")
    s.add_argument("checkpoint", type=Path, help="checkpoint file, or a run folder (its newest checkpoint)")
    s.add_argument(
        "--png", type=Path,
        help=f"write the final samples as a PNG grid, replacing that file (without --png or --gif: {DEFAULT_PNG}, "
        "or the first free samples-2.png, samples-3.png, ... where it exists)",
    )
    s.add_argument("--gif", type=Path, help="write the denoising trajectory as an animated GIF")
    s.add_argument("-n", "--num", type=_int_upto(1024, "images at once"), default=16,
                   help="how many images (default: %(default)s)")
    s.add_argument("--sampler", choices=("ddpm", "ddim"), default="ddpm",
                   help="ddpm: all T steps; ddim: fewer (--steps) (default: %(default)s)")
    # 50 is sample_loop's own default, capped at the model's T
    s.add_argument("--steps", type=_positive_int, help="DDIM steps (default: 50, or T if smaller)")
    s.add_argument("--eta", type=float, default=0.0, help="DDIM η: 0 deterministic, 1 like DDPM (default: %(default)s)")
    s.add_argument("--seed", type=_seed, default=0, help="random seed (default: %(default)s)")
    s.add_argument("--device", default="auto", help=f"{_one_of(DEVICE_NAMES)} (default: %(default)s)")
    s.add_argument("--precision", default="auto",
                   help=f"{_one_of(PRECISION_NAMES)}; auto: bf16 where fast (default: %(default)s)")
    s.add_argument("--no-ema", action="store_true", help="use the live weights, not the EMA ones")
    s.add_argument(
        "--image-size", type=_int_upto(512, "image size"), help="for bare state_dicts: the image size (default: 28)"
    )
    s.add_argument("--gif-index", type=int, help="animate only this image (default: the whole grid)")
    s.add_argument("--gif-stride", type=_positive_int, default=1,
                   help="keep every Nth step in the GIF (default: %(default)s)")
    s.add_argument(
        "--gif-duration", type=_int_upto(655350, "a GIF frame can show (ms)"), default=40,
        help="milliseconds per GIF frame (default: %(default)s)",
    )

    f = sub.add_parser("forward", help="animate the forward process q(x_t | x_0) as a GIF")
    f.add_argument("--gif", type=Path, default=Path("forward.gif"), help="output GIF (default: %(default)s)")
    f.add_argument("--image", type=Path, help="an image file to noise (default: built-in shapes)")
    f.add_argument(
        "-n", "--num", type=_int_upto(256, "images in one GIF"), default=8,
        help="how many dataset images, without --image (default: %(default)s)",
    )
    f.add_argument("--image-size", type=_int_upto(512, "image size"), default=64,
                   help="image width and height in pixels (default: %(default)s)")
    f.add_argument("--channels", type=int, choices=(1, 3), default=3,
                   help="1 (greyscale) or 3 (colour) (default: %(default)s)")
    f.add_argument("--schedule", default="linear", help=f"{_one_of(SCHEDULE_NAMES)} (default: %(default)s)")
    f.add_argument("--timesteps", type=_int_upto(10000, "diffusion steps"), default=300,
                   help="T, the number of diffusion steps (default: %(default)s)")
    f.add_argument("--frames", type=_int_upto(1000, "GIF frames"), default=50,
                   help="number of GIF frames (default: %(default)s)")
    f.add_argument("--seed", type=_seed, default=0, help="random seed (default: %(default)s)")

    i = sub.add_parser("info", help="show what a checkpoint holds")
    i.add_argument("checkpoint", type=Path)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        commands = {"train": cmd_train, "sample": cmd_sample, "forward": cmd_forward, "info": cmd_info}
        return commands[args.command](args)
    except DDPMError as e:
        _end_progress_line()
        print(f"ddpm {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_USAGE
    except (RuntimeError, MemoryError) as e:
        from .device import is_out_of_memory

        if not is_out_of_memory(e):
            raise
        _end_progress_line()
        print(
            f"ddpm {args.command}: error: ran out of memory: use a smaller image size, batch size, number of "
            "images or model, or close other programs",
            file=sys.stderr,
        )
        return EXIT_USAGE
    except OSError as e:  # a file that cannot be written or read (permissions, full disk)
        _end_progress_line()
        where = f"{e.filename}: " if e.filename else ""
        print(f"ddpm {args.command}: error: {_one_line(f'{where}{e.strerror or e}')}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"\nddpm {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


# ---- train -------------------------------------------------------------------------------


def _apply_flags(cfg, a) -> None:
    """Flags given on the command line override the config file / checkpoint."""
    pairs = [
        (cfg.data, "dataset", a.dataset),
        (cfg.data, "root", a.data_root),
        (cfg.data, "image_size", a.image_size),
        (cfg.data, "limit", a.limit),
        (cfg.model, "dim", a.dim),
        (cfg.model, "dim_mults", a.dim_mults),
        (cfg.schedule, "name", a.schedule),
        (cfg.schedule, "timesteps", a.timesteps),
        (cfg.train, "loss", a.loss),
        (cfg.train, "batch_size", a.batch_size),
        (cfg.train, "lr", a.lr),
        (cfg.train, "ema_decay", a.ema_decay),
        (cfg.train, "preview_every", a.preview_every),
        (cfg.train, "checkpoint_every", a.checkpoint_every),
        (cfg.train, "seed", a.seed),
        (cfg.train, "device", a.device),
        (cfg.train, "precision", a.precision),
        (cfg.train, "autosave_minutes", a.autosave_minutes),
    ]
    for section, name, value in pairs:
        if value is not None:
            setattr(section, name, value)
    if a.channels is not None:
        cfg.data.channels = cfg.model.channels = a.channels
    if a.no_flip:
        cfg.data.flip = False
    if a.no_ema:
        cfg.train.ema = False
    if a.compile is not None:
        cfg.train.compile = a.compile
    if a.steps is not None:
        cfg.train.steps, cfg.train.epochs = a.steps, None
    elif a.epochs is not None:
        cfg.train.steps, cfg.train.epochs = None, a.epochs


_progress_line_open = False  # a "\r" progress line is on stderr without its newline yet


def _download_progress(done: int, total, message: str) -> None:
    global _progress_line_open
    if not message.startswith("download"):
        text = message  # reading a folder or dataset: the message has the counts, not bytes
    elif total:
        text = f"{message}: {done / 2**20:.1f} / {total / 2**20:.1f} MB ({100 * done / total:.0f}%)"
    else:
        text = f"{message}: {done / 2**20:.1f} MB"
    sys.stderr.write(f"\r{text}")
    sys.stderr.flush()
    _progress_line_open = True


def _end_progress_line() -> None:
    """Finish an open progress line, so what follows (an error, the run) starts on its own line."""
    global _progress_line_open
    if _progress_line_open:
        sys.stderr.write("\n")
        _progress_line_open = False


def cmd_train(a) -> int:
    from .autosave import AutosaveClock
    from .config import RunConfig
    from .device import describe_device
    from .atomic import atomic_write_text, write_error_message
    from .run_folder import RunFolder, choose_run_folder, latest_checkpoint, new_run_folder, run_root_of
    from .training import Trainer
    from .unet import count_parameters

    if a.resume is not None:
        if a.config is not None or a.save_config is not None:
            raise ConfigError(
                "--config and --save-config are for new runs: a resumed run keeps its checkpoint's settings "
                "(flags such as --steps or --lr still change those that may change)"
            )
        ckpt_path = latest_checkpoint(a.resume) if a.resume.is_dir() else a.resume
        home = run_root_of(ckpt_path)
        out = choose_run_folder(a.out, continuing=home)  # before the data is loaded: fail fast
        trainer = Trainer.from_checkpoint(ckpt_path, progress=_download_progress, overrides=lambda c: _apply_flags(c, a))
        _end_progress_line()
        if trainer.step >= trainer.total_steps:
            raise ConfigError(
                f"{ckpt_path} is at step {trainer.step:,}, and this run was to end at step {trainer.total_steps:,}: "
                f"give --steps more than {trainer.step:,} (or --epochs) to train on"
            )
        print(f"resuming {ckpt_path} at step {trainer.step}")
        if home is None and a.out is None:
            print("the checkpoint is not in a run folder: this run's files go to a new one in runs/")
    else:
        cfg = RunConfig.load(a.config) if a.config else RunConfig()
        _apply_flags(cfg, a)
        cfg.validate()
        if a.save_config:
            try:
                atomic_write_text(a.save_config, cfg.to_json() + "\n")
            except OSError as e:
                raise ConfigError(write_error_message("the config to", a.save_config, e)) from None
            print(f"wrote {a.save_config}")
            return 0
        out = choose_run_folder(a.out)  # before the data is loaded: fail fast
        trainer = Trainer(cfg, progress=_download_progress)
        _end_progress_line()

    cfg = trainer.config
    run = RunFolder(out if out is not None else new_run_folder())
    run.write_config(cfg)
    print(
        f"data: {trainer.dataset.name} | model: {count_parameters(trainer.model):,} parameters | "
        f"T={cfg.schedule.timesteps} {cfg.schedule.name} | batch {trainer.batch_size} | "
        f"device: {trainer.describe_compute()}"
    )
    print(f"run folder: {run.root}")
    if trainer.compiles:
        print("compiling the network with torch.compile: the first step takes a minute or more")
    elif cfg.train.compile:
        print(f"note: compiling (--compile, train.compile) is used on CUDA GPUs only (on a CPU it made "
              f"training slower); training on {describe_device(trainer.device)} without it")
    bar = _ProgressBar(trainer.total_steps)
    autosave = AutosaveClock(cfg.train.autosave_minutes)
    last = None
    interrupted = False
    try:
        for rec in trainer.steps():
            last = rec
            run.log(rec)
            bar.update(rec)
            if rec.preview is not None:
                bar.note(f"preview: {run.save_preview(rec)}")
            every = cfg.train.checkpoint_every
            if rec.step < rec.total_steps and (every and rec.step % every == 0 or autosave.due()):
                kind = "checkpoint" if every and rec.step % every == 0 else "autosave"
                bar.note(f"{kind}: {run.save_checkpoint(trainer)}")
                autosave.saved()
    except KeyboardInterrupt:
        interrupted = True
        bar.note("interrupted: saving a checkpoint")
    finally:
        bar.close()
    path = run.save_checkpoint(trainer)
    run.close()
    if last is not None:
        print(f"done: step {last.step}, loss {last.loss:.4f}, {last.elapsed:.1f} s training")
    print(f"checkpoint: {path}")
    # Into the run's own folder: copied as it is, the line never replaces a file of the user's.
    root = run.root
    print(f"sample it:  ddpm sample {_quoted(root)} --png {_quoted(root / 'samples.png')} "
          f"--gif {_quoted(root / 'denoise.gif')}")
    return EXIT_INTERRUPTED if interrupted else 0


class _ProgressBar:
    """One self-rewriting line on a terminal; a line every few seconds in a log file."""

    def __init__(self, total: int, stream=None):
        self.total, self.stream = total, stream or sys.stdout  # looked up now: tests replace it
        self.tty = self.stream.isatty()
        self.smooth = None
        self.last_print = 0.0

    def update(self, rec) -> None:
        self.smooth = rec.loss if self.smooth is None else 0.95 * self.smooth + 0.05 * rec.loss
        now = time.monotonic()
        if not (rec.step == rec.total_steps or now - self.last_print > (0.1 if self.tty else 5.0)):
            return
        self.last_print = now
        frac = rec.step / max(rec.total_steps, 1)
        filled = int(24 * frac)
        line = (
            f"step {rec.step}/{rec.total_steps} [{'#' * filled}{'.' * (24 - filled)}] "
            f"epoch {rec.epoch} | loss {rec.loss:.4f} (avg {self.smooth:.4f}) | "
            f"{rec.images_per_sec:.0f} img/s | ETA {_hms(rec.eta_seconds)}"
        )
        self.stream.write(("\r\x1b[2K" + line) if self.tty else line + "\n")
        self.stream.flush()

    def note(self, text: str) -> None:
        self.stream.write(("\r\x1b[2K" if self.tty else "") + text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")


def _hms(seconds: Optional[float]) -> str:
    if seconds is None:
        return "–"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


# ---- sample ------------------------------------------------------------------------------


def cmd_sample(a) -> int:
    from .device import describe_device, pick_device
    from .export import check_output, save_png_grid, save_trajectory_gif
    from .model_io import load_for_sampling
    from .run_folder import latest_checkpoint
    from .samplers import sample_loop
    from .speed import autocast_dtype, configure_backend, describe_precision

    if a.gif_index is not None and not 0 <= a.gif_index < a.num:
        raise ConfigError(f"--gif-index {a.gif_index} is out of range: choose 0 to {a.num - 1}")
    if a.steps is not None and a.sampler == "ddpm":
        raise ConfigError("--steps is for --sampler ddim: DDPM always takes all of the model's T steps")
    default_png = a.png is None and a.gif is None
    png = _first_free_default_png() if default_png else a.png  # a default name is taken only when written
    for out, what in ((png, "PNG"), (a.gif, "GIF")):
        if out is not None:
            check_output(out, what)  # before the sampling, not after it
    path = latest_checkpoint(a.checkpoint) if a.checkpoint.is_dir() else a.checkpoint
    loaded = load_for_sampling(path, device=pick_device(a.device), use_ema=not a.no_ema, image_size=a.image_size)
    configure_backend(loaded.device)
    cfg = loaded.config
    T = cfg.schedule.timesteps
    if a.steps is not None and a.sampler == "ddim" and a.steps > T:
        raise ConfigError(f"--steps {a.steps} is more than the model's T={T}")
    shape = (a.num, cfg.model.channels, cfg.data.image_size, cfg.data.image_size)
    import torch

    gen = torch.Generator().manual_seed(a.seed)  # CPU generator: the same noise on any device
    print(
        f"{loaded.source}: step {loaded.step}, {'EMA' if loaded.uses_ema else 'live'} weights | "
        f"{a.sampler.upper()}{f' {a.steps or min(50, T)} steps' if a.sampler == 'ddim' else f' {T} steps'} | "
        f"{describe_device(loaded.device)}, {describe_precision(autocast_dtype(a.precision, loaded.device))}"
    )
    frames = []
    t0 = time.perf_counter()
    last = None
    for step in sample_loop(
        loaded.model,
        loaded.schedule,
        shape,
        sampler=a.sampler,
        steps=a.steps,
        eta=a.eta,
        generator=gen,
        precision=a.precision,
    ):
        last = step
        if a.gif:
            frames.append(step.x_t.cpu())
        if sys.stdout.isatty():
            sys.stdout.write(f"\rsampling: step {step.index + 1}/{step.num_steps}")
            sys.stdout.flush()
    final = last.x_prev.clamp(-1, 1).cpu()
    if sys.stdout.isatty():
        sys.stdout.write("\n")
    print(f"sampled {a.num} images in {time.perf_counter() - t0:.1f} s")
    if default_png:
        written = _save_default_png(final)
        kept = f" ({DEFAULT_PNG} already exists and was kept)" if written != DEFAULT_PNG else ""
        print(f"wrote {written}{kept}")
    elif a.png is not None:
        print(f"wrote {save_png_grid(final, a.png, scale=export_scale(final.shape[-1]))}")  # replaces: the user named it
    if a.gif:
        frames.append(final)
        gif = save_trajectory_gif(
            frames, a.gif, index=a.gif_index, stride=a.gif_stride, duration_ms=a.gif_duration,
            scale=export_scale(final.shape[-1]),
        )
        print(f"wrote {gif}")
    return 0


def _quoted(path: Path) -> str:
    """A path as a shell takes it (quoted where it has spaces)."""
    return shlex.quote(str(path))


def _first_free_default_png() -> Path:
    from .atomic import numbered_names

    # lexists: a dangling link counts as taken (writing would go to where it points)
    return next(p for p in numbered_names(DEFAULT_PNG) if not os.path.lexists(p))


def _save_default_png(final) -> Path:
    """Write the grid under the first free default name, never over an existing file.

    The name is taken with an exclusive create (O_EXCL) rather than an exists() check, so
    another `ddpm sample` finishing in the same folder meanwhile cannot get the same name;
    the atomic write then replaces only this empty placeholder of ours."""
    from .atomic import claim_first_free, numbered_names
    from .export import save_png_grid

    path = claim_first_free(numbered_names(DEFAULT_PNG), lambda p: open(p, "x").close())
    try:
        return save_png_grid(final, path, scale=export_scale(final.shape[-1]))
    except BaseException:
        path.unlink(missing_ok=True)  # our empty placeholder: no empty samples-N.png left behind
        raise


# ---- forward -----------------------------------------------------------------------------


def cmd_forward(a) -> int:
    from .data import to_model_range
    from .export import check_output, save_forward_gif
    from .image_folder import load_image
    from .schedules import NoiseSchedule
    from .shapes import make_shapes

    schedule = NoiseSchedule.from_name(a.schedule, a.timesteps)
    check_output(a.gif, "GIF")
    if a.image is not None:
        x0 = load_image(a.image, a.image_size, a.channels)[None]
    else:
        x0 = to_model_range(make_shapes(a.num, a.image_size, a.channels, seed=a.seed).images)
    import torch

    gen = torch.Generator().manual_seed(a.seed)
    path = save_forward_gif(x0, schedule, a.gif, num_frames=a.frames, generator=gen, scale=export_scale(a.image_size))
    print(f"wrote {path} ({a.frames} frames, {a.schedule} schedule, T={a.timesteps})")
    return 0


# ---- info --------------------------------------------------------------------------------


def cmd_info(a) -> int:
    from .checkpoint import describe_checkpoint
    from .run_folder import latest_checkpoint

    path = latest_checkpoint(a.checkpoint) if a.checkpoint.is_dir() else a.checkpoint
    print(describe_checkpoint(path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
