"""batch_threads: slices of a batch computed at once in threads give what the whole batch gives."""

import faulthandler
import random
import threading
import time

import pytest
import torch

from ddpm_core import RunConfig, Trainer, batch_threads, cuda_graphs
from ddpm_core.batch_threads import map_slices, slice_count, split
from ddpm_core.config import ModelConfig
from ddpm_core.unet import build_unet


@pytest.fixture(autouse=True)
def no_hanging():
    # A deadlock among the slice threads must end the run (with every thread's traceback),
    # not hang it: waiting for slices goes on through a first Ctrl+C, by design.
    faulthandler.dump_traceback_later(300, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # as on a 2-core machine, whatever this one has
    yield
    torch.set_num_threads(before)


def test_split_covers_the_batch_in_near_equal_parts():
    assert split(10, 3) == [slice(0, 3), slice(3, 6), slice(6, 10)]
    assert split(128, 2) == [slice(0, 64), slice(64, 128)]
    assert split(5, 1) == [slice(0, 5)]


def test_slice_count(two_threads):
    cpu = torch.device("cpu")
    assert slice_count(cpu, 128) == 2
    assert slice_count(cpu, 2 * batch_threads.MIN_IMAGES_PER_SLICE - 1) == 1  # too few images for two
    assert slice_count(torch.device("cuda"), 128) == 1  # a GPU takes the batch whole
    with batch_threads.forced_slices(3):
        assert slice_count(cpu, 128) == 3 and slice_count(cpu, 2) == 2
        assert slice_count(torch.device("cuda"), 128) == 1
    torch.set_num_threads(1)
    assert slice_count(cpu, 128) == 1


def test_slices_run_at_the_same_time_each_on_its_share_of_the_threads(two_threads):
    meet = threading.Barrier(2, timeout=10)  # broken unless both slices are running at once

    def fn(s):
        meet.wait()
        return s, torch.get_num_threads(), threading.get_ident()

    (s0, n0, id0), (s1, n1, id1) = map_slices(fn, 9, 2)
    assert (s0, s1) == (slice(0, 4), slice(4, 9))
    assert n0 == n1 == 1 and len({id0, id1, threading.get_ident()}) == 3
    assert torch.get_num_threads() == 2  # this thread keeps its count
    # ...and so does a thread started afterwards (the process-wide setting is put back).
    seen = []
    later = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    later.start()
    later.join()
    assert seen == [2]


def test_slices_keep_the_callers_gradient_mode_and_autocast(two_threads):
    def fn(_):
        return torch.is_grad_enabled(), torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")

    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert map_slices(fn, 4, 2) == [(False, True, torch.bfloat16)] * 2
    assert map_slices(fn, 4, 2)[0][:2] == (True, False)


def test_shares_of_the_threads_cover_them_all():
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        assert sorted(map_slices(lambda s: torch.get_num_threads(), 4, 2)) == [1, 2]
    finally:
        torch.set_num_threads(before)


def test_a_slice_that_asks_for_slices_computes_them_itself(two_threads):
    def outer(s):
        inner = map_slices(lambda s2: threading.get_ident(), 4, 2)
        return inner == [threading.get_ident()] * 2 and slice_count(torch.device("cpu"), 128) == 1

    assert map_slices(outer, 8, 2) == [True, True]


class InterruptedWait(threading.Event):
    """An event whose first `interrupts` waits are interrupted, as Ctrl+C interrupts them."""

    def __init__(self, interrupts: int):
        super().__init__()
        self.interrupts, self.waits = interrupts, 0

    def wait(self, timeout=None):
        self.waits += 1
        if self.waits <= self.interrupts:
            raise KeyboardInterrupt
        return super().wait(timeout)


def test_waiting_goes_on_through_an_interrupt_then_raises_it():
    event = InterruptedWait(interrupts=1)
    threading.Timer(0.05, event.set).start()
    with pytest.raises(KeyboardInterrupt):
        batch_threads._wait_for_all([event])
    assert event.is_set() and event.waits == 2  # it waited for the slice to end


def test_a_second_interrupt_stops_the_waiting():
    event = InterruptedWait(interrupts=2)
    with pytest.raises(KeyboardInterrupt):
        batch_threads._wait_for_all([event])
    assert not event.is_set() and event.waits == 2
    event.set()


def test_two_threads_asking_for_slices_at_once_each_get_their_own(two_threads):
    got, errors = {}, []

    def caller(name):
        try:
            for k in range(30):
                def fn(s, k=k):
                    time.sleep(random.random() / 1000)
                    return name, k, s
                got.setdefault(name, []).append(map_slices(fn, 10, 2))
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=caller, args=(name,)) for name in ("train", "sample")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for name in ("train", "sample"):
        assert got[name] == [[(name, k, slice(0, 5)), (name, k, slice(5, 10))] for k in range(30)]


def test_an_error_in_a_slice_is_raised_in_the_caller_after_all_slices_end(two_threads):
    ended = []

    def fn(s):
        if s.start == 0:
            raise ValueError("slice 0 failed")
        ended.append(s)
        return s

    with pytest.raises(ValueError, match="slice 0 failed"):
        map_slices(fn, 4, 2)
    assert ended == [slice(2, 4)]


def test_sampling_network_in_slices_equals_the_whole_batch(two_threads):
    torch.manual_seed(0)
    model = build_unet(ModelConfig(dim=8, dim_mults=(1, 2), channels=1)).eval()
    x, t = torch.randn(40, 1, 8, 8), torch.randint(0, 50, (40,))
    eps = cuda_graphs.denoiser(model, x, None)
    assert slice_count(x.device, 40) == 2
    with torch.no_grad():
        torch.testing.assert_close(eps(x, t), model(x, t), atol=1e-5, rtol=1e-5)


def tiny_run() -> RunConfig:
    cfg = RunConfig()
    cfg.model.dim, cfg.model.dim_mults = 8, (1, 2)
    cfg.data.image_size, cfg.data.limit = 8, 256
    cfg.schedule.timesteps = 50
    cfg.train.batch_size, cfg.train.steps, cfg.train.preview_every = 48, 3, 0
    cfg.train.device, cfg.train.precision, cfg.train.ema = "cpu", "fp32", False
    return cfg.validate()


def train(parts, precision="fp32", steps=3, batch=48):
    cfg = tiny_run()
    cfg.train.precision, cfg.train.steps, cfg.train.batch_size = precision, steps, batch
    with batch_threads.forced_slices(parts):
        trainer = Trainer(cfg)
        records = [(r.loss, r.per_sample_loss.copy(), r.t.copy()) for r in trainer.steps()]
    params = list(trainer.model.parameters())
    return records, [p.detach().clone() for p in params], [p.grad.clone() for p in params]


def test_a_training_step_in_slices_follows_the_whole_batch(two_threads):
    def run(parts):
        records, params, _ = train(parts)
        return records, params

    (whole, w_params), (sliced, s_params) = run(1), run(3)
    for (loss_w, per_w, t_w), (loss_s, per_s, t_s) in zip(whole, sliced):
        assert (t_w == t_s).all()  # the same draws: slicing uses no randomness of its own
        assert loss_s == pytest.approx(loss_w, rel=1e-5)
        assert per_s == pytest.approx(per_w, rel=1e-4, abs=1e-6)
    for a, b in zip(w_params, s_params):  # three Adam steps on the summed slice gradients
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_a_run_in_slices_does_not_depend_on_which_slice_finishes_first(two_threads):
    # Three slices: (a + b) + c and (a + c) + b differ in the last bits; the gradients are
    # added in slice order, so the same seed gives the same weights every time.
    first, second = train(3), train(3)
    for a, b in zip(first[1], second[1]):
        assert torch.equal(a, b)


def test_bf16_gradients_in_slices_stay_as_close_to_the_whole_batch_as_bf16_allows(two_threads):
    _, _, whole = train(1, "bf16", steps=1)
    _, _, sliced = train(2, "bf16", steps=1)
    for a, b in zip(whole, sliced):
        assert (a - b).norm() <= 0.02 * a.norm() + 1e-6


def test_slices_of_unequal_size_weigh_by_their_size(two_threads):
    # 50 images in 3 slices of 16, 17 and 17: each slice's mean loss counts by its size.
    _, _, whole = train(1, steps=1, batch=50)
    _, _, sliced = train(3, steps=1, batch=50)
    for a, b in zip(whole, sliced):
        torch.testing.assert_close(b, a, atol=1e-6, rtol=1e-4)
        assert b.is_contiguous()  # the parameter's layout, as backward() gives
