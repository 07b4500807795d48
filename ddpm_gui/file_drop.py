"""Dropping a file from the desktop onto a panel: the one local file dropped, or None."""

from __future__ import annotations

from typing import Optional


def dropped_file(event) -> Optional[str]:
    """The local path of a drag/drop event carrying exactly one file (else None)."""
    mime = event.mimeData()
    if mime is None or not mime.hasUrls():
        return None
    urls = mime.urls()
    if len(urls) != 1 or not urls[0].isLocalFile():
        return None
    return urls[0].toLocalFile() or None


class OpensDroppedCheckpoints:
    """Mixin for a panel with `open_checkpoint(path)`: a file dropped on it is opened.

    `accepts_drop()` says whether the panel can open one now (e.g. not while training)."""

    def accepts_drop(self) -> bool:
        return True

    def dragEnterEvent(self, event) -> None:
        if dropped_file(event) and self.accepts_drop():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        path = dropped_file(event)
        if path:
            event.acceptProposedAction()
            self.open_checkpoint(path)
