"""Fixtures of the GUI tests: no test may leave a worker thread running, and a tiny config.

Every test runs offscreen (tests/conftest.py sets QT_QPA_PLATFORM). The tiny config trains
a real U-Net on the real built-in shapes through the real Trainer, just small enough that a
step takes a few milliseconds on a 2-core CPU.
"""

from __future__ import annotations

import pytest

from ddpm_core.config import DataConfig, ModelConfig, RunConfig, ScheduleConfig, TrainConfig

# A thread that is merely finishing (its last signal already sent) gets this long to end
# before it counts as left running.
GRACE_MS = 2000


@pytest.fixture(autouse=True)
def no_live_threads(qapp):
    """Fail any test that leaves a QThread running (then stop it, so others are not hit)."""
    from ddpm_gui import workers

    yield
    for thread in workers.live_threads():
        thread.wait(GRACE_MS)
    left = workers.live_threads()
    if left:
        names = ", ".join(t.objectName() or "unnamed" for t in left)
        workers.stop_all(timeout=None)
        pytest.fail(f"test left {len(left)} QThread(s) running: {names}")


@pytest.fixture(autouse=True)
def delete_widgets_before_collecting(qtbot):
    """Widgets given to qtbot.addWidget are deleted by Qt first, then collected.

    pytest-qt keeps only weak references and deletes a test's widgets at teardown with
    deleteLater(). A top-level widget is owned by Python, and its Python side is a web of
    cycles (slots, plot items), so between the end of the test and that deletion a garbage
    collection could clear its objects while the C++ widgets still live; Qt then calls
    Python overrides on emptied objects (pyqtgraph's LabelItem.sizeHint). Holding strong
    references until Qt has deleted them keeps the order right: delete, then collect, here
    on the GUI thread (collections never run on worker threads: see ddpm_gui.gui_gc).
    """
    import gc

    from PySide6.QtCore import QCoreApplication, QEvent

    kept = []
    add_widget = qtbot.addWidget

    def add_and_keep(widget, **kwargs):
        kept.append(widget)
        return add_widget(widget, **kwargs)

    qtbot.addWidget = add_and_keep
    yield
    # pytest-qt has closed them and called deleteLater() by now.
    QCoreApplication.sendPostedEvents(None, QEvent.DeferredDelete)
    kept.clear()
    gc.collect()


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    # Training and the GUI share 2 cores here; one intra-op thread each avoids the two
    # fighting over both cores (which makes tiny models many times slower).
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_tiny_config(**train) -> RunConfig:
    cfg = RunConfig(
        model=ModelConfig(dim=8, dim_mults=(1, 2), channels=1),
        schedule=ScheduleConfig("linear", 20),
        data=DataConfig(dataset="shapes", image_size=8, channels=1, limit=64),
        train=TrainConfig(
            batch_size=8, lr=1e-3, steps=30, preview_every=10, preview_count=4, preview_steps=5,
            checkpoint_every=0, device="cpu",
        ),
    )
    for key, value in train.items():
        setattr(cfg.train, key, value)
    return cfg.validate()


@pytest.fixture
def tiny_config() -> RunConfig:
    return make_tiny_config()


@pytest.fixture(scope="session")
def make_config():
    """make_config(steps=..., preview_every=...): the tiny config with train settings changed."""
    return make_tiny_config


@pytest.fixture
def state(qapp):
    from ddpm_gui.state import AppState

    s = AppState()
    s.set_schedule("linear", 20)
    return s


@pytest.fixture
def errors(state):
    """Every message sent to state.errorOccurred during the test."""
    seen: list[str] = []
    state.errorOccurred.connect(seen.append)
    return seen
