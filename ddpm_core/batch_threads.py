"""A batch computed as slices at the same time, each in a thread of its own (CPUs).

PyTorch spreads each operator over the cores (intra-op parallelism). This model's
operators are small (28 to 112 channels) and many (about a thousand per forward pass), and
each one that is spread costs a start and a join of the cores. Every image of a batch is
computed on its own (GroupNorm and attention work per image; there is no BatchNorm), so the
batch can be cut into slices computed at once, each in its own thread, the intra-op threads
shared out among them (one each where there are as many slices as cores). The results are
the same up to the order of floating-point sums, and that order is fixed: a run does not
depend on which slice finishes first.

Measured (bf16, the article's model, in-process and alternating; scripts/slices_bench.py):
on this project's 2-core EPYC a sampling step of 64 images 1.20-1.34x faster and a
training step of 128 images 1.14-1.15x (two runs); on a Xeon with AMX, 2 cores 1.30x and
1.23x, 4 cores 1.11x and 1.15x, 8 cores 1.10x for training and no change for sampling (4
slices of 16 images).

The slices run on threads kept for the life of the process, one set per way of sharing
out the cores: a thread sets its intra-op thread count once, when it starts. They take the
scheduling priority of the thread that first asked for them (in the app, a worker thread,
which runs below the window's priority).
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from typing import Callable, Optional, TypeVar

import torch

R = TypeVar("R")

# Fewer images per slice than this and the slices' Python work (about a thousand operator
# calls each, one thread at a time under the GIL) outweighs the cores they free: on 8 cores,
# 8 slices of 8 images made a sampling step 1.5x slower; slices of 16 images or more never
# measured slower than the whole batch by more than the noise. On 2 cores, alone, 2 slices
# of 2 to 8 images were 1.5-2x faster (scripts/slices_bench.py --images), but in the app,
# where the window's thread needs the GIL too, 2 slices of 8 small images (16 px) made
# DDPM sampling 1.2-1.3x slower (scripts/bench_gui.py --only sample: 7.2 s against 5.4-5.9).
MIN_IMAGES_PER_SLICE = 16

_forced: Optional[int] = None  # set by forced_slices()
_here = threading.local()  # .in_slice: this thread computes slices


@contextlib.contextmanager
def forced_slices(parts: int):
    """Within this block slice_count gives `parts` on a CPU: for tools that compare slice
    counts, and for profilers, which see only the thread they were started in (parts=1)."""
    global _forced
    before, _forced = _forced, parts
    try:
        yield
    finally:
        _forced = before


def slice_count(device: torch.device, batch: int) -> int:
    """How many slices to compute a batch of `batch` images as: on a CPU, one per intra-op
    thread this thread would use, with at least MIN_IMAGES_PER_SLICE images each; 1 elsewhere,
    and within a slice."""
    if device.type != "cpu" or getattr(_here, "in_slice", False):
        return 1
    if _forced is not None:
        return max(1, min(_forced, batch))
    return max(1, min(torch.get_num_threads(), batch // MIN_IMAGES_PER_SLICE))


def split(batch: int, parts: int) -> list[slice]:
    """`parts` contiguous slices of range(batch), sizes differing by at most one."""
    bounds = [batch * i // parts for i in range(parts + 1)]
    return [slice(a, b) for a, b in zip(bounds, bounds[1:])]


def map_slices(fn: Callable[[slice], R], batch: int, parts: int) -> list[R]:
    """[fn(s) for s in split(batch, parts)], the slices computed at the same time.

    With parts > 1 each slice runs on a thread of its own, with a share of this thread's
    intra-op threads, its gradient mode and its CPU autocast; this thread waits for all of
    them, even when interrupted (they are using the batch). If slices raise, the error of
    the first slice that raised, in slice order, is raised here.
    """
    parts = max(1, min(parts, batch))
    slices = split(batch, parts)
    if parts == 1 or getattr(_here, "in_slice", False):
        return [fn(s) for s in slices]
    threads = torch.get_num_threads()
    shares = tuple(max(1, threads // parts + (i < threads % parts)) for i in range(parts))
    grad = torch.is_grad_enabled()
    autocast = torch.is_autocast_enabled("cpu")
    dtype = torch.get_autocast_dtype("cpu")
    results: list = [None] * parts
    errors: list[Optional[BaseException]] = [None] * parts
    done = [threading.Event() for _ in range(parts)]

    def job(i: int) -> Callable[[], None]:
        def run() -> None:
            try:
                with torch.set_grad_enabled(grad), torch.autocast("cpu", dtype=dtype, enabled=autocast):
                    results[i] = fn(slices[i])
            except BaseException as e:  # noqa: BLE001 - raised in the calling thread
                errors[i] = e
            finally:
                done[i].set()

        return run

    queued = 0
    try:
        for i, worker in enumerate(_workers(shares)):
            worker.put(job(i))
            queued += 1
    finally:
        _wait_for_all(done[:queued])
    for error in errors:
        if error is not None:
            raise error
    return results


def _wait_for_all(events: list[threading.Event]) -> None:
    """Wait until every event is set. A first interrupt (Ctrl+C) is raised once they are
    (the slices still use the batch's tensors); a second one is raised at once."""
    interrupted: Optional[BaseException] = None
    for event in events:
        while True:
            try:
                event.wait()
                break
            except BaseException as e:
                if interrupted is not None:
                    raise
                interrupted = e
    if interrupted is not None:
        raise interrupted


_workers_by_shares: dict[tuple[int, ...], list[queue.SimpleQueue]] = {}
_workers_lock = threading.Lock()


def _forget_workers() -> None:
    global _workers_lock
    _workers_by_shares.clear()
    _workers_lock = threading.Lock()  # the fork may have come while another thread held it


if hasattr(os, "register_at_fork"):  # a forked child has none of the parent's threads
    os.register_at_fork(after_in_child=_forget_workers)


def _workers(shares: tuple[int, ...]) -> list[queue.SimpleQueue]:
    """One job queue per slice, each served by a thread with that slice's intra-op threads."""
    with _workers_lock:
        if shares not in _workers_by_shares:
            _workers_by_shares[shares] = _start_workers(shares)
        return _workers_by_shares[shares]


def _start_workers(shares: tuple[int, ...]) -> list[queue.SimpleQueue]:
    # A thread takes its intra-op thread count from a process-wide setting the first time
    # it asks, and torch.set_num_threads writes that setting too: each new thread asks, then
    # sets its own, and the setting is put back once all have, so threads started elsewhere
    # meanwhile get the usual count (but for this moment, once per way of sharing).
    threads_before = torch.get_num_threads()
    started = threading.Barrier(len(shares) + 1)
    jobs = [queue.SimpleQueue() for _ in shares]
    try:
        for n, q in zip(shares, jobs):
            name = f"batch slice ({n} intra-op thread{'s' if n > 1 else ''})"
            threading.Thread(target=_serve, args=(q, n, started), name=name, daemon=True).start()
        started.wait()
    except BaseException:
        started.abort()  # the threads already started end
        raise
    finally:
        torch.set_num_threads(threads_before)
    return jobs


def _serve(jobs: queue.SimpleQueue, threads: int, started: threading.Barrier) -> None:
    _here.in_slice = True
    try:
        torch.get_num_threads()
        torch.set_num_threads(threads)
    except BaseException:
        started.abort()  # the pool is not made; the thread that asked for it raises
        raise
    started.wait()
    while True:
        jobs.get()()
