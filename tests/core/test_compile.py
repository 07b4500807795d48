"""train.compile: the network trained through torch.compile computes what it computes without.

Compiling is used on CUDA only (on a CPU it was slower). The real compiler (TorchInductor)
generates and builds code, which takes minutes on a small CPU; these tests let the CPU
compile and hand the traced network to "aot_eager", which traces forward and backward the
same way and runs the traced graphs as they are. The device tests run Inductor on a GPU.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from ddpm_core import compiled, training
from ddpm_core.training import Trainer

from test_speed_paths import tiny


@pytest.fixture(autouse=True)
def fresh_compiler():
    yield
    torch._dynamo.reset()  # compiled code of one test never serves another


@pytest.fixture
def cpu_compiles(monkeypatch):
    monkeypatch.setattr(compiled, "PAYS_OFF_ON", ("cpu", "cuda"))


def run(compile: bool, steps: int = 5) -> tuple[list[float], Trainer]:
    cfg = tiny("fp32", steps)
    cfg.train.compile = compile
    trainer = Trainer(cfg)
    return [r.loss for r in trainer.steps()], trainer


def test_compiled_training_gives_the_same_losses(monkeypatch, cpu_compiles):
    traced = []
    aot_eager = torch._dynamo.lookup_backend("aot_eager")

    def backend(graph, inputs):
        traced.append(graph)
        return aot_eager(graph, inputs)

    monkeypatch.setattr(compiled, "BACKEND", backend)
    plain, _ = run(compile=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback warning: it really ran compiled
        losses, trainer = run(compile=True)
    assert traced, "torch.compile never traced the network"
    assert isinstance(trainer._network, compiled.CompiledNetwork) and not trainer._network.failed
    np.testing.assert_allclose(losses, plain, rtol=1e-5)
    # The U-Net itself stays a plain module: what checkpoints and EMA copy.
    assert type(trainer.model).__name__ == "Unet" and not hasattr(trainer.ema, "_compiled")


def test_a_compiler_that_fails_warns_once_and_training_goes_on(monkeypatch, cpu_compiles):
    def broken(graph, inputs):
        raise RuntimeError("Failed to find C compiler. Please specify via CC environment variable.")

    monkeypatch.setattr(compiled, "BACKEND", broken)
    plain, _ = run(compile=False)
    with pytest.warns(UserWarning, match="could not compile the network .*C compiler.*training without it") as seen:
        losses, trainer = run(compile=True)
    assert len([w for w in seen if "could not compile" in str(w.message)]) == 1
    assert trainer._network.failed
    np.testing.assert_allclose(losses, plain, rtol=1e-5)


def test_on_the_cpu_compile_is_not_used():
    _, trainer = run(compile=True, steps=1)
    assert not trainer.compiles and trainer._network is trainer.model


def test_the_estimate_of_time_left_leaves_out_the_first_step(monkeypatch):
    # The first step of a session records CUDA graphs or compiles: here it takes 100 s,
    # every later one 1 s. The estimate must follow the later steps.
    durations = iter([100.0] + [1.0] * 9)

    class Clock:
        now = 0.0
        started = False

        @classmethod
        def perf_counter(cls):
            if cls.started:
                cls.now += next(durations)
            cls.started = not cls.started
            return cls.now

    monkeypatch.setattr(training, "time", Clock)
    records = list(Trainer(tiny("fp32", 10)).steps())
    assert records[0].seconds == 100.0
    assert records[3].seconds_per_step == pytest.approx(1.0)
    assert records[3].eta_seconds == pytest.approx(6.0)  # 6 steps left at 1 s each
    assert records[-1].elapsed == pytest.approx(109.0)
