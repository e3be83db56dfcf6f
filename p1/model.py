"""A small conditional UNet that predicts the noise ε of a DDPM.

Call convention (the only thing the diffusion code relies on)::

    eps = model(x_t, t, cond)     # x_t: (B, C, H, W); t: (B,) integer timesteps 0..T-1;
                                  # cond: (B, cond_dim) float condition vector

The condition is a generic vector: for the digits it is a one-hot digit followed by a one-hot
dataset (see ``p1.data.digit_condition``); for multi-label data it can be a multi-hot vector.
The all-zeros vector is the "no condition" input used for classifier-free guidance. The vector
goes through a small MLP and is added to the time embedding, which every residual block reads
(scale and shift after its second GroupNorm).

``patch_size`` p > 1 folds each p x p pixel patch into channels before the first convolution
(pixel unshuffle) and unfolds the output: the network runs at 1/p of the image side, e.g. at
32x32 for the 64x64 iCLEVR images, at about a quarter of the cost.
"""
import math
from typing import Dict, Sequence

import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_CONFIG = {
    "image_size": 28,
    "image_channels": 3,
    "cond_dim": 12,
    "base_channels": 32,
    "channel_mults": (1, 2, 2),
    "blocks_per_level": 1,
    "attention_levels": (2,),
    "dropout": 0.1,
    "patch_size": 1,
}


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps (Vaswani et al. 2017). t: (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / half)
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([angles.cos(), angles.sin()], dim=1)


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, channels // 4), channels)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice; the embedding sets a per-channel scale and shift."""

    def __init__(self, in_channels: int, out_channels: int, emb_dim: int, dropout: float):
        super().__init__()
        self.norm1 = _norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * out_channels)
        self.norm2 = _norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = (nn.Identity() if in_channels == out_channels
                     else nn.Conv2d(in_channels, out_channels, 1))

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(F.silu(emb))[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Single-head self-attention over the pixels of a feature map, with a residual."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = _norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).unbind(1)
        weights = torch.softmax(torch.einsum("bci,bcj->bij", q, k) / math.sqrt(c), dim=-1)
        attended = torch.einsum("bij,bcj->bci", weights, v).reshape(b, c, h, w)
        return x + self.out(attended)


class ConditionalUNet(nn.Module):
    """ε-prediction UNet. Resolution is divided by 2 at each level after the first, so the
    image side must be divisible by ``2 ** (len(channel_mults) - 1)`` (28 -> 14 -> 7 for the
    default). ``attention_levels`` lists the levels (0 = full resolution) with attention;
    the middle block always has one."""

    def __init__(
        self,
        image_size: int = 28,
        image_channels: int = 3,
        cond_dim: int = 12,
        base_channels: int = 32,
        channel_mults: Sequence[int] = (1, 2, 2),
        blocks_per_level: int = 1,
        attention_levels: Sequence[int] = (2,),
        dropout: float = 0.1,
        patch_size: int = 1,
    ):
        super().__init__()
        if image_size % (patch_size * 2 ** (len(channel_mults) - 1)):
            raise ValueError(f"image_size {image_size} is not divisible by patch_size "
                             f"{patch_size} x 2^{len(channel_mults) - 1} (one halving per "
                             "extra level)")
        self.image_size = image_size
        self.image_channels = image_channels
        self.patch_size = patch_size
        self.cond_dim = cond_dim
        self.base_channels = base_channels
        emb_dim = 4 * base_channels
        self.time_mlp = nn.Sequential(
            nn.Linear(base_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)
        )
        self.cond_mlp = nn.Sequential(
            nn.Linear(cond_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)
        )
        self.stem = nn.Conv2d(image_channels * patch_size ** 2, base_channels, 3, padding=1)

        self.down = nn.ModuleList()
        skip_channels = [base_channels]
        channels = base_channels
        for level, mult in enumerate(channel_mults):
            for _ in range(blocks_per_level):
                out = base_channels * mult
                self.down.append(self._block(channels, out, emb_dim, dropout,
                                             level in attention_levels))
                channels = out
                skip_channels.append(channels)
            if level < len(channel_mults) - 1:
                self.down.append(nn.Conv2d(channels, channels, 3, stride=2, padding=1))
                skip_channels.append(channels)

        self.mid = nn.ModuleList([
            ResBlock(channels, channels, emb_dim, dropout),
            SelfAttention(channels),
            ResBlock(channels, channels, emb_dim, dropout),
        ])

        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mults))):
            for _ in range(blocks_per_level + 1):
                out = base_channels * mult
                self.up.append(self._block(channels + skip_channels.pop(), out, emb_dim, dropout,
                                           level in attention_levels))
                channels = out
            if level > 0:
                self.up.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                             nn.Conv2d(channels, channels, 3, padding=1)))
        self.head = nn.Sequential(_norm(channels), nn.SiLU(),
                                  nn.Conv2d(channels, image_channels * patch_size ** 2, 3,
                                            padding=1))

    @staticmethod
    def _block(in_ch: int, out_ch: int, emb_dim: int, dropout: float, attention: bool):
        layers = [ResBlock(in_ch, out_ch, emb_dim, dropout)]
        if attention:
            layers.append(SelfAttention(out_ch))
        return nn.ModuleList(layers)

    @staticmethod
    def _run(block, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        for layer in block:
            h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
        return h

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) noisy; t: (B,) timesteps; cond: (B, cond_dim). -> ε (B, C, H, W)."""
        emb = self.time_mlp(timestep_embedding(t, self.base_channels))
        emb = emb + self.cond_mlp(cond.to(emb.dtype))
        if self.patch_size > 1:
            x = F.pixel_unshuffle(x, self.patch_size)
        h = self.stem(x)
        skips = [h]
        for block in self.down:
            h = self._run(block, h, emb) if isinstance(block, nn.ModuleList) else block(h)
            skips.append(h)
        h = self._run(self.mid, h, emb)
        for block in self.up:
            if isinstance(block, nn.ModuleList):
                h = self._run(block, torch.cat([h, skips.pop()], dim=1), emb)
            else:
                h = block(h)
        out = self.head(h)
        return F.pixel_shuffle(out, self.patch_size) if self.patch_size > 1 else out


def build_model(config: Dict) -> ConditionalUNet:
    """Model from a config dict (the one stored in checkpoints); missing keys take defaults."""
    merged = dict(DEFAULT_CONFIG)
    merged.update(config)
    return ConditionalUNet(**merged)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
