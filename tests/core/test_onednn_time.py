"""scripts/onednn_time.py reads oneDNN's verbose log: its parser against real log lines."""

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import onednn_time  # noqa: E402

# Lines as oneDNN 3.x prints them (v3.12, from torch 2.14 on this project's CPU).
LOG = """\
onednn_verbose,v1,info,oneDNN v3.12.0 (commit 80afa71049cd69a3df32adcccb623b12cd7baa22)
onednn_verbose,v1,primitive,info,template:operation,engine,primitive,implementation,prop_kind,memory_descriptors,attributes,auxiliary,problem_desc,exec_time
onednn_verbose,v1,primitive,exec,cpu,reorder,jit:uni,undef,src:bf16::blocked:abcd::f0 dst:bf16:p:blocked:aBcd16b::f0,attr-scratchpad:user,,2x28x8x8,0.145996
onednn_verbose,v1,primitive,exec,cpu,convolution,jit_bf16:avx512_core_bf16,forward_training,src:bf16:ap:blocked:aBcd16b::f0 wei:bf16:ap:blocked:ABcd8b16a2b::f0 bia:undef::undef::: dst:bf16:ap:blocked:aBcd16b::f0,attr-scratchpad:user,alg:convolution_direct,mb2_ic28oc28_ih8oh8kh3sh1dh0ph1_iw8ow8kw3sw1dw0pw1,0.0158691
a line of the program's own output, exec,1.5
"""


def test_parse_reads_kind_propagation_kernel_shape_and_time():
    calls = onednn_time.parse(LOG)
    assert calls == [
        ("reorder", "undef", "jit:uni", "2x28x8x8", 0.145996),
        (
            "convolution",
            "forward_training",
            "jit_bf16:avx512_core_bf16",
            "mb2_ic28oc28_ih8oh8kh3sh1dh0ph1_iw8ow8kw3sw1dw0pw1",
            0.0158691,
        ),
    ]


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="this torch has no oneDNN")
def test_parse_reads_this_torchs_own_log(capfd):
    x, w = torch.randn(2, 28, 8, 8), torch.randn(28, 28, 3, 3)
    with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
        F.conv2d(x, w, padding=1)
    calls = onednn_time.parse(capfd.readouterr().out)
    convs = [c for c in calls if c[0] == "convolution"]
    assert len(convs) == 1
    kind, prop, kernel, shape, ms = convs[0]
    assert prop.startswith("forward") and "ic28oc28" in shape and ms > 0
