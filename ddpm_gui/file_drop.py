"""Dropping a file from the desktop onto the window.

A panel takes the kind of file it opens (the Forward tab images, the Training and
Denoising tabs checkpoints); any other drop goes on to the main window, which sends it to
the tab that opens that kind. A file of neither kind is not accepted: the pointer says so.
"""

from __future__ import annotations

import os
from typing import Iterable, Optional

from PySide6.QtCore import Qt

from ddpm_core.image_folder import IMAGE_EXTENSIONS

CHECKPOINT_SUFFIXES = frozenset({".safetensors", ".pt", ".pth"})  # what "Open checkpoint" reads


def dropped_file(event, suffixes: Optional[Iterable[str]] = None) -> Optional[str]:
    """The local path of a drag/drop event carrying exactly one file, whose name ends in
    one of `suffixes` when given (else None)."""
    mime = event.mimeData()
    if mime is None or not mime.hasUrls():
        return None
    urls = mime.urls()
    if len(urls) != 1 or not urls[0].isLocalFile():
        return None
    path = urls[0].toLocalFile()
    if not path or (suffixes is not None and os.path.splitext(path)[1].lower() not in suffixes):
        return None
    return path


def accept_as_copy(event) -> None:
    """Accept a drag or drop as a copy. Qt proposes Move first, and a drag source that
    honours Move deletes its original: the user's checkpoint or photo."""
    event.setDropAction(Qt.CopyAction)
    event.accept()


def is_image(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS


class OpensDroppedCheckpoints:
    """Mixin for a panel with `open_checkpoint(path)`: a checkpoint dropped on it is opened.

    `accepts_drop()` says whether the panel can open one now (e.g. not while training)."""

    def accepts_drop(self) -> bool:
        return True

    def dragEnterEvent(self, event) -> None:
        if dropped_file(event, CHECKPOINT_SUFFIXES) and self.accepts_drop():
            accept_as_copy(event)
        else:
            event.ignore()  # the main window may send it elsewhere

    def dropEvent(self, event) -> None:
        path = dropped_file(event, CHECKPOINT_SUFFIXES)
        if path:
            accept_as_copy(event)
            self.open_checkpoint(path)
        else:
            event.ignore()
