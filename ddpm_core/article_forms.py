"""The article's own way of computing four U-Net blocks, kept as the plain reference.

DDPM Studio computes attention, upsampling and weight standardisation in faster orders (see
unet_blocks.py). The forms here follow the article's notebook step by step: einsum over
rearranged copies, the standardised kernel recomputed at every call. They compute the
same function; tests check the fast forms against them, and scripts/bench_speed.py runs
them as "the article's way", so its baseline is the article's code path, not ours.
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .unet_blocks import Attention, LinearAttention, Upsample, WeightStandardizedConv2d


def attention(block: Attention, x: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    q, k, v = (rearrange(p, "b (h c) x y -> b h c (x y)", h=block.heads) for p in block.to_qkv(x).chunk(3, dim=1))
    q = q * block.scale
    sim = torch.einsum("b h d i, b h d j -> b h i j", q, k)
    sim = sim - sim.amax(dim=-1, keepdim=True).detach()
    out = torch.einsum("b h i j, b h d j -> b h i d", sim.softmax(dim=-1), v)
    return block.to_out(rearrange(out, "b h (x y) d -> b (h d) x y", x=h, y=w))


def linear_attention(block: LinearAttention, x: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    q, k, v = (rearrange(p, "b (h c) x y -> b h c (x y)", h=block.heads) for p in block.to_qkv(x).chunk(3, dim=1))
    q, k = q.softmax(dim=-2), k.softmax(dim=-1)
    q = q * block.scale
    context = torch.einsum("b h d n, b h e n -> b h d e", k, v)
    out = torch.einsum("b h d e, b h d n -> b h e n", context, q)
    return block.to_out(rearrange(out, "b h c (x y) -> b (h c) x y", h=block.heads, x=h, y=w))


def weight_standardized_conv(conv: WeightStandardizedConv2d, x: torch.Tensor) -> torch.Tensor:
    eps = 1e-5 if x.dtype == torch.float32 else 1e-3
    weight = conv.weight
    mean = weight.mean(dim=(1, 2, 3), keepdim=True)
    var = weight.var(dim=(1, 2, 3), keepdim=True, unbiased=False)
    normalized = (weight - mean) * (var + eps).rsqrt()
    return F.conv2d(x, normalized, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups)


def upsample(block: Upsample, x: torch.Tensor) -> torch.Tensor:
    return block[1](block[0](x))  # the ×2 image, then the 3×3 convolution over it


_FORMS = {
    Attention: attention,
    LinearAttention: linear_attention,
    Upsample: upsample,
    WeightStandardizedConv2d: weight_standardized_conv,
}


def use_article_forms(model: nn.Module) -> nn.Module:
    """Make every attention, upsampling and standardised convolution of `model` run the article's form.

    Changes only how the blocks compute (their `forward`), never the weights; returns `model`.
    """
    for module in model.modules():
        form = _FORMS.get(type(module))
        if form is not None:
            module.forward = types.MethodType(form, module)
    return model
