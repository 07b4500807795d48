"""A batch computed as slices at the same time, each in its own thread (CPUs).

PyTorch spreads each operator over the cores (intra-op parallelism). This model's
operators are small (28 to 112 channels) and many (about a thousand per forward pass), and
each one that is spread costs a start and a join of the cores: on 2 cores, 2 threads took
a sampling step only about 1.5x faster than 1. Every image of a batch is computed on its
own (GroupNorm and attention work per image; there is no BatchNorm), so the batch can be
cut into slices computed at once, each in its own thread, the intra-op threads shared out
among them (one each where there are as many slices as cores). The results are the same up
to the order of floating-point sums.

Measured (bf16, the article's model, in-process and alternating; scripts/slices_bench.py):
on this project's 2-core EPYC a sampling step of 64 images 1.20x faster and a training
step of 128 images 1.14x; on a Xeon with AMX, 2 cores 1.30x and 1.23x, 4 cores 1.11x and
1.15x, 8 cores 1.10x for training and no change for sampling (4 slices of 16 images).
"""

from __future__ import annotations

import threading
from typing import Callable, TypeVar

import torch

R = TypeVar("R")

# Fewer images per slice than this and the slices' Python work (about a thousand operator
# calls each, one thread at a time under the GIL) outweighs the cores they free: on 8 cores,
# 8 slices of 8 images made a sampling step 1.5x slower; slices of 16 images or more never
# measured slower than the whole batch by more than the noise.
MIN_IMAGES_PER_SLICE = 16


def slice_count(device: torch.device, batch: int) -> int:
    """How many slices to compute a batch of `batch` images as: on a CPU, one per intra-op
    thread this thread would use, with at least MIN_IMAGES_PER_SLICE images each; 1 elsewhere."""
    if device.type != "cpu":
        return 1
    return max(1, min(torch.get_num_threads(), batch // MIN_IMAGES_PER_SLICE))


def split(batch: int, parts: int) -> list[slice]:
    """`parts` contiguous slices of range(batch), sizes differing by at most one."""
    bounds = [batch * i // parts for i in range(parts + 1)]
    return [slice(a, b) for a, b in zip(bounds, bounds[1:])]


def map_slices(fn: Callable[[slice], R], batch: int, parts: int) -> list[R]:
    """[fn(s) for s in split(batch, parts)], the slices computed at the same time.

    With parts > 1 each slice runs in a new thread, with this thread's intra-op threads
    shared out among them (at least one each), gradient mode and CPU autocast; this thread
    waits. The first error raised by a
    slice is raised here, once all have ended.
    """
    slices = split(batch, parts)
    if parts <= 1:
        return [fn(s) for s in slices]
    grad = torch.is_grad_enabled()
    autocast = torch.is_autocast_enabled("cpu")
    dtype = torch.get_autocast_dtype("cpu")
    threads_before = torch.get_num_threads()
    per_slice = max(1, threads_before // parts)  # the cores shared out among the slices
    results: list = [None] * parts
    errors: list = [None] * parts
    started = threading.Barrier(parts + 1)

    def work(i: int) -> None:
        try:
            # A thread takes its intra-op thread count from a process-wide setting the first
            # time it asks: ask, then set this thread's own. set_num_threads also writes the
            # process-wide setting; it is put back below as soon as every slice has started,
            # so that threads started elsewhere (the app's other worker) get the usual count.
            try:
                torch.get_num_threads()
                torch.set_num_threads(per_slice)
            finally:
                started.wait()  # even after an error here, or the calling thread would wait forever
            with torch.set_grad_enabled(grad), torch.autocast("cpu", dtype=dtype, enabled=autocast):
                results[i] = fn(slices[i])
        except BaseException as e:  # noqa: BLE001 - raised in the calling thread below
            errors[i] = e

    threads = [threading.Thread(target=work, args=(i,), name=f"batch slice {i}", daemon=True) for i in range(parts)]
    try:
        for thread in threads:
            thread.start()
        started.wait()
    except BaseException:
        started.abort()  # the started slices end at once with BrokenBarrierError
        raise
    finally:
        torch.set_num_threads(threads_before)
        for thread in threads:
            if thread.ident is not None:
                thread.join()
    for error in errors:
        if error is not None:
            raise error
    return results
