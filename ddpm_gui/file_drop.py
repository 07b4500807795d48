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
