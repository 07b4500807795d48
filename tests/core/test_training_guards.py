"""Training stops safely: NaN loss, out of memory, and autosave so a crash loses little."""

import json
import math

import pytest
import torch

from ddpm_core import RunConfig, Trainer
from ddpm_core.autosave import AutosaveClock
from ddpm_core.checkpoint import load_checkpoint
from ddpm_core.cli import main as cli_main
from ddpm_core.device import is_out_of_memory, out_of_memory_message
from ddpm_core.errors import OutOfMemory, TrainingDiverged


def tiny(**train) -> RunConfig:
    cfg = RunConfig()
    cfg.model.dim, cfg.model.dim_mults = 8, (1, 2)
    cfg.data.image_size, cfg.data.limit = 8, 128
    cfg.schedule.timesteps = 20
    cfg.train.batch_size, cfg.train.steps, cfg.train.preview_every = 16, 10, 0
    cfg.train.device, cfg.train.precision = "cpu", "fp32"
    for k, v in train.items():
        setattr(cfg.train, k, v)
    return cfg.validate()


def poison_at(trainer: Trainer, step: int, value=float("nan")):
    """Make the model's output non-finite from the given step on."""
    forward = trainer.model.forward

    def forward_that_breaks(x, t, *a):
        out = forward(x, t, *a)
        return out * value if trainer.step + 1 >= step else out

    trainer.model.forward = forward_that_breaks


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_loss_stops_training_and_keeps_the_last_checkpoint(tmp_path, value):
    trainer = Trainer(tiny())
    poison_at(trainer, 4, value)
    steps = trainer.steps()
    for _ in range(2):
        next(steps)
    good = trainer.save(tmp_path / "good.safetensors")
    before = good.read_bytes()
    next(steps)
    with pytest.raises(TrainingDiverged) as info:
        next(steps)
    message = str(info.value)
    assert "step 4" in message and "learning rate" in message and "\n" not in message
    assert trainer.diverged
    with pytest.raises(TrainingDiverged, match="not saving"):
        trainer.save(good)
    assert good.read_bytes() == before  # the last good checkpoint is untouched
    assert load_checkpoint(good).step == 2


def test_bf16_divergence_suggests_fp32():
    trainer = Trainer(tiny(precision="bf16"))
    poison_at(trainer, 1)
    with pytest.raises(TrainingDiverged, match="fp32"):
        next(trainer.steps())


def test_out_of_memory_is_reported_with_a_smaller_batch(monkeypatch):
    trainer = Trainer(tiny(batch_size=16))

    def no_memory(*a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(trainer.model, "forward", no_memory)
    with pytest.raises(OutOfMemory) as info:
        next(trainer.steps())
    assert "batch size 16" in str(info.value) and "try batch size 8" in str(info.value)
    assert all(p.grad is None for p in trainer.model.parameters())  # nothing half-done is kept
    # The trainer is still usable: with memory back, training goes on.
    monkeypatch.undo()
    assert math.isfinite(next(trainer.steps()).loss)


def test_out_of_memory_recognised_in_all_its_forms():
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory"))
    assert is_out_of_memory(RuntimeError("MPS backend out of memory (MPS allocated: 1 GB)"))
    # PyTorch's CPU allocator, as it reads on Linux and on Windows, and numpy's / PIL's
    assert is_out_of_memory(RuntimeError(
        "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: "
        "you tried to allocate 154618822656 bytes. Error code 12 (Cannot allocate memory)"
    ))
    assert is_out_of_memory(RuntimeError("DefaultCPUAllocator: not enough memory: you tried to allocate 1 bytes."))
    assert is_out_of_memory(MemoryError())
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert not is_out_of_memory(ValueError("out of memory"))  # not an allocator's error
    assert "try batch size 1" in out_of_memory_message("cuda", 1)


def test_autosave_clock():
    now = [100.0]
    clock = AutosaveClock(2, clock=lambda: now[0])
    assert clock.enabled and not clock.due()
    now[0] += 119
    assert not clock.due()
    now[0] += 1
    assert clock.due()
    clock.saved()
    assert not clock.due()
    off = AutosaveClock(0, clock=lambda: now[0])
    now[0] += 10**6
    assert not off.enabled and not off.due()


def test_cli_autosaves_during_training(tmp_path, capfd):
    out = tmp_path / "run"
    config = tmp_path / "c.json"
    config.write_text(json.dumps(tiny(steps=6, checkpoint_every=0).to_dict()))
    # 1e-6 minutes: due after every step, so each step but the last autosaves.
    code = cli_main(["train", "--config", str(config), "--out", str(out), "--autosave-minutes", "0.000001"])
    assert code == 0
    printed = capfd.readouterr().out
    assert printed.count("autosave:") == 5
    kept = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert kept[-1] == "step_0000006.safetensors" and len(kept) == 3  # the newest three are kept
    assert load_checkpoint(out / "checkpoints" / "step_0000005.safetensors").step == 5


def test_cli_reports_divergence_in_one_line(tmp_path, capsys, monkeypatch):
    from ddpm_core import training

    real = training.Trainer._train_step

    def broken(self):
        loss, t, per_sample = real(self)
        return loss * float("nan"), t, per_sample

    monkeypatch.setattr(training.Trainer, "_train_step", broken)
    config = tmp_path / "c.json"
    config.write_text(json.dumps(tiny(steps=3).to_dict()))
    code = cli_main(["train", "--config", str(config), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "diverged at step 1" in err
    assert not list((tmp_path / "run" / "checkpoints").glob("*.safetensors"))  # nothing broken saved


def test_resume_with_a_damaged_optimizer_state_says_so(tmp_path):
    from ddpm_core.checkpoint import Checkpoint
    from ddpm_core.errors import CheckpointError

    trainer = Trainer(tiny(steps=2))
    list(trainer.steps())
    ckpt = load_checkpoint(trainer.save(tmp_path / "a.safetensors"))
    ckpt.optimizer["param_groups"][0]["params"] = ckpt.optimizer["param_groups"][0]["params"][:3]
    with pytest.raises(CheckpointError, match="optimizer or random-number state does not fit"):
        Trainer.from_checkpoint(ckpt)
    ckpt = load_checkpoint(tmp_path / "a.safetensors")
    ckpt.rng["train"] = ckpt.rng["train"][:10]
    with pytest.raises(CheckpointError, match="a.safetensors"):
        Trainer.from_checkpoint(ckpt)
    assert isinstance(ckpt, Checkpoint)


def test_resume_names_the_model_setting_that_changed(tmp_path):
    from ddpm_core.errors import ConfigError

    trainer = Trainer(tiny(steps=1))
    path = trainer.save(tmp_path / "a.safetensors")

    def wider(cfg):
        cfg.model.dim = 16

    with pytest.raises(ConfigError, match=r"model.dim 8 -> 16"):
        Trainer.from_checkpoint(path, overrides=wider)


def test_out_of_memory_in_a_preview_names_the_preview_count(monkeypatch):
    trainer = Trainer(tiny(preview_every=1, preview_count=8))

    def no_memory(*a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(trainer, "preview", no_memory)
    with pytest.raises(OutOfMemory, match="preview count 8: try preview count 4") as info:
        next(trainer.steps())
    assert info.value.batch_size == 8 and info.value.suggested_batch_size == 4


def test_save_checks_a_loss_not_yet_checked(tmp_path):
    # On a GPU the newest step's loss is checked one step late; save() must check it first.
    trainer = Trainer(tiny())
    steps = trainer.steps()
    next(steps)
    good = trainer.save(tmp_path / "good.safetensors").read_bytes()
    record = next(steps)
    record.values._tensors["loss"] = torch.tensor(float("nan"))  # as if the GPU had just finished it
    trainer._unchecked = record
    with pytest.raises(TrainingDiverged):
        trainer.save(tmp_path / "good.safetensors")
    assert (tmp_path / "good.safetensors").read_bytes() == good
    with pytest.raises(TrainingDiverged, match="diverged at step 2"):
        next(steps)  # the loop does not train on from the NaN that save() found


def test_a_batch_that_cannot_fit_in_memory_is_refused_before_the_first_step(monkeypatch):
    # On Linux the kernel kills a process that runs out of memory, without a word: so the
    # step's memory is found (two small forward passes) and checked before it is taken.
    from ddpm_core import memory
    from ddpm_core.config import RunConfig
    from ddpm_core.errors import OutOfMemory
    from ddpm_core.training import Trainer

    cfg = RunConfig()
    cfg.data.image_size, cfg.data.limit = 16, 64
    cfg.model.dim, cfg.model.dim_mults = 8, (1, 2)
    cfg.train.batch_size, cfg.train.device = 64, "cpu"
    Trainer(cfg.validate())  # fits, with this machine's memory
    monkeypatch.setattr(memory, "free_bytes", lambda device: 40 * 2**20)
    with pytest.raises(OutOfMemory) as e:
        Trainer(cfg)
    message = str(e.value)
    assert message.startswith("training at batch size 64 would need about") and "40.0 MB" in message
    fits = int(message.split("use batch size ")[1].split()[0])
    assert 1 <= fits < 64 and e.value.batch_size == 64
    cfg.train.batch_size = fits
    Trainer(cfg)  # the batch it names fits
    # The middle block's attention, (H·W)² per image: at 64 px without downsampling, 256 MB
    # an image in bf16 or 512 MB in fp32, refused before a forward pass could allocate it.
    cfg.data.image_size, cfg.model.dim_mults, cfg.train.batch_size = 64, (1,), 8
    monkeypatch.setattr(memory, "free_bytes", lambda device: 2**30)
    with pytest.raises(OutOfMemory, match="training on 8 images: .* works on 64×64 pixels .* use a smaller image size, more levels"):
        Trainer(cfg)
    # A single image's forward pass that does not fit is told the same way.
    cfg.data.image_size, cfg.model.dim_mults, cfg.train.batch_size = 16, (1, 2), 8
    monkeypatch.setattr(memory, "free_bytes", lambda device: 2**40)

    def no_room(*args):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 34359738368 bytes.")

    monkeypatch.setattr(memory, "saved_activation_bytes", no_room)
    with pytest.raises(OutOfMemory, match="not even one image fits in computer memory"):
        Trainer(cfg)


def test_the_attention_check_counts_the_batch_the_dataset_gives(monkeypatch):
    # Two images train in batches of two whatever batch_size says: 64 images' attention
    # (2 GB here) must not refuse a run whose batches hold two (64 MB).
    from ddpm_core import memory
    from ddpm_core.config import RunConfig
    from ddpm_core.errors import OutOfMemory
    from ddpm_core.training import Trainer

    cfg = RunConfig()
    cfg.data.image_size, cfg.data.limit = 32, 2
    cfg.model.dim, cfg.model.dim_mults = 8, (1,)  # the middle works on 32×32: 32 MB an image in fp32
    cfg.train.batch_size, cfg.train.device, cfg.train.precision = 64, "cpu", "fp32"
    monkeypatch.setattr(memory, "free_bytes", lambda device: 8 * 32 * 2**20)
    assert Trainer(cfg.validate()).batch_size == 2
    cfg.data.limit = 64  # the same memory, and now the batch really is 64 images
    with pytest.raises(OutOfMemory, match=r"training on 64 images: .* \(2.0 GB in all\)"):
        Trainer(cfg)


def test_gpu_free_memory_counts_what_pytorch_holds_unused(monkeypatch):
    # After a run in the window, PyTorch's caching allocator keeps its blocks: the driver
    # calls them used, but the next run reuses them, so they count as free.
    import torch

    from ddpm_core import memory

    gib = 2**30
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (2 * gib, 80 * gib))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 30 * gib)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 1 * gib)
    assert memory.free_bytes(torch.device("cuda")) == 31 * gib


def test_attention_on_a_gpu_counts_its_fp32_softmax(monkeypatch):
    # Under bf16 autocast a CUDA GPU runs softmax in fp32 and casts it back for the next
    # matmul: 8 bytes a score held at once, as in fp32, where the CPU holds 4.
    import torch

    from ddpm_core import memory
    from ddpm_core.config import ModelConfig
    from ddpm_core.errors import OutOfMemory
    from ddpm_core.unet import build_unet

    model = build_unet(ModelConfig(dim=8, dim_mults=(1,)))  # the middle works at full size
    per_score_bf16_cpu = model.middle_attention_bytes(32, 4)
    monkeypatch.setattr(memory, "free_bytes", lambda device: per_score_bf16_cpu)
    memory.check_attention_fits(model, 32, 1, torch.bfloat16, torch.device("cpu"), "sampling")
    for dtype, device in ((torch.bfloat16, "cuda"), (None, "cpu"), (None, "cuda")):
        with pytest.raises(OutOfMemory, match=r"sampling 1 image: .* needs 32.0 MB per image"):
            memory.check_attention_fits(model, 32, 1, dtype, torch.device(device), "sampling")
