"""torch.compile for training, asked for with `train.compile`: fewer, fused kernels.

On a GPU the article-sized U-Net spends most of a training step in a thousand or so small
elementwise and normalisation kernels. torch.compile (TorchInductor) fuses them into a few
generated kernels. Measured on an H100 (fp32 with TF32, CUDA graphs either way): 9.8 ms per
step against 14.2 ms, after 60-73 s of compiling at the first step. That pays for itself
after about 14,000 steps, so it is off unless asked for: worth it for long runs on a GPU
server, not for a first look.

On a CPU it is not used even when asked for: on this project's 2-core CPU (bf16) compiling
took 178 s and each step then took 3.15 s against 1.28 s uncompiled
(benchmarks/cpu_2core_epyc_compiled_session5.log).

If compiling fails (no C compiler, no Triton on this platform), training warns once and goes
on with the network as it is: the same math, only slower. The backward pass compiles at its
first use, so the first call also runs a trial backward pass: a failure there falls back too.
"""

from __future__ import annotations

import warnings
from typing import Optional

import torch
from torch import nn

from .device import is_out_of_memory

# The compiler torch.compile hands the traced network to; tests use "aot_eager", which
# traces forward and backward the same way but runs them without generating code.
BACKEND = "inductor"
# The device types where compiling was measured to pay off (tests add the CPU).
PAYS_OFF_ON = ("cuda",)


def compiles_on(device: torch.device) -> bool:
    """Whether `train.compile` compiles on this device."""
    return device.type in PAYS_OFF_ON


class CompiledNetwork(nn.Module):
    """Runs `net` through torch.compile, or through `net` itself once compiling has failed.

    The U-Net stays a plain module (copies of it, such as the EMA weights, never carry a
    compiled graph); its parameters are the same tensors, so the optimizer is unaffected.
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        # Kept outside the module tree: it wraps `net`, which is registered already. Shapes
        # are fixed within a run (training drops the ragged last batch): dynamic=False keeps
        # a run with other shapes from making every later compile a slower, generic one.
        self.__dict__["_compiled"] = torch.compile(net, backend=BACKEND, dynamic=False)
        self.failure: Optional[str] = None  # why compiling failed, once it has
        self._proven = False  # compiled forward and backward have run once

    @property
    def failed(self) -> bool:
        return self.failure is not None

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self._proven:
            return self._compiled(x, t)
        if not self.failed:
            try:
                out = self._compiled(x, t)
                self._try_backward(out)
                self._proven = True
                return out
            except Exception as e:  # noqa: BLE001 - the plain network computes the same
                if is_out_of_memory(e):
                    raise
                self.failure = f"torch.compile could not compile the network ({_reason(e)}); training without it"
                warnings.warn(self.failure)
        return self.net(x, t)

    def _try_backward(self, out: torch.Tensor) -> None:
        # Compiles the backward pass now, where a failure can still fall back; the gradients
        # are discarded (autograd.grad never touches .grad) and the graph is kept for the step.
        params = [p for p in self.net.parameters() if p.requires_grad]
        if out.requires_grad and params:
            torch.autograd.grad(out, params, torch.ones_like(out), retain_graph=True, allow_unused=True)


def _reason(error: Exception) -> str:
    # torch.compile's errors open with a line such as "backend='inductor' raised:"; the
    # line naming the underlying error says more.
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    named = [line for line in lines if "Error" in line or "error" in line]
    reason = (named or lines or [type(error).__name__])[0]
    return reason[:300]
