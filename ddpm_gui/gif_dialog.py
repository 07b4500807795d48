"""The small dialog of GIF export options: which image, which frames, how fast, looping."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QSpinBox,
)

from ddpm_core.export import trajectory_frame_indices


@dataclass
class GifOptions:
    index: Optional[int] = None  # None: the whole grid; else one image (0-based)
    frames: str = "x_t"  # "x_t": the noisy images (the article's animation); "x0": predictions x̂_0
    stride: int = 1  # keep every stride-th step (the final sample is always kept)
    duration_ms: int = 40  # per frame
    loop: bool = True  # repeat forever, or play once


class GifOptionsDialog(QDialog):
    def __init__(self, image_count: int, frame_count: int, options: Optional[GifOptions] = None, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Export denoising GIF")
        self.frame_count = frame_count
        o = options or GifOptions()

        self.image = QComboBox()
        self.image.addItem("Whole grid", None)
        for i in range(image_count):
            self.image.addItem(f"Image {i + 1}", i)
        self.image.setCurrentIndex(0 if o.index is None or o.index >= image_count else o.index + 1)
        self.image.setToolTip("Animate every image as a grid, or one image on its own.")
        self.frames = QComboBox()
        self.frames.addItem("xₜ: the image being denoised", "x_t")
        self.frames.addItem("predicted x₀: the model's guess of the final image", "x0")
        self.frames.setCurrentIndex(0 if o.frames == "x_t" else 1)
        self.frames.setToolTip(
            "xₜ goes from pure noise to the sample, as in The Annotated Diffusion Model; the predicted "
            "x₀ shows how the model's guess of the clean image sharpens step by step."
        )
        self.stride = QSpinBox()
        self.stride.setRange(1, max(1, frame_count))
        self.stride.setValue(o.stride)
        self.stride.setToolTip("Keep every n-th step to make the GIF shorter; the final sample is always the last frame.")
        self.duration = QSpinBox()
        self.duration.setRange(20, 5000)
        self.duration.setSingleStep(10)
        self.duration.setSuffix(" ms")
        self.duration.setValue(o.duration_ms)
        self.duration.setToolTip("How long each frame shows (GIFs count in 10 ms; browsers slow down frames under 20 ms).")
        self.loop = QCheckBox("Loop forever")
        self.loop.setChecked(o.loop)
        self.summary = QLabel("")
        self.stride.valueChanged.connect(self._update_summary)
        self.duration.valueChanged.connect(self._update_summary)

        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.button(QDialogButtonBox.Ok).setText("Export…")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form = QFormLayout(self)
        form.addRow("Image", self.image)
        form.addRow("Frames", self.frames)
        form.addRow("Keep every", self.stride)
        form.addRow("Frame duration", self.duration)
        form.addRow("", self.loop)
        form.addRow(self.summary)
        form.addRow(buttons)
        self._update_summary()

    def options(self) -> GifOptions:
        return GifOptions(
            index=self.image.currentData(),
            frames=self.frames.currentData(),
            stride=self.stride.value(),
            duration_ms=self.duration.value(),
            loop=self.loop.isChecked(),
        )

    def _update_summary(self) -> None:
        n = len(trajectory_frame_indices(self.frame_count, self.stride.value()))
        seconds = n * self.duration.value() / 1000 + 1.0  # the last frame is held for a second
        self.summary.setText(f"{n} frames, about {seconds:.1f} s")
