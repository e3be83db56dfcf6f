"""The SD v1 noise predictor ε(z_t, t, context), sd_v1.md §4.

The module tree mirrors CompVis `openaimodel.UNetModel` so that the checkpoint keys
`model.diffusion_model.…` load one to one.
"""
import math
from dataclasses import dataclass
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .attention import attention, merge_heads, split_heads


@dataclass
class UNetConfig:
    in_channels: int = 4
    out_channels: int = 4
    model_channels: int = 320
    channel_mult: Tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    attention_resolutions: Tuple[int, ...] = (4, 2, 1)  # downsampling rates that get attention
    num_heads: int = 8
    context_dim: int = 768


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in at least float32 whatever the input dtype (CompVis GroupNorm32)."""

    def forward(self, x):
        dtype = torch.promote_types(x.dtype, torch.float32)
        w = None if self.weight is None else self.weight.to(dtype)
        b = None if self.bias is None else self.bias.to(dtype)
        return F.group_norm(x.to(dtype), self.num_groups, w, b, self.eps).to(x.dtype)


def timestep_embedding(t, dim, dtype):
    """Sinusoidal embedding, cosine half first, freqs exp(-ln(1e4)·k/half): t (B,) -> (B, dim).

    Computed in float32 as CompVis does (float64 when `dtype` is float64), fractional t allowed.
    """
    work = torch.promote_types(dtype, torch.float32)
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=work, device=t.device) / half)
    args = t.to(work)[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1).to(dtype)


class ResBlock(nn.Module):
    def __init__(self, channels, emb_channels, out_channels):
        super().__init__()
        self.in_layers = nn.Sequential(
            GroupNorm32(32, channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1)
        )
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, out_channels))
        self.out_layers = nn.Sequential(
            GroupNorm32(32, out_channels),
            nn.SiLU(),
            nn.Dropout(0.0),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
        )
        self.skip_connection = (
            nn.Identity() if channels == out_channels else nn.Conv2d(channels, out_channels, 1)
        )

    def forward(self, x, emb):
        """x: (B, C, H, W), emb: (B, emb_channels) -> (B, C_out, H, W)."""
        h = self.in_layers(x)
        h = h + self.emb_layers(emb)[:, :, None, None]
        return self.skip_connection(x) + self.out_layers(h)


class CrossAttention(nn.Module):
    def __init__(self, dim, context_dim, heads):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(context_dim, dim, bias=False)
        self.to_v = nn.Linear(context_dim, dim, bias=False)
        self.to_out = nn.Sequential(nn.Linear(dim, dim), nn.Dropout(0.0))

    def forward(self, x, context=None):
        """x: (B, N, dim), context: (B, M, context_dim) or None for self-attention."""
        context = x if context is None else context
        q = split_heads(self.to_q(x), self.heads)
        k = split_heads(self.to_k(context), self.heads)
        v = split_heads(self.to_v(context), self.heads)
        return self.to_out(merge_heads(attention(q, k, v)))


class GEGLU(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.proj = nn.Linear(dim, hidden * 2)

    def forward(self, x):
        value, gate = self.proj(x).chunk(2, dim=-1)
        return value * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.net = nn.Sequential(GEGLU(dim, 4 * dim), nn.Dropout(0.0), nn.Linear(4 * dim, dim))

    def forward(self, x):
        return self.net(x)


class BasicTransformerBlock(nn.Module):
    def __init__(self, dim, context_dim, heads):
        super().__init__()
        self.attn1 = CrossAttention(dim, dim, heads)
        self.ff = FeedForward(dim)
        self.attn2 = CrossAttention(dim, context_dim, heads)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, x, context):
        x = x + self.attn1(self.norm1(x))
        x = x + self.attn2(self.norm2(x), context)
        return x + self.ff(self.norm3(x))


class SpatialTransformer(nn.Module):
    def __init__(self, channels, context_dim, heads):
        super().__init__()
        self.norm = GroupNorm32(32, channels, eps=1e-6)
        self.proj_in = nn.Conv2d(channels, channels, 1)
        self.transformer_blocks = nn.ModuleList(
            [BasicTransformerBlock(channels, context_dim, heads)]
        )
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x, context):
        """x: (B, C, H, W), context: (B, M, context_dim) -> (B, C, H, W)."""
        b, c, h, w = x.shape
        tokens = self.proj_in(self.norm(x)).flatten(2).transpose(1, 2)  # (B, H·W, C)
        for block in self.transformer_blocks:
            tokens = block(tokens, context)
        return x + self.proj_out(tokens.transpose(1, 2).reshape(b, c, h, w))


class Downsample(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x):
        return self.op(x)


class Upsample(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class TimestepSequential(nn.Sequential):
    """Runs its layers in order, giving `emb` to ResBlocks and `context` to transformers."""

    def forward(self, x, emb, context):
        for layer in self:
            if isinstance(layer, ResBlock):
                x = layer(x, emb)
            elif isinstance(layer, SpatialTransformer):
                x = layer(x, context)
            else:
                x = layer(x)
        return x


class UNetModel(nn.Module):
    """ε(x, t, context): x (B, 4, h, w), t (B,) (may be fractional), context (B, M, 768)."""

    def __init__(self, cfg: UNetConfig):
        super().__init__()
        self.config = cfg
        ch = cfg.model_channels
        emb_ch = 4 * ch
        heads = cfg.num_heads

        def transformer(c):
            return SpatialTransformer(c, cfg.context_dim, heads)

        self.time_embed = nn.Sequential(nn.Linear(ch, emb_ch), nn.SiLU(), nn.Linear(emb_ch, emb_ch))
        self.input_blocks = nn.ModuleList(
            [TimestepSequential(nn.Conv2d(cfg.in_channels, ch, 3, padding=1))]
        )
        skip_channels = [ch]
        ds = 1
        for level, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_res_blocks):
                layers = [ResBlock(ch, emb_ch, mult * cfg.model_channels)]
                ch = mult * cfg.model_channels
                if ds in cfg.attention_resolutions:
                    layers.append(transformer(ch))
                self.input_blocks.append(TimestepSequential(*layers))
                skip_channels.append(ch)
            if level != len(cfg.channel_mult) - 1:
                self.input_blocks.append(TimestepSequential(Downsample(ch)))
                skip_channels.append(ch)
                ds *= 2
        self.middle_block = TimestepSequential(
            ResBlock(ch, emb_ch, ch), transformer(ch), ResBlock(ch, emb_ch, ch)
        )
        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.channel_mult))):
            for i in range(cfg.num_res_blocks + 1):
                layers = [ResBlock(ch + skip_channels.pop(), emb_ch, mult * cfg.model_channels)]
                ch = mult * cfg.model_channels
                if ds in cfg.attention_resolutions:
                    layers.append(transformer(ch))
                if level and i == cfg.num_res_blocks:
                    layers.append(Upsample(ch))
                    ds //= 2
                self.output_blocks.append(TimestepSequential(*layers))
        self.out = nn.Sequential(
            GroupNorm32(32, ch), nn.SiLU(), nn.Conv2d(ch, cfg.out_channels, 3, padding=1)
        )
        self.gradient_checkpointing = False

    def run_block(self, block, h, emb, context):
        """block(h, emb, context), recomputed in the backward pass when gradient checkpointing
        is on. Non-reentrant checkpointing gives gradients to whatever needs them (here the
        context) even when every weight is frozen, unlike CompVis' `use_checkpoint`."""
        if self.gradient_checkpointing and torch.is_grad_enabled():
            return checkpoint(block, h, emb, context, use_reentrant=False)
        return block(h, emb, context)

    def forward(self, x, t, context):
        dtype = self.time_embed[0].weight.dtype
        emb = self.time_embed(timestep_embedding(t, self.config.model_channels, dtype))
        h = x.to(dtype)
        context = context.to(dtype)
        skips = []
        for block in self.input_blocks:
            h = self.run_block(block, h, emb, context)
            skips.append(h)
        h = self.run_block(self.middle_block, h, emb, context)
        for block in self.output_blocks:
            h = self.run_block(block, torch.cat([h, skips.pop()], dim=1), emb, context)
        return self.out(h).to(x.dtype)
