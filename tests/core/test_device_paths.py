"""The engine on the device it is given: the paths a GPU takes give what the plain path gives.

The device is the CPU unless DDPM_TEST_DEVICE names another (`DDPM_TEST_DEVICE=cuda
pytest tests/core/test_device_paths.py` on a GPU machine; scripts/device_check.sh does
that). On the CPU these tests check the same code with the CUDA-only switches (graphs,
asynchronous loss copies, fused Adam) falling back to their plain forms.
"""

import os
import warnings

import numpy as np
import pytest
import torch

from ddpm_core import RunConfig, Trainer, compiled
from ddpm_core.checkpoint import load_checkpoint
from ddpm_core.cuda_graphs import _GraphedEps, denoiser
from ddpm_core.errors import TrainingDiverged
from ddpm_core.model_io import load_for_sampling
from ddpm_core.samplers import sample

DEVICE = torch.device(os.environ.get("DDPM_TEST_DEVICE", "cpu"))


def config(precision="fp32", **train) -> RunConfig:
    cfg = RunConfig()
    cfg.model.dim, cfg.model.dim_mults = 8, (1, 2)
    cfg.data.image_size, cfg.data.limit = 8, 256
    cfg.schedule.timesteps = 50
    cfg.train.batch_size, cfg.train.steps, cfg.train.preview_every = 16, 12, 0
    cfg.train.device, cfg.train.precision = str(DEVICE), precision
    for k, v in train.items():
        setattr(cfg.train, k, v)
    return cfg.validate()


def losses(trainer: Trainer) -> np.ndarray:
    return np.array([r.loss for r in trainer.steps()])


def test_the_device_is_the_one_asked_for():
    trainer = Trainer(config())
    assert trainer.device.type == DEVICE.type
    assert next(trainer.model.parameters()).device.type == DEVICE.type


def test_cuda_graphs_are_recorded_on_a_gpu_only():
    trainer = Trainer(config(steps=2))
    list(trainer.steps())
    x = torch.zeros(3, 1, 8, 8, device=DEVICE)
    eps = denoiser(trainer.model.eval(), x, None)
    if DEVICE.type == "cuda":
        assert trainer._network is not trainer.model
        assert isinstance(eps, _GraphedEps)
    else:
        assert trainer._network is trainer.model
        assert not isinstance(eps, _GraphedEps)
    assert eps(x, torch.zeros(3, dtype=torch.long, device=DEVICE)).shape == x.shape


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_recorded_training_steps_follow_the_plain_ones(precision):
    """CUDA graphs replay the same kernels: the losses of 12 steps agree with eager mode."""
    graphed = losses(Trainer(config(precision), cuda_graphs=True))
    eager = losses(Trainer(config(precision), cuda_graphs=False))
    assert np.all(np.isfinite(graphed))
    # cuDNN may pick other algorithms between runs; both are fp32-accurate (bf16: 1e-2).
    tol = 2e-3 if precision == "fp32" else 3e-2
    np.testing.assert_allclose(graphed, eager, rtol=tol, atol=tol)


@pytest.fixture
def compiler(monkeypatch):
    """train.compile on this device, counting what torch.compile traces. On a GPU the real
    compiler (Inductor). A CPU does not compile (it was slower there), and Inductor builds
    C++ for minutes on a small one: there aot_eager, which traces the same graphs."""
    if DEVICE.type != "cuda":
        monkeypatch.setattr(compiled, "PAYS_OFF_ON", ("cpu", "cuda"))
        monkeypatch.setattr(compiled, "BACKEND", "aot_eager")
    backend, traced = torch._dynamo.lookup_backend(compiled.BACKEND), []

    def counting(graph, inputs):
        traced.append(graph)
        return backend(graph, inputs)

    monkeypatch.setattr(compiled, "BACKEND", counting)
    yield traced
    torch._dynamo.reset()  # compiled code of one test never serves another


def compiled_network(trainer: Trainer) -> compiled.CompiledNetwork:
    return next(m for m in trainer._network.modules() if isinstance(m, compiled.CompiledNetwork))


def test_compiled_training_follows_the_plain_steps(compiler):
    plain = losses(Trainer(config()))
    trainer = Trainer(config(compile=True))
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="torch.compile could not")  # no fallback
        compiled_losses = losses(trainer)
    assert compiler, "torch.compile never traced the network"
    assert not compiled_network(trainer).failed
    assert not isinstance(trainer.model, torch._dynamo.eval_frame.OptimizedModule)  # what is saved and copied
    # Fused kernels sum in other orders: fp32-accurate, not bit-identical.
    np.testing.assert_allclose(compiled_losses, plain, rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("fails_in", ["forward", "backward"])
def test_a_compiler_that_fails_warns_once_and_training_goes_on(monkeypatch, fails_in):
    from torch._dynamo.backends.common import aot_autograd
    from torch._functorch.compilers import nop

    def broken(graph, inputs):
        raise RuntimeError("Failed to find C compiler. Please specify via CC environment variable.")

    # The backward pass compiles at its first use, after the forward pass has run.
    backend = aot_autograd(fw_compiler=broken if fails_in == "forward" else nop, bw_compiler=broken)
    monkeypatch.setattr(compiled, "BACKEND", backend)
    monkeypatch.setattr(compiled, "PAYS_OFF_ON", (DEVICE.type,))
    plain = losses(Trainer(config()))
    try:
        with pytest.warns(UserWarning, match="could not compile the network .*C compiler.*training without it") as seen:
            trainer = Trainer(config(compile=True))
            fallen_back = losses(trainer)
    finally:
        torch._dynamo.reset()
    assert len([w for w in seen if "could not compile" in str(w.message)]) == 1
    assert compiled_network(trainer).failed
    np.testing.assert_allclose(fallen_back, plain, rtol=2e-3, atol=2e-3)


def test_the_cpu_does_not_compile():
    trainer = Trainer(config(compile=True, steps=1), device="cpu")
    list(trainer.steps())
    assert not trainer.compiles and trainer._network is trainer.model


def test_training_on_the_device_follows_the_cpu():
    here = losses(Trainer(config(), device=DEVICE))
    cpu = losses(Trainer(config(), device="cpu"))
    # The same data order and weights; the random draws differ between a GPU and the CPU
    # generator, so only the first step (same weights, different noise) is loosely alike
    # and the curves must fall alike.
    assert np.all(np.isfinite(here))
    assert here[-4:].mean() < here[:2].mean() and cpu[-4:].mean() < cpu[:2].mean()
    assert abs(here.mean() - cpu.mean()) < 0.5 * cpu.mean()


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_recorded_sampling_gives_the_plain_samples(sampler):
    trainer = Trainer(config())
    for _ in trainer.steps():
        pass
    model = trainer.sampling_model.eval()

    def run(graphs: bool) -> torch.Tensor:
        gen = torch.Generator().manual_seed(5)  # CPU noise: identical draws for both
        return sample(model, trainer.schedule, (6, 1, 8, 8), sampler=sampler, steps=10, generator=gen, cuda_graphs=graphs)

    graphed, eager = run(True), run(False)
    assert graphed.device.type == DEVICE.type
    assert torch.isfinite(graphed).all()
    torch.testing.assert_close(graphed, eager, rtol=1e-3, atol=1e-3)


def test_recorded_sampling_follows_weights_loaded_between_runs(tmp_path):
    """A graph records the weights of its own run; the next run sees new weights."""
    trainer = Trainer(config(steps=3))
    for _ in trainer.steps():
        pass
    model = trainer.sampling_model.eval()
    shape = (4, 1, 8, 8)
    before = sample(model, trainer.schedule, shape, sampler="ddim", steps=5, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(0.5)
    after = sample(model, trainer.schedule, shape, sampler="ddim", steps=5, generator=torch.Generator().manual_seed(1))
    plain = sample(
        model, trainer.schedule, shape, sampler="ddim", steps=5, generator=torch.Generator().manual_seed(1), cuda_graphs=False
    )
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, plain, rtol=1e-3, atol=1e-3)


def test_a_checkpoint_from_the_device_loads_and_samples_on_the_cpu(tmp_path):
    trainer = Trainer(config(steps=4))
    for _ in trainer.steps():
        pass
    path = trainer.save(tmp_path / "run.safetensors")
    ckpt = load_checkpoint(path)
    assert ckpt.step == 4
    loaded = load_for_sampling(path, device="cpu")
    on_cpu = sample(loaded.model, loaded.schedule, (2, 1, 8, 8), sampler="ddim", steps=4, generator=torch.Generator().manual_seed(2))
    here = sample(
        trainer.sampling_model.eval(), trainer.schedule, (2, 1, 8, 8), sampler="ddim", steps=4,
        generator=torch.Generator().manual_seed(2),
    )
    torch.testing.assert_close(on_cpu, here.cpu(), rtol=1e-3, atol=1e-3)


def test_a_nan_in_the_weights_stops_training_and_nothing_is_saved(tmp_path):
    """On a GPU the loss is checked one step late (no host sync); save() checks it first."""
    trainer = Trainer(config(steps=10))
    steps = trainer.steps()
    next(steps)
    good = trainer.save(tmp_path / "good.safetensors")
    before = good.read_bytes()
    with torch.no_grad():  # in place, so a recorded graph reads it too
        trainer.model.final_conv.bias.fill_(float("nan"))
    try:
        next(steps)  # the NaN step: the CPU stops here, a GPU has not looked yet
    except TrainingDiverged:
        assert DEVICE.type == "cpu"
    with pytest.raises(TrainingDiverged):  # the CPU: "not saving"; a GPU: the check it owed
        trainer.save(good)
    assert good.read_bytes() == before
    with pytest.raises(TrainingDiverged):
        next(trainer.steps())


def test_step_records_hold_the_step_values():
    trainer = Trainer(config(steps=3))
    records = list(trainer.steps())
    for r in records:
        assert np.isfinite(r.loss)
        assert r.t.shape == (16,) and r.per_sample_loss.shape == (16,)
        assert abs(float(r.per_sample_loss.mean()) - r.loss) < 1e-5


def test_sampling_while_another_thread_trains_on_the_same_device():
    """The app may sample from a checkpoint while a run trains: a graph recorded on one
    thread must not break the other thread's work (or its own)."""
    import threading

    trainer = Trainer(config(steps=40))
    sampler_model = Trainer(config(steps=1)).sampling_model.eval()
    schedule = trainer.schedule
    errors, losses_seen = [], []

    def train():
        try:
            losses_seen.extend(r.loss for r in trainer.steps())
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    worker = threading.Thread(target=train)
    worker.start()
    samples = []
    while worker.is_alive() and len(samples) < 6:
        samples.append(sample(sampler_model, schedule, (4, 1, 8, 8), sampler="ddim", steps=5))
    worker.join()
    assert not errors, errors
    assert len(losses_seen) == 40 and np.all(np.isfinite(losses_seen))
    assert samples and all(torch.isfinite(s).all() for s in samples)


def test_gpu_work_is_one_lock_for_every_thread_and_none_elsewhere():
    """What keeps a CUDA-graph recording apart from other threads' GPU steps."""
    import threading

    from ddpm_core.cuda_graphs import gpu_work

    lock = gpu_work(torch.device("cuda"))
    assert lock is gpu_work(torch.device("cuda", 0))  # one lock for the process
    with gpu_work(torch.device("cpu")), gpu_work(torch.device("cpu")):
        pass  # no lock on the CPU: training and sampling there run side by side
    got = []
    with lock, lock:  # re-entrant: a preview samples inside a training step
        worker = threading.Thread(target=lambda: got.append(lock.acquire(timeout=0.05)))
        worker.start()
        worker.join()
    assert got == [False]  # another thread waits while one holds it
