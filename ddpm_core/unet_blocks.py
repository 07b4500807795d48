"""The building blocks of the article's U-Net (after Phil Wang's denoising-diffusion-pytorch).

Module and attribute names are the article's, so that a state_dict saved from the article's
notebook loads unchanged (see tests/core/reference/unet_state_dict_dim28_c1_mults124.txt).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops.layers.torch import Rearrange
from torch import nn


class Residual(nn.Module):
    """fn(x) + x."""

    def __init__(self, fn: nn.Module):
        super().__init__()
        self.fn = fn

    def forward(self, x, *args, **kwargs):
        return self.fn(x, *args, **kwargs) + x


class Upsample(nn.Sequential):
    """Nearest-neighbour ×2, then a 3×3 convolution (the article's layers, in its order).

    Computed without making the ×2 image: every output pixel of the 3×3 convolution over a
    nearest-upsampled image sees only 2×2 distinct input pixels, so the four output parities
    (even/odd row, even/odd column) are four 2×2 convolutions of the small image, with
    kernels summed from the 3×3 one. One 2×2 convolution with 4·dim_out channels computes
    all four, at 4/9 of the multiply-adds. Same function, same weights; on a 2-core CPU
    (bf16) the block measured 1.4-2.4x faster for sampling and 1.25-1.7x for training.
    """

    def __init__(self, dim: int, dim_out: int | None = None):
        super().__init__(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(dim, dim_out or dim, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu":
            return super().forward(x)  # measured on CPUs only; GPUs keep the article's order
        conv = self[1]
        b, _, h, w = x.shape
        c_out = conv.out_channels
        z = F.conv2d(F.pad(x, (1, 1, 1, 1)), _parity_kernels(conv.weight), conv.bias.repeat(4))
        z = z.view(b, 2, 2, c_out, h + 1, w + 1)  # (row parity, column parity) first
        out = z.new_empty(b, c_out, h, 2, w, 2)
        for py in (0, 1):
            for px in (0, 1):
                # output pixel (2i+py, 2j+px) is z's position (i+py, j+px) for its parity
                out[:, :, :, py, :, px] = z[:, py, px, :, py : py + h, px : px + w]
        return out.view(b, c_out, 2 * h, 2 * w)


# Which of the 3 kernel rows fall on each of the 2 small-image rows a parity sees: an even
# output row 2i sees input rows i−1 (kernel row 0) and i (rows 1, 2); an odd one, 2i+1,
# sees i (rows 0, 1) and i+1 (row 2). Columns alike.
_PARITY_ROWS = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]], [[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])


def _parity_kernels(weight: torch.Tensor) -> torch.Tensor:
    """(C_out, C_in, 3, 3) -> (4·C_out, C_in, 2, 2): K[py, px] = R[py] · W · R[px]ᵀ."""
    rows = _PARITY_ROWS.to(weight.device, weight.dtype)
    kernels = torch.einsum("ypa,oiab,xqb->yxoipq", rows, weight, rows)
    return kernels.reshape(4 * weight.shape[0], weight.shape[1], 2, 2)


def Downsample(dim: int, dim_out: int | None = None) -> nn.Sequential:
    """Space-to-depth (each 2×2 patch becomes 4 channels), then a 1×1 convolution.

    No strided convolution or pooling: no information is thrown away before the conv.
    """
    return nn.Sequential(
        Rearrange("b c (h p1) (w p2) -> b (c p1 p2) h w", p1=2, p2=2),
        nn.Conv2d(dim * 4, dim_out or dim, 1),
    )


class SinusoidalPositionEmbeddings(nn.Module):
    """Timesteps (B,) -> (B, dim): [sin(t·ω_k), cos(t·ω_k)], ω_k = 10000^(−k/(dim/2 − 1)).

    The Transformer's position encoding (Vaswani et al. 2017), used to tell every block
    which noise level it is working at.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, time: torch.Tensor) -> torch.Tensor:
        half_dim = self.dim // 2
        scale = math.log(10000) / (half_dim - 1)
        freqs = torch.exp(torch.arange(half_dim, device=time.device) * -scale)
        args = time[:, None] * freqs[None, :]
        return torch.cat((args.sin(), args.cos()), dim=-1)


class WeightStandardizedConv2d(nn.Conv2d):
    """Conv2d whose kernel is standardised per output channel (Qiao et al. 2019,
    https://arxiv.org/abs/1903.10520); it works well together with GroupNorm.

    When the weights are frozen (sampling), the standardised kernel is computed once and
    reused until the weights change (a new EMA step, a loaded checkpoint).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        eps = 1e-5 if x.dtype == torch.float32 else 1e-3
        return F.conv2d(x, self.standardized_weight(eps), self.bias, self.stride, self.padding, self.dilation, self.groups)

    def standardized_weight(self, eps: float) -> torch.Tensor:
        weight = self.weight
        if torch.is_grad_enabled() and weight.requires_grad:
            return _standardize(weight, eps)  # training: the gradient flows through it
        # _version counts in-place changes (optimizer, EMA, load_state_dict); data_ptr
        # changes when the module is copied or moved.
        key = (weight._version, weight.data_ptr(), weight.device, eps)
        if getattr(self, "_frozen_key", None) != key:
            self._frozen_weight = _standardize(weight.detach(), eps)
            self._frozen_key = key
        return self._frozen_weight


def _standardize(weight: torch.Tensor, eps: float) -> torch.Tensor:
    # (W − mean) / √(var + ε) per output channel, over (C_in, kh, kw) with the biased
    # variance: exactly what layer_norm computes over a weight's trailing dimensions, in one
    # kernel forward and backward where mean, var, subtract and rsqrt take a dozen
    # (5.6× faster on the CPU; on a GPU each small kernel costs its launch).
    return F.layer_norm(weight, weight.shape[1:], eps=eps)


class Block(nn.Module):
    """3×3 weight-standardised conv -> GroupNorm -> optional FiLM (scale, shift) -> SiLU."""

    def __init__(self, dim: int, dim_out: int, groups: int = 8):
        super().__init__()
        self.proj = WeightStandardizedConv2d(dim, dim_out, 3, padding=1)
        self.norm = nn.GroupNorm(groups, dim_out)
        self.act = nn.SiLU()

    def forward(self, x, scale_shift=None):
        x = self.norm(self.proj(x))
        if scale_shift is not None:
            scale, shift = scale_shift
            x = x * (scale + 1) + shift
        return self.act(x)


class ResnetBlock(nn.Module):
    """Two Blocks with a residual connection (He et al. 2016); the time embedding sets the
    first block's scale and shift."""

    def __init__(self, dim: int, dim_out: int, *, time_emb_dim: int | None = None, groups: int = 8):
        super().__init__()
        self.mlp = nn.Sequential(nn.SiLU(), nn.Linear(time_emb_dim, dim_out * 2)) if time_emb_dim else None
        self.block1 = Block(dim, dim_out, groups=groups)
        self.block2 = Block(dim_out, dim_out, groups=groups)
        self.res_conv = nn.Conv2d(dim, dim_out, 1) if dim != dim_out else nn.Identity()

    def forward(self, x, time_emb=None):
        scale_shift = None
        if self.mlp is not None and time_emb is not None:
            time_emb = self.mlp(time_emb)[:, :, None, None]  # (B, 2·dim_out, 1, 1)
            scale_shift = time_emb.chunk(2, dim=1)
        h = self.block1(x, scale_shift=scale_shift)
        h = self.block2(h)
        return h + self.res_conv(x)


class Attention(nn.Module):
    """Multi-head self-attention over all H·W positions (used at the lowest resolution)."""

    def __init__(self, dim: int, heads: int = 4, dim_head: int = 32):
        super().__init__()
        self.scale = dim_head**-0.5
        self.heads = heads
        hidden_dim = dim_head * heads
        self.to_qkv = nn.Conv2d(dim, hidden_dim * 3, 1, bias=False)
        self.to_out = nn.Conv2d(hidden_dim, dim, 1)

    def forward(self, x):
        b, c, h, w = x.shape
        # (B, 3·heads·d, H, W) -> q, k, v each (B, heads, d, H·W): views, no copies
        q, k, v = self.to_qkv(x).view(b, 3, self.heads, -1, h * w).unbind(dim=1)
        q = q * self.scale
        sim = q.transpose(-1, -2) @ k  # (B, heads, i, j) = Σ_d q_di k_dj
        attn = sim.softmax(dim=-1)  # softmax subtracts the row max itself
        out = v @ attn.transpose(-1, -2)  # (B, heads, d, i) = Σ_j v_dj attn_ij
        return self.to_out(out.reshape(b, -1, h, w))


class LinearAttention(nn.Module):
    """Linear attention (Shen et al. 2018): softmax over features, not positions, so the cost
    grows linearly with H·W.

    For each head, with q̃ = softmax_d(q)·scale and k̃ = softmax_n(k):
        context = k̃ vᵀ            (d × e, summed over the n positions)
        out     = W_out · contextᵀ q̃ + b_out
    """

    def __init__(self, dim: int, heads: int = 4, dim_head: int = 32):
        super().__init__()
        self.scale = dim_head**-0.5
        self.heads = heads
        hidden_dim = dim_head * heads
        self.to_qkv = nn.Conv2d(dim, hidden_dim * 3, 1, bias=False)
        self.to_out = nn.Sequential(nn.Conv2d(hidden_dim, dim, 1), nn.GroupNorm(1, dim))

    def forward(self, x):
        b, c, h, w = x.shape
        # Where positions outnumber channels (the high-resolution levels) the same products
        # are taken in another order that never makes v or the per-head output, each a
        # (heads·d × H·W) tensor: on a 2-core CPU a whole training step of the article's
        # model measured 1.13-1.21x faster, a sampling step 1.09-1.21x. At 7×7 the folded
        # order measured slower, so the plain order stays there.
        out = self._folded(x) if h * w >= 2 * c else self._plain(x)
        return self.to_out[1](out.view(b, c, h, w))

    def _plain(self, x):
        b, c, h, w = x.shape
        q, k, v = self.to_qkv(x).view(b, 3, self.heads, -1, h * w).unbind(dim=1)  # (B, heads, d, n) views
        q = q.softmax(dim=-2)
        k = k.softmax(dim=-1)
        q = q * self.scale
        context = k @ v.transpose(-1, -2)  # (B, heads, d, e) = Σ_n k_dn v_en
        out = context.transpose(-1, -2) @ q  # (B, heads, e, n) = Σ_d context_de q_dn
        return self.to_out[0](out.reshape(b, -1, h, w))

    def _project_q_k(self, x, xs, hd: int):
        """q = W_q x and k = W_k x, each (B, hd = heads·d, H·W); xs is x as (B, C, H·W)."""
        w_qk = self.to_qkv.weight[: 2 * hd]
        if torch.is_grad_enabled() or x.device.type != "cpu":
            # Two convolutions: one for both, then split, made the backward pass gather
            # both gradients into one buffer (measured 20% slower on this block).
            return F.conv2d(x, w_qk[:hd]).flatten(2), F.conv2d(x, w_qk[hd:]).flatten(2)
        # Without gradients (sampling) on a CPU, matmuls straight into the layout q and k are
        # used in: a 1×1 convolution costs oneDNN a copy of x into its blocked layout and of
        # the output back. Same products; a sampling step of the article's model measured
        # 1.02-1.05x faster (2 cores, bf16). Two matmuls, not one split in two: the softmax
        # copies a half that is not contiguous (1.017x more).
        w = w_qk.flatten(1)  # autocast casts it and xs, as it would for the convolution
        return torch.matmul(w[:hd], xs), torch.matmul(w[hd:], xs)

    def _folded(self, x):
        # v = W_v x and the 1×1 output conv are linear, so they move inside the products:
        #   context = (k̃ xᵀ) W_vᵀ                        (d × c, then d × e)
        #   out     = [W_out,h contextₕᵀ]ₕ q̃ + b_out       ((c × heads·d) times (heads·d × n))
        b, c, h, w = x.shape
        n, heads = h * w, self.heads
        w_qkv = self.to_qkv.weight.view(3, heads, -1, c)  # (3, heads, d, c)
        d = w_qkv.shape[2]
        xs = x.reshape(b, c, n)
        q, k = self._project_q_k(x, xs, heads * d)
        q = q.view(b, heads, d, n).softmax(dim=-2)
        k = k.view(b, heads, d, n).softmax(dim=-1)
        kx = k.reshape(b, heads * d, n) @ xs.transpose(1, 2)  # (B, heads·d, c) = Σ_n k_dn x_cn
        context = kx.view(b, heads, d, c) @ w_qkv[2].transpose(1, 2).to(kx.dtype)  # (B, heads, d, e)
        conv_out = self.to_out[0]
        w_out = conv_out.weight.view(c, heads, d).transpose(0, 1).to(context.dtype)  # (heads, c, e)
        mixed = w_out @ context.transpose(-1, -2) * self.scale  # (B, heads, c, d) = W_out,h contextₕᵀ
        mixed = mixed.transpose(1, 2).reshape(b, c, heads * d)  # small: c × heads·d per image
        out = mixed @ q.reshape(b, heads * d, n)  # (B, c, n)
        return out + conv_out.bias.to(out.dtype)[:, None]


class PreNorm(nn.Module):
    """GroupNorm with one group (LayerNorm over C, H, W) before fn."""

    def __init__(self, dim: int, fn: nn.Module):
        super().__init__()
        self.fn = fn
        self.norm = nn.GroupNorm(1, dim)

    def forward(self, x):
        return self.fn(self.norm(x))
