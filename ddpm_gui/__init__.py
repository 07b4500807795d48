"""DDPM Studio's desktop app (PySide6 + pyqtgraph). It drives `ddpm_core` and adds no math."""
