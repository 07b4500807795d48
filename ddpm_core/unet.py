"""The article's noise-predicting U-Net ε_θ(x_t, t).

(B, C, H, W) noisy images and (B,) timesteps in, (B, out_dim, H, W) predicted noise out.
Each resolution level has two ResNet blocks, linear attention and a down/upsample; the
middle has full attention. H and W must be divisible by 2^(len(dim_mults) − 1).
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from .unet_blocks import (
    Attention,
    Downsample,
    LinearAttention,
    PreNorm,
    Residual,
    ResnetBlock,
    SinusoidalPositionEmbeddings,
    Upsample,
)


class Unet(nn.Module):
    def __init__(
        self,
        dim: int,
        init_dim: int | None = None,
        out_dim: int | None = None,
        dim_mults=(1, 2, 4, 8),
        channels: int = 3,
        self_condition: bool = False,
        resnet_block_groups: int = 4,
    ):
        super().__init__()
        self.channels = channels
        self.self_condition = self_condition
        input_channels = channels * (2 if self_condition else 1)

        init_dim = init_dim or dim
        # The article uses a 1×1 initial convolution (changed from 7×7 in the original).
        self.init_conv = nn.Conv2d(input_channels, init_dim, 1, padding=0)

        dims = [init_dim, *(dim * m for m in dim_mults)]
        in_out = list(zip(dims[:-1], dims[1:]))
        block_klass = partial(ResnetBlock, groups=resnet_block_groups)

        time_dim = dim * 4
        self.time_mlp = nn.Sequential(
            SinusoidalPositionEmbeddings(dim),
            nn.Linear(dim, time_dim),
            nn.GELU(),
            nn.Linear(time_dim, time_dim),
        )

        self.downs = nn.ModuleList([])
        self.ups = nn.ModuleList([])
        num_resolutions = len(in_out)

        for ind, (dim_in, dim_out) in enumerate(in_out):
            is_last = ind >= num_resolutions - 1
            self.downs.append(
                nn.ModuleList(
                    [
                        block_klass(dim_in, dim_in, time_emb_dim=time_dim),
                        block_klass(dim_in, dim_in, time_emb_dim=time_dim),
                        Residual(PreNorm(dim_in, LinearAttention(dim_in))),
                        Downsample(dim_in, dim_out) if not is_last else nn.Conv2d(dim_in, dim_out, 3, padding=1),
                    ]
                )
            )

        mid_dim = dims[-1]
        self.mid_block1 = block_klass(mid_dim, mid_dim, time_emb_dim=time_dim)
        self.mid_attn = Residual(PreNorm(mid_dim, Attention(mid_dim)))
        self.mid_block2 = block_klass(mid_dim, mid_dim, time_emb_dim=time_dim)

        for ind, (dim_in, dim_out) in enumerate(reversed(in_out)):
            is_last = ind == len(in_out) - 1
            self.ups.append(
                nn.ModuleList(
                    [
                        block_klass(dim_out + dim_in, dim_out, time_emb_dim=time_dim),
                        block_klass(dim_out + dim_in, dim_out, time_emb_dim=time_dim),
                        Residual(PreNorm(dim_out, LinearAttention(dim_out))),
                        Upsample(dim_out, dim_in) if not is_last else nn.Conv2d(dim_out, dim_in, 3, padding=1),
                    ]
                )
            )

        self.out_dim = out_dim or channels
        # The last level's features (init_dim wide) joined with the first ones (init_dim too);
        # the article writes dim * 2, the same where init_dim is left unset.
        self.final_res_block = block_klass(init_dim * 2, dim, time_emb_dim=time_dim)
        self.final_conv = nn.Conv2d(dim, self.out_dim, 1)
        self.downsample_factor = 2 ** (num_resolutions - 1)

    def middle_attention_bytes(self, image_size: int, bytes_per_score: int) -> int:
        """Bytes of the middle block's attention for one image: (H·W)² scores per head at
        the lowest resolution, so the 4th power of the image size. `bytes_per_score` counts
        every copy held at once (memory.attention_bytes_per_score)."""
        side = image_size // self.downsample_factor
        return self.mid_attn.fn.fn.heads * side**4 * bytes_per_score

    def forward(self, x: torch.Tensor, time: torch.Tensor, x_self_cond: torch.Tensor | None = None) -> torch.Tensor:
        if self.self_condition:
            if x_self_cond is None:
                x_self_cond = torch.zeros_like(x)
            x = torch.cat((x_self_cond, x), dim=1)

        x = self.init_conv(x)
        r = x.clone()
        t = self.time_mlp(time)

        h = []  # skip connections, two per level
        for block1, block2, attn, downsample in self.downs:
            x = block1(x, t)
            h.append(x)
            x = block2(x, t)
            x = attn(x)
            h.append(x)
            x = downsample(x)

        x = self.mid_block1(x, t)
        x = self.mid_attn(x)
        x = self.mid_block2(x, t)

        for block1, block2, attn, upsample in self.ups:
            x = torch.cat((x, h.pop()), dim=1)
            x = block1(x, t)
            x = torch.cat((x, h.pop()), dim=1)
            x = block2(x, t)
            x = attn(x)
            x = upsample(x)

        x = torch.cat((x, r), dim=1)
        x = self.final_res_block(x, t)
        return self.final_conv(x)


def build_unet(model_cfg) -> Unet:
    """A Unet from a `ModelConfig`."""
    return Unet(
        dim=model_cfg.dim,
        init_dim=model_cfg.init_dim,
        out_dim=model_cfg.out_dim,
        dim_mults=tuple(model_cfg.dim_mults),
        channels=model_cfg.channels,
        self_condition=model_cfg.self_condition,
        resnet_block_groups=model_cfg.resnet_block_groups,
    )


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
