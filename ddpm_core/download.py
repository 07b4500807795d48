"""A small, dependency-free file downloader with progress, md5 check and atomic writes.

Used by `ddpm_core.remote_datasets` to fetch MNIST, Fashion-MNIST and CIFAR-10 on first
use. Kept separate (and free of torch) so it is easy to test against a local server.

Guarantees:
- the destination file only ever appears complete: it is written with
  `ddpm_core.atomic.atomic_open` (a hidden temp file in the same folder, renamed into
  place), and the size and md5 checks run inside that block, so only a good copy is ever
  renamed; every failure or exception deletes the temp file;
- mirrors are tried in order; the first good copy wins;
- progress is reported as `progress(done_bytes, total_bytes_or_None, message)`; if the
  callback raises (e.g. the GUI's "Cancel"), the exception propagates and nothing is left.
"""

from __future__ import annotations

import hashlib
import http.client
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Optional, Sequence

from .atomic import atomic_open
from .errors import DataError

# progress(done, total, message): done/total in bytes while downloading (total None when
# the server does not say), in items while reading image folders.
ProgressFn = Callable[[int, Optional[int], str], None]

CHUNK = 1 << 16  # 64 KiB: small enough for smooth progress, large enough to be cheap
TIMEOUT_S = 30.0  # per socket operation, not for the whole file
# Report at most this often, so a GUI callback that repaints is not called 1000s of times.
PROGRESS_INTERVAL_S = 0.1
USER_AGENT = "ddpm-studio/1.0 (Python urllib)"  # some hosts refuse urllib's default agent


class DownloadError(DataError):
    """Every mirror failed; `reasons` holds one short line per URL tried."""

    def __init__(self, message: str, reasons: Sequence[str] = (), checksum_failed: bool = False,
                 reason: str = ""):
        super().__init__(message)
        self.reasons = list(reasons)  # "URL: why" for every mirror tried; empty for local errors
        self.checksum_failed = checksum_failed  # some mirror served a file with a wrong md5
        self.reason = reason  # the last mirror's short "why"


def md5_of(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def download_file(
    urls: Sequence[str],
    dest: str | Path,
    md5: Optional[str] = None,
    progress: Optional[ProgressFn] = None,
    label: Optional[str] = None,
    timeout: float = TIMEOUT_S,
) -> Path:
    """Download the first working URL of `urls` to `dest`; return `dest`.

    Raises `DownloadError` (a `DataError`) naming the file when no mirror gives a good
    copy. Exceptions raised by `progress` propagate unchanged (after cleanup).
    """
    dest = Path(dest)
    label = label or dest.name
    if not urls:
        raise DownloadError(f"no download address is known for {label}")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DownloadError(f"cannot create the download folder {dest.parent}: {e.strerror or e}") from None

    reasons: list[str] = []
    reason = ""
    checksum_failed = False
    for url in urls:
        try:
            _fetch_one(url, dest, md5, progress, label, timeout)
            return dest
        except _LocalError as e:
            # Our side (folder not writable, disk full): other mirrors would fail the same.
            raise DownloadError(f"cannot save {label} to {dest.parent}: {_short_reason(e.error)}") from None
        except _ChecksumMismatch as e:
            checksum_failed = True
            reason = str(e)
            reasons.append(f"{url}: {reason}")
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
            # URLError/HTTPError, timeouts and resets (OSError), truncated bodies
            # (IncompleteRead), malformed URLs (ValueError): try the next mirror.
            reason = _short_reason(e)
            reasons.append(f"{url}: {reason}")
    what = "wrong checksum" if checksum_failed else "no network?"
    raise DownloadError(f"could not download {label} ({what} {reason})", reasons, checksum_failed, reason)


class _ChecksumMismatch(Exception):
    pass


class _LocalError(Exception):
    """An OSError on our side, kept apart from network OSErrors."""

    def __init__(self, error: OSError):
        super().__init__(str(error))
        self.error = error


def _fetch_one(url: str, dest: Path, md5: Optional[str], progress: Optional[ProgressFn],
               label: str, timeout: float) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    # atomic_open: a hidden temp file next to dest, flushed, fsync'ed and renamed over
    # dest only when the block ends cleanly; any exception (a network error, a wrong
    # md5, the progress callback's Cancel) deletes it and leaves dest untouched.
    # OSErrors out of atomic_open itself (creating the temp file before the block,
    # fsync/rename after it) are ours; inside the block only writes are.
    in_block = False
    try:
        with atomic_open(dest, "wb") as out:
            in_block = True
            with urllib.request.urlopen(request, timeout=timeout) as resp:
                total = _content_length(resp)
                h = hashlib.md5()
                done = 0
                last_report = 0.0
                message = f"downloading {label}"
                if progress:
                    progress(0, total, message)
                while True:
                    block = resp.read(CHUNK)
                    if not block:
                        break
                    try:
                        out.write(block)
                    except OSError as e:
                        raise _LocalError(e) from None
                    h.update(block)
                    done += len(block)
                    now = time.monotonic()
                    if progress and now - last_report >= PROGRESS_INTERVAL_S:
                        last_report = now
                        progress(done, total, message)
                if total is not None and done != total:
                    raise OSError(f"connection closed after {done} of {total} bytes")
            # Still inside atomic_open: a damaged copy never replaces dest.
            if md5 is not None and h.hexdigest() != md5.lower():
                raise _ChecksumMismatch(f"md5 {h.hexdigest()} does not match the expected {md5}")
            in_block = False
    except OSError as e:
        if in_block:
            raise  # the network's: download_file tries the next mirror
        raise _LocalError(e) from None
    if progress:
        progress(done, total if total is not None else done, f"downloaded {label}")


def _content_length(resp) -> Optional[int]:
    value = resp.headers.get("Content-Length") if getattr(resp, "headers", None) else None
    try:
        n = int(value) if value is not None else None
    except ValueError:
        return None
    return n if n is not None and n >= 0 else None


def _short_reason(e: BaseException) -> str:
    """One short phrase for an error, without tracebacks or nested reprs."""
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        reason = e.reason
        if isinstance(reason, OSError) and reason.strerror:
            return reason.strerror
        return str(reason)
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e) or type(e).__name__
