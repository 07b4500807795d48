"""CUDA graphs: the same network calls, recorded once and replayed as one launch.

The article's U-Net at 28×28 is small: on a GPU each of its few hundred kernels finishes
before Python has queued the next, so a step costs what launching it costs. A CUDA graph
records every kernel of a call once and replays them all with a single launch; the math is
the same kernels on the same memory.

- Training: `GraphedNetwork` records the network's forward and backward (torch's
  `make_graphed_callables`); the loss, the optimizer and EMA stay outside.
- Sampling: `denoiser()` records ε_θ(x, t) for the loop's fixed batch shape.

Both need fixed shapes (training drops the ragged last batch; a sampling loop keeps one
batch) and weights updated in place (the optimizer and `load_state_dict` do that). They
are used on CUDA only; on any other device, and if recording fails, the plain call runs.
"""

from __future__ import annotations

import contextlib
import inspect
import threading
import warnings
from typing import Callable, Optional

import torch
from torch import nn

from .batch_threads import map_slices, slice_count
from .speed import autocast

# Recording warms the network up on a side stream, as torch's recipe does; the gradient
# accumulators made there belong to that stream, and torch then warns that they differ from
# the stream the graph replays on. Waiting on the other stream is all it costs (the device
# tests check the recorded results against eager mode).
warnings.filterwarnings("ignore", message="The AccumulateGrad node's stream does not match")

# While a graph records, CUDA refuses calls that would disturb it (allocations, host syncs).
# By default from every thread; "thread_local" limits that to the recording thread, so the
# app can start sampling on one thread while another trains on the same GPU.
_CAPTURE = {"capture_error_mode": "thread_local"}
_GRAPHED_CALLABLES_CAPTURE = (
    _CAPTURE if "capture_error_mode" in inspect.signature(torch.cuda.make_graphed_callables).parameters else {}
)


# The app may train on one thread while it samples on another, on the same GPU. While a graph
# records, CUDA refuses some work from other threads (the default generator's random draws
# among it), so recording must never overlap other GPU work of this process: every engine
# step on a GPU (a training step, a sampling step) holds this lock, and recording holds it
# too. A step waits at most for one step of the other thread.
_gpu_work = threading.RLock()


def gpu_work(device: torch.device):
    """Hold while doing one step of GPU work; on other devices this does nothing."""
    return _gpu_work if device.type == "cuda" else contextlib.nullcontext()


class GraphedNetwork(nn.Module):
    """Wraps the U-Net so that its training forward and backward can be recorded.

    The wrapper, not the U-Net, is what gets graphed, so the U-Net itself stays a plain
    module: copying it (EMA, a snapshot for sampling) never copies a recording.
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.net(x, t)


def graph_training_network(
    net: nn.Module, x: torch.Tensor, t: torch.Tensor, dtype: Optional[torch.dtype]
) -> Optional[nn.Module]:
    """A module whose forward and backward replay recorded graphs, or None where that is not
    possible (not CUDA, or recording failed). `x`, `t` give the shapes of every later call."""
    if x.device.type != "cuda":
        return None
    wrapper = GraphedNetwork(net).train()
    try:
        # Autocast's weight-cast cache must be off while recording (torch requires it).
        with gpu_work(x.device), autocast(x.device, dtype, cache=False):
            return torch.cuda.make_graphed_callables(
                wrapper, (x.detach().clone(), t.clone()), **_GRAPHED_CALLABLES_CAPTURE
            )
    except Exception as e:  # noqa: BLE001 - the eager path computes the same; fall back to it
        _fall_back(e, "training")
        return None


class _GraphedEps:
    """ε_θ(x, t) recorded for one batch shape; each call copies x and t in and replays."""

    def __init__(self, eps: Callable, x: torch.Tensor, t: torch.Tensor):
        self.static_x = x.detach().clone()
        self.static_t = t.clone()
        # Warm up on a side stream (cuDNN picks its algorithms, lazy buffers are made),
        # as torch's CUDA-graph recipe does, then record.
        side = torch.cuda.Stream(device=x.device)
        side.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(side):
            for _ in range(2):
                eps(self.static_x, self.static_t)
        torch.cuda.current_stream(x.device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph, **_CAPTURE):
            self.static_out = eps(self.static_x, self.static_t)

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.static_x.copy_(x)
        self.static_t.copy_(t)
        self.graph.replay()
        # The samplers yield ε̂ with each step and callers may keep it: hand out a copy,
        # since the next replay overwrites static_out.
        return self.static_out.clone()


def denoiser(
    model: nn.Module, x: torch.Tensor, dtype: Optional[torch.dtype], graphs: bool = True
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """ε_θ(x_t, t) in fp32 for a sampling loop over batches shaped like `x`.

    On CUDA (with `graphs`) the network is recorded once with the weights as they are now;
    the loop must not change the weights while it runs. On a CPU a batch is computed as
    slices in threads (batch_threads.py).
    """

    def network(cache: bool) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        @torch.no_grad()
        def eps(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            def of_slice(s: slice) -> torch.Tensor:
                with autocast(x_t.device, dtype, cache=cache):
                    return model(x_t[s], t[s]).float()

            # On a CPU, slices of the batch at once, each in its own thread (batch_threads.py).
            parts = map_slices(of_slice, x_t.shape[0], slice_count(x_t.device, x_t.shape[0]))
            return parts[0] if len(parts) == 1 else torch.cat(parts)

        return eps

    if not (graphs and x.device.type == "cuda"):
        return network(cache=True)
    t = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    try:
        with gpu_work(x.device):
            return _GraphedEps(network(cache=False), x, t)
    except Exception as e:  # noqa: BLE001 - the eager path computes the same; fall back to it
        _fall_back(e, "sampling")
        return network(cache=True)


def _fall_back(error: Exception, doing: str) -> None:
    if isinstance(error, torch.OutOfMemoryError):
        raise error
    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    warnings.warn(f"CUDA graphs could not record the network for {doing} ({reason}); running it without them")
