"""The one training loop: it learns, it resumes exactly, it previews."""

import numpy as np
import pytest
import torch

from ddpm_core import RunConfig, Trainer
from ddpm_core.data import make_shapes


def tiny_config(**train) -> RunConfig:
    cfg = RunConfig()
    cfg.model.dim, cfg.model.dim_mults = 8, (1, 2)
    cfg.data.image_size, cfg.data.limit = 8, 256
    cfg.schedule.timesteps = 50
    cfg.train.batch_size = 16
    cfg.train.steps = 20
    cfg.train.preview_every = 0
    cfg.train.preview_steps = 4
    cfg.train.preview_count = 4
    cfg.train.device = "cpu"
    for k, v in train.items():
        setattr(cfg.train, k, v)
    return cfg.validate()


def test_short_training_lowers_the_loss():
    cfg = tiny_config(steps=150, lr=2e-3)
    records = list(Trainer(cfg).steps())
    assert [r.step for r in records] == list(range(1, 151))
    losses = np.array([r.loss for r in records])
    assert losses[-30:].mean() < 0.6 * losses[:10].mean()
    last = records[-1]
    assert last.total_steps == 150 and last.t.shape == (16,) and last.per_sample_loss.shape == (16,)
    assert last.images_per_sec > 0 and last.elapsed > 0
    assert np.all((last.t >= 0) & (last.t < 50))


def test_save_resume_continues_exactly(tmp_path):
    cfg = tiny_config(steps=12)
    straight = [r.loss for r in Trainer(cfg).steps()]

    first = Trainer(cfg)
    losses = []
    for r in first.steps():
        losses.append(r.loss)
        if r.step == 5:
            break
    path = first.save(tmp_path / "ckpt.safetensors")
    resumed = Trainer.from_checkpoint(path)
    assert resumed.step == 5
    losses += [r.loss for r in resumed.steps()]
    assert losses == straight  # bit-for-bit on the CPU
    # EMA weights continued too
    again = Trainer(cfg)
    for _ in again.steps():
        pass
    for a, b in zip(again.ema.parameters(), resumed.ema.parameters()):
        assert torch.equal(a, b)


def test_a_run_continues_exactly_from_memory_too():
    # The window continues a stopped run without a file: to_checkpoint is what save writes.
    cfg = tiny_config(steps=12)
    straight = Trainer(cfg)
    straight_losses = [r.loss for r in straight.steps()]
    first = Trainer(cfg)
    losses = []
    for r in first.steps():
        losses.append(r.loss)
        if r.step == 5:
            break
    state = first.to_checkpoint()
    for _ in first.steps():  # the first trainer going on must not change what was taken
        break
    resumed = Trainer.from_checkpoint(state, images=first.dataset)
    assert resumed.step == 5
    losses += [r.loss for r in resumed.steps()]
    assert losses == straight_losses  # bit-for-bit on the CPU
    for a, b in zip(straight.ema.parameters(), resumed.ema.parameters()):
        assert torch.equal(a, b)


def test_resume_across_an_epoch_boundary(tmp_path):
    cfg = tiny_config(steps=40)  # 256 images / 16 = 16 batches per epoch
    straight = [(r.loss, r.epoch) for r in Trainer(cfg).steps()]
    assert straight[15][1] == 0 and straight[16][1] == 1
    first = Trainer(cfg)
    out = []
    for r in first.steps():
        out.append((r.loss, r.epoch))
        if r.step == 16:
            break
    resumed = Trainer.from_checkpoint(first.save(tmp_path / "c.safetensors"))
    out += [(r.loss, r.epoch) for r in resumed.steps()]
    assert out == straight


def test_epochs_limit_and_previews():
    cfg = tiny_config(steps=None, epochs=2, preview_every=8)
    records = list(Trainer(cfg).steps())
    assert len(records) == 2 * (256 // 16)
    previews = [r for r in records if r.preview is not None]
    assert [r.step for r in previews] == [8, 16, 24, 32]
    p = previews[0].preview
    assert p.shape == (4, 1, 8, 8) and p.min() >= -1 and p.max() <= 1


def test_preview_does_not_change_the_run():
    a = [r.loss for r in Trainer(tiny_config(steps=10, preview_every=3)).steps()]
    b = [r.loss for r in Trainer(tiny_config(steps=10, preview_every=0)).steps()]
    assert a == b


def test_given_images_must_fit_the_config():
    cfg = tiny_config()
    wrong = make_shapes(32, 16, 1)
    with pytest.raises(Exception, match="asks for"):
        Trainer(cfg, images=wrong)


def test_resume_with_more_steps_and_weights_only_refused(tmp_path):
    cfg = tiny_config(steps=4)
    tr = Trainer(cfg)
    list(tr.steps())
    path = tr.save(tmp_path / "c.safetensors")
    more = Trainer.from_checkpoint(path, overrides=lambda c: setattr(c.train, "steps", 6))
    assert [r.step for r in more.steps()] == [5, 6]
    from ddpm_core.errors import ConfigError

    with pytest.raises(ConfigError, match="model settings"):
        Trainer.from_checkpoint(path, overrides=lambda c: setattr(c.model, "dim", 16))


def test_a_damaged_place_in_training_is_refused_and_a_finished_epoch_moves_on(tmp_path):
    from ddpm_core.errors import CheckpointError

    tr = Trainer(tiny_config(steps=4))
    list(tr.steps())
    for extra in ({"batch_in_epoch": "abc"}, {"batch_in_epoch": -1}, {"elapsed": float("nan")}, {"elapsed": "nan"}):
        path = tr.save(tmp_path / "damaged.safetensors", extra=extra)
        with pytest.raises(CheckpointError, match="its place in training is damaged"):
            Trainer.from_checkpoint(path)
    # Past the end of the epoch as it is now (a larger batch or fewer images than when it
    # was saved): the next epoch begins, and training goes on.
    path = tr.save(tmp_path / "far.safetensors", extra={"batch_in_epoch": 99_999_999})
    more = Trainer.from_checkpoint(path, overrides=lambda c: setattr(c.train, "steps", 5))
    assert (more.epoch, more.batch_in_epoch) == (tr.epoch + 1, 0)
    assert [r.step for r in more.steps()] == [5]


def test_the_estimate_of_time_left_leaves_out_the_first_step(monkeypatch):
    # A session's first step records CUDA graphs or compiles: here it takes 100 s, every
    # later one 1 s. The estimate follows the later steps, and there is none after the first.
    durations = iter([100.0] + [1.0] * 9)

    class Clock:
        now, in_step = 0.0, False

        @classmethod
        def perf_counter(cls):  # called as a step starts and as it ends
            if cls.in_step:
                cls.now += next(durations)
            cls.in_step = not cls.in_step
            return cls.now

    monkeypatch.setattr("ddpm_core.training.time", Clock)
    records = list(Trainer(tiny_config(steps=10)).steps())
    assert records[0].seconds == 100.0 and records[0].eta_seconds is None
    assert records[3].seconds_per_step == pytest.approx(1.0)
    assert records[3].eta_seconds == pytest.approx(6.0)  # 6 steps left at 1 s each
    assert records[-1].elapsed == pytest.approx(109.0)
