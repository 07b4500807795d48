"""Atomic file writes: a crash mid-save never destroys or half-writes the previous file.

The bytes go to a hidden temporary file in the *same* directory (so the final rename
stays on one file system and is atomic), are flushed and fsync'ed, and only then is the
temporary file renamed over the target with `os.replace`. Finally the directory itself
is fsync'ed (POSIX only) so the rename survives a power cut. On any error, including
KeyboardInterrupt, the temporary file is removed and the target is left untouched.

A SIGKILL or power cut can still leave a stray `.<name>.<random>.tmp` file behind (it is
never mistaken for the real file); `remove_stale_temp_files` cleans those up.

Used for checkpoints, PNG and GIF exports and the metrics log. Plain standard library:
no torch, no Qt.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import itertools
import os
import tempfile
from pathlib import Path
from typing import IO, Callable, Iterator, Union

__all__ = [
    "atomic_write",
    "atomic_open",
    "check_writable",
    "atomic_write_bytes",
    "atomic_write_text",
    "remove_stale_temp_files",
    "write_error_message",
    "numbered_names",
    "claim_first_free",
    "TEMP_SUFFIX",
]

PathLike = Union[str, "os.PathLike[str]"]

TEMP_SUFFIX = ".tmp"


def _read_umask() -> int:
    # os.umask can only be read by setting it; do it once at import time rather than per
    # write, because changing the umask is process-wide and would race with other threads.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def _temp_prefix(target: Path) -> str:
    return f".{target.name}."


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable. Not possible on Windows, or on some file systems."""
    if os.name == "nt":
        return
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    try:
        fd = os.open(directory, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        # e.g. EINVAL on file systems that do not support syncing directories: the data
        # itself is already safe, only the rename's durability is best effort.
        pass
    finally:
        os.close(fd)


def _target(path: PathLike) -> Path:
    """The file a write to `path` replaces; OSError (naming `path`) where none may be."""
    target = Path(path)
    if target.is_symlink():
        # Replace the file the link points to, not the link (a rename would put a plain file
        # where the link was).
        target = Path(os.path.realpath(target))
    # Errors name `path`, not the hidden temporary file the user never asked for.
    if target.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder", str(path))
    if target.exists() and not target.is_file():
        # A rename over /dev/full or a named pipe would replace the device or pipe itself.
        raise OSError(errno.EINVAL, "is a device, a pipe or a socket, not a file", str(path))
    return target


def _temp_file(path: PathLike, target: Path) -> tuple[int, Path]:
    """A new hidden temporary file beside `target`: (descriptor, path)."""
    directory = target.parent if str(target.parent) else Path(".")
    try:
        fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=_temp_prefix(target), suffix=TEMP_SUFFIX)
    except OSError as e:
        raise type(e)(e.errno, f"cannot create a file in {directory} ({e.strerror})", str(path)) from None
    return fd, Path(tmp_name)


def check_writable(path: PathLike) -> None:
    """Raise the OSError writing `path` would raise for where it is (a folder, a device, a
    folder that cannot be written to), before the work whose result is to go there. Folders
    it has to make for the test are removed again: if that work fails, nothing is left."""
    target = _target(path)
    missing = []  # the folders to make, deepest first
    folder = target.parent
    while str(folder) not in ("", ".") and not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _temp_file(path, target)
        os.close(fd)
        tmp.unlink()
    finally:
        for made in missing:
            try:
                made.rmdir()
            except OSError:
                break  # not made here, or something else was written into it meanwhile


@contextlib.contextmanager
def atomic_open(path: PathLike, mode: str = "wb", *, encoding: str | None = None,
                newline: str | None = None) -> Iterator[IO]:
    """Open a temporary file that replaces `path` when the `with` block ends cleanly.

    If the block raises, the temporary file is deleted and `path` keeps its old content.
    `mode` must be a write mode: "wb" (default) or "w" (text, UTF-8 unless `encoding`).
    A symbolic link is followed (the file it points to is replaced, the link stays); a
    folder, device, pipe or socket at `path` is refused with an OSError.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_open supports mode 'wb' or 'w', not {mode!r}")
    target = _target(path)
    directory = target.parent if str(target.parent) else Path(".")
    if mode == "w" and encoding is None:
        encoding = "utf-8"
    fd, tmp = _temp_file(path, target)
    try:
        # mkstemp creates the file 0600; give it the target's mode (or the usual default)
        # so replacing a file does not silently change who may read it.
        try:
            perms = target.stat().st_mode & 0o7777
        except OSError:
            perms = 0o666 & ~_UMASK
        try:
            os.chmod(tmp, perms)
        except OSError:
            pass

        if mode == "wb":
            f = os.fdopen(fd, "wb")
        else:
            f = os.fdopen(fd, "w", encoding=encoding, newline=newline)
        fd = -1  # the file object owns the descriptor now
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())  # data on disk before the rename makes it visible
        os.replace(tmp, target)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(directory)


_FULL = "the disk is full: free some space or choose another drive"
_NOT_WRITABLE = "this folder cannot be written to: choose another folder"
# What a person can do about each reason the system gives for a failed write.
_WRITE_ADVICE = {
    errno.ENOSPC: _FULL,
    getattr(errno, "EDQUOT", errno.ENOSPC): _FULL,
    errno.EROFS: "the drive is read-only: choose another folder",
    errno.EACCES: _NOT_WRITABLE,
    errno.EPERM: _NOT_WRITABLE,
    errno.EISDIR: "give a file name, not a folder",
    # making the folders of a path one part of which is a file
    errno.EEXIST: "a part of the path is a file, not a folder: choose another folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder: choose another folder",
    errno.ENAMETOOLONG: "the name is too long: choose a shorter one",
    errno.ENOENT: "that folder cannot be made there: choose an existing folder",
    errno.EINVAL: "choose another file name",
}


def write_error_message(what: str, path: PathLike, error: OSError) -> str:
    """One line for a person: which file could not be written, why, and what to do."""
    advice = _WRITE_ADVICE.get(error.errno, "check free disk space and that the folder is writable")
    return f"cannot write {what} {path}: {error.strerror or error} — {advice}"


def atomic_write(path: PathLike, write_fn: Callable[[IO[bytes]], object]) -> Path:
    """Write `path` atomically: `write_fn(f)` writes into a binary file object.

    Example: ``atomic_write(p, lambda f: image.save(f, format="PNG"))``.
    Returns the target path. On error the old file (if any) is intact and no temporary
    file remains; the error propagates.
    """
    with atomic_open(path, "wb") as f:
        write_fn(f)
    return Path(path)


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    """Replace `path` atomically with `data`."""
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Replace `path` atomically with `text`."""
    with atomic_open(path, "w", encoding=encoding, newline="") as f:
        f.write(text)
    return Path(path)


def remove_stale_temp_files(path: PathLike) -> list[Path]:
    """Delete temporary files a killed process left behind while writing `path`.

    Only call this when no other process is writing `path` at the same moment.
    Returns the files removed.
    """
    target = Path(path)
    if target.is_symlink():  # the temporary files are beside the file the link points to
        target = Path(os.path.realpath(target))
    removed = []
    directory = target.parent if str(target.parent) else Path(".")
    try:
        candidates = list(directory.glob(glob.escape(_temp_prefix(target)) + "*" + TEMP_SUFFIX))
    except OSError:
        return removed
    for p in candidates:
        with contextlib.suppress(OSError):
            p.unlink()
            removed.append(p)
    return removed


# =====================================================================================
# new names that never replace anything
# =====================================================================================


def numbered_names(path: Path, sep: str = "-") -> Iterator[Path]:
    """path, then the same name numbered from 2: samples.png, samples-2.png, samples-3.png …"""
    yield path
    for k in itertools.count(2):
        yield path.with_name(f"{path.stem}{sep}{k}{path.suffix}")


def claim_first_free(names: Iterator[Path], create: Callable[[Path], None]) -> Path:
    """The first of `names` that `create` (a mkdir, or an open with "x") could make. It raises
    FileExistsError for a name taken, and makes it otherwise in one step, so two processes
    never get the same name, as an exists() check followed by a write could."""
    for path in names:
        try:
            create(path)
            return path
        except FileExistsError:
            continue
    raise FileExistsError("every name was taken")

