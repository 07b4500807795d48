"""The texts of Help › About and Help › How to start (rich text for QMessageBox)."""

from __future__ import annotations

from importlib import metadata

APP_NAME = "DDPM Studio"

HO_2020 = (
    "Jonathan Ho, Ajay Jain, Pieter Abbeel: <i>Denoising Diffusion Probabilistic Models</i>, "
    "NeurIPS 2020 (<a href='https://arxiv.org/abs/2006.11239'>arXiv:2006.11239</a>)"
)
SONG_2021 = (
    "Jiaming Song, Chenlin Meng, Stefano Ermon: <i>Denoising Diffusion Implicit Models</i> (DDIM), "
    "ICLR 2021 (<a href='https://arxiv.org/abs/2010.02502'>arXiv:2010.02502</a>)"
)
ANNOTATED = (
    "Niels Rogge and Kashif Rasul: <i>The Annotated Diffusion Model</i>, Hugging Face blog, 2022 "
    "(<a href='https://huggingface.co/blog/annotated-diffusion'>huggingface.co/blog/annotated-diffusion</a>)"
)
NICHOL_2021 = (
    "Alex Nichol, Prafulla Dhariwal: <i>Improved Denoising Diffusion Probabilistic Models</i>, "
    "ICML 2021 (the cosine schedule)"
)


def app_version() -> str:
    try:
        return metadata.version("ddpm-studio")
    except metadata.PackageNotFoundError:  # run from a clone without `pip install -e .`
        return "development version"


def about_html() -> str:
    return (
        f"<h3>{APP_NAME} {app_version()}</h3>"
        "<p>Train a denoising diffusion model and watch every part of it work: the forward "
        "process, the noise schedules, the training loss and the reverse (denoising) process.</p>"
        "<p>It implements the model and training of</p><ul>"
        f"<li>{HO_2020}</li>"
        f"<li>{SONG_2021}</li>"
        f"<li>{NICHOL_2021}</li></ul>"
        f"<p>following the code and notation of {ANNOTATED}.</p>"
        "<p>Licensed under the MIT license.</p>"
    )


def how_to_start_html() -> str:
    return (
        "<h3>How to start</h3><ol>"
        "<li><b>Forward process</b> (Ctrl+1): scrub <i>t</i> with the slider or the arrow keys and "
        "watch q(x<sub>t</sub>|x<sub>0</sub>) turn an image into noise. As in the paper, x<sub>0</sub> "
        "is the clean image and t counts noising steps from 1 to T. Try another schedule or T, "
        "or drop your own image on the tab.</li>"
        "<li><b>Schedules</b> (Ctrl+2): how β<sub>t</sub>, ᾱ<sub>t</sub> and the signal-to-noise "
        "ratio change over t; tick <i>Compare schedules</i> to see all four. Click a plot to move t.</li>"
        "<li><b>Training</b> (Ctrl+3): press <b>Start</b> (F5). The defaults (built-in 16×16 shapes, "
        "a small U-Net) learn recognisable shapes on a laptop CPU in a few minutes. Watch the loss "
        "and the preview samples; pause with F6, stop with Shift+F5. A stopped run can be "
        "continued: <i>Continue this run</i>, then Start.</li>"
        "<li><b>Denoising</b> (Ctrl+4): sample from the model and watch pure noise x<sub>T</sub> "
        "become an image step by step; export the result as a GIF (Ctrl+E) or PNG (Ctrl+Shift+E).</li>"
        "</ol>"
        "<p>Save a trained model with <b>File › Save checkpoint…</b> (Ctrl+S) and load one with "
        "<b>File › Open checkpoint…</b> (Ctrl+Shift+O). Hover over any control for what it means "
        "in DDPM terms.</p>"
    )
