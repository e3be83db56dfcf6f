"""The face UNet of HW2 Problem 2, written so that the course's `UNet.pt` loads strictly.

The module tree reproduces the template's state_dict names (`time`, `down1`..`down18`,
`mid1`, `mid2`, `up1`..`up23`, `out`; see `tests/p2/golden/face_unet_state_dict.tsv`) and its
forward pass (an SR3/DDPM-style UNet predicting the noise epsilon). The template hard-codes
the widths 128/128/256/256/512/512; here they are `channels` times (1, 1, 2, 2, 4, 4), so
`channels=128` is the course model and smaller widths give cheap models for tests.
"""

import math
from typing import List, Optional, Tuple

import torch
from torch import nn
from torch.nn import functional as F

LEVEL_MULTIPLIERS = (1, 1, 2, 2, 4, 4)
ATTENTION_LEVELS = (4,)  # attention at 1/16 of the input size, plus in `mid1`
BLOCKS_PER_LEVEL = 2


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels)


class SinusoidalEmbedding(nn.Module):
    """Raw integer timesteps (B,) -> (B, dim): dim/2 sines followed by dim/2 cosines."""

    def __init__(self, dim: int):
        super().__init__()
        # float32 exactly as the template computes it; `UNet.pt` carries its own copy.
        inv_freq = torch.exp(
            torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000) / dim)
        )
        self.register_buffer("inv_freq", inv_freq)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        angles = t.reshape(-1).float()[:, None] * self.inv_freq[None, :]
        return torch.cat([angles.sin(), angles.cos()], dim=-1)


class ResidualBlock(nn.Module):
    """GroupNorm-SiLU-conv, add the time projection, GroupNorm-SiLU-dropout-conv, residual."""

    def __init__(self, in_channels: int, out_channels: int, time_dim: int, dropout: float):
        super().__init__()
        self.norm1 = group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.time = nn.Sequential(nn.SiLU(), nn.Linear(time_dim, out_channels))
        self.norm2 = group_norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor, time_emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time(time_emb)[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return h + (x if self.skip is None else self.skip(x))


class SelfAttention(nn.Module):
    """Multi-head self-attention over all pixels; logits are scaled by 1/sqrt(C), not 1/sqrt(d)."""

    def __init__(self, channels: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm = group_norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, self.heads, 3 * c // self.heads, h * w)
        q, k, v = qkv.chunk(3, dim=2)  # each (B, heads, d, h*w)
        weights = torch.einsum("bndq,bndk->bnqk", q, k).div(math.sqrt(c)).softmax(dim=-1)
        attended = torch.einsum("bnqk,bndk->bndq", weights, v).reshape(b, c, h, w)
        return x + self.out(attended)


class ResidualStage(nn.Module):
    """A residual block, optionally followed by self-attention (the template's key names)."""

    def __init__(
        self, in_ch: int, out_ch: int, time_dim: int, dropout: float, heads: Optional[int]
    ):
        super().__init__()
        self.resblocks = ResidualBlock(in_ch, out_ch, time_dim, dropout)
        self.attention = SelfAttention(out_ch, heads) if heads else None

    def forward(self, x: torch.Tensor, time_emb: torch.Tensor) -> torch.Tensor:
        x = self.resblocks(x, time_emb)
        return x if self.attention is None else self.attention(x)


def downsample(channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(channels, channels, 3, stride=2, padding=1))


def upsample(channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(channels, channels, 3, padding=1)
    )


class FaceUNet(nn.Module):
    """Noise predictor eps(x_t, t) of the course's face DDPM.

    Args:
        in_channels: image channels (3).
        channels: base width; 128 is the course model (113,673,219 parameters).
        attn_heads: attention heads; must divide 4 * channels.
        dropout: dropout inside every residual block (0 in the course model).

    Input sizes must be multiples of 32 (five stride-2 downsamplings).
    """

    def __init__(
        self, in_channels: int = 3, channels: int = 128, attn_heads: int = 1, dropout: float = 0.0
    ):
        super().__init__()
        time_dim = 4 * channels
        self.time = nn.Sequential(
            SinusoidalEmbedding(channels),
            nn.Linear(channels, time_dim),
            nn.SiLU(),
            nn.Linear(time_dim, time_dim),
        )

        def stage(in_ch: int, out_ch: int, attention: bool) -> ResidualStage:
            return ResidualStage(
                in_ch, out_ch, time_dim, dropout, attn_heads if attention else None
            )

        down: List[Tuple[nn.Module, bool]] = [
            (nn.Conv2d(in_channels, channels, 3, padding=1), False)
        ]
        skip_channels = [channels]
        width = channels
        for level, multiplier in enumerate(LEVEL_MULTIPLIERS):
            for _ in range(BLOCKS_PER_LEVEL):
                down.append((stage(width, channels * multiplier, level in ATTENTION_LEVELS), True))
                width = channels * multiplier
                skip_channels.append(width)
            if level < len(LEVEL_MULTIPLIERS) - 1:
                down.append((downsample(width), False))
                skip_channels.append(width)

        middle = [stage(width, width, attention=True), stage(width, width, attention=False)]

        up: List[Tuple[nn.Module, bool]] = []
        for level, multiplier in reversed(list(enumerate(LEVEL_MULTIPLIERS))):
            for _ in range(BLOCKS_PER_LEVEL + 1):
                skip = skip_channels.pop()
                up.append(
                    (stage(width + skip, channels * multiplier, level in ATTENTION_LEVELS), True)
                )
                width = channels * multiplier
            if level > 0:
                up.append((upsample(width), False))

        # Registration order fixes the state_dict order: time, down*, mid*, up*, out.
        self._down_layers = self._register("down", down)
        self.mid1, self.mid2 = middle
        self._up_layers = self._register("up", up)
        self.out = nn.Sequential(
            group_norm(channels), nn.SiLU(), nn.Conv2d(channels, 3, 3, padding=1)
        )

    def _register(
        self, prefix: str, layers: List[Tuple[nn.Module, bool]]
    ) -> List[Tuple[str, bool]]:
        """Add layers as `{prefix}1`, `{prefix}2`, ...; remember which take the time embedding."""
        names = []
        for index, (layer, takes_time) in enumerate(layers, start=1):
            self.add_module(f"{prefix}{index}", layer)
            names.append((f"{prefix}{index}", takes_time))
        return names

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, H, W) with H, W multiples of 32; t: (B,) raw timesteps -> eps (B, 3, H, W)."""
        time_emb = self.time(t)
        skips = []
        for name, takes_time in self._down_layers:
            layer = getattr(self, name)
            x = layer(x, time_emb) if takes_time else layer(x)
            skips.append(x)
        x = self.mid2(self.mid1(x, time_emb), time_emb)
        for name, takes_time in self._up_layers:
            layer = getattr(self, name)
            x = layer(torch.cat([x, skips.pop()], dim=1), time_emb) if takes_time else layer(x)
        return self.out(x)

    @classmethod
    def for_state_dict(cls, state_dict: dict) -> "FaceUNet":
        """An untrained model whose widths match a state_dict of this architecture."""
        channels, in_channels = state_dict["down1.weight"].shape[:2]
        return cls(in_channels=int(in_channels), channels=int(channels))
