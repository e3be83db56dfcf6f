"""A conditional GAN on iCLEVR, for the DDPM-vs-GAN comparison of Lab 6.

Projection discriminator with hinge loss and spectral normalisation (Miyato & Koyama 2018,
"cGANs with Projection Discriminator"), extended to label *sets*: the projection term is
y·(E φ(x)) with y the multi-hot vector, i.e. the sum of the per-object projections. An
auxiliary multi-label head on the same features (as in AC-GAN, Odena et al. 2017) is trained
on real images and its loss is added to the generator's, which ties colours to shapes more
directly than the projection alone.

The generator works at 32×32 (the lab's evaluator was trained on 64×64 upsampled from 32×32)
and its images are upsampled to 64×64 for the lab's outputs. Its BatchNorms are conditional:
the gain and bias of every layer are linear in y (de Vries et al. 2017).
"""
import os
from typing import Dict, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm

from p1.errors import UserError

KIND = "iclevr-gan"
GENERATOR_DEFAULTS = {"z_dim": 128, "cond_dim": 24, "channels": 128, "image_size": 32}
DISCRIMINATOR_DEFAULTS = {"cond_dim": 24, "channels": 16}
OUTPUT_SIZE = 64


class ConditionalBatchNorm(nn.Module):
    """BatchNorm without affine, then gain 1 + W_g y and bias W_b y from the multi-hot y."""

    def __init__(self, channels: int, cond_dim: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(channels, affine=False)
        self.gain = nn.Linear(cond_dim, channels, bias=False)
        self.bias = nn.Linear(cond_dim, channels, bias=False)
        nn.init.zeros_(self.gain.weight)
        nn.init.zeros_(self.bias.weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        gain = 1 + self.gain(y)[:, :, None, None]
        return self.norm(x) * gain + self.bias(y)[:, :, None, None]


class UpBlock(nn.Module):
    """(B, C_in, H, W) -> (B, C_out, 2H, 2W): nearest ×2, 3×3 conv, conditional BN, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, cond_dim: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm = ConditionalBatchNorm(out_channels, cond_dim)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x = self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))
        return F.relu(self.norm(x, y))


class Generator(nn.Module):
    """(z (B, z_dim), y (B, cond_dim)) -> images (B, 3, image_size, image_size) in [-1, 1].

    z and an embedding of y make a 4×4 map of ``channels`` channels, which up-blocks double in
    size and halve in channels until ``image_size``."""

    def __init__(self, z_dim: int = 128, cond_dim: int = 24, channels: int = 128,
                 image_size: int = 32):
        super().__init__()
        levels = {16: 2, 32: 3, 64: 4}.get(image_size)
        if levels is None or channels % (2 ** levels):
            raise ValueError(f"image_size {image_size} must be 16, 32 or 64 and channels "
                             f"{channels} divisible by {2 ** levels if levels else 'it'}")
        self.z_dim, self.cond_dim, self.image_size = z_dim, cond_dim, image_size
        self.embed = nn.Linear(cond_dim, z_dim, bias=False)
        self.stem = nn.Linear(2 * z_dim, 4 * 4 * channels)
        self.stem_norm = ConditionalBatchNorm(channels, cond_dim)
        widths = [channels // 2 ** level for level in range(levels + 1)]
        self.blocks = nn.ModuleList(UpBlock(a, b, cond_dim) for a, b in zip(widths, widths[1:]))
        self.to_rgb = nn.Conv2d(widths[-1], 3, 3, padding=1)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.stem(torch.cat([z, self.embed(y)], dim=1)).view(len(z), -1, 4, 4)
        h = F.relu(self.stem_norm(h, y))
        for block in self.blocks:
            h = block(h, y)
        return torch.tanh(self.to_rgb(h))


class Discriminator(nn.Module):
    """(images (B, 3, S, S), y (B, cond_dim)) -> (score (B,), object logits (B, cond_dim)).

    Spectrally normalised convolutions halve the size to 4×4; the features φ(x) are summed over
    space; score = w·φ(x) + y·(E φ(x)) (the projection), logits = A φ(x) (the auxiliary head)."""

    def __init__(self, cond_dim: int = 24, channels: int = 16):
        super().__init__()
        widths = [channels, 2 * channels, 4 * channels, 8 * channels]
        layers = [spectral_norm(nn.Conv2d(3, widths[0], 3, padding=1)), nn.LeakyReLU(0.1)]
        for a, b in zip(widths, widths[1:]):
            layers += [spectral_norm(nn.Conv2d(a, b, 4, stride=2, padding=1)), nn.LeakyReLU(0.1),
                       spectral_norm(nn.Conv2d(b, b, 3, padding=1)), nn.LeakyReLU(0.1)]
        self.features = nn.Sequential(*layers)
        self.score = spectral_norm(nn.Linear(widths[-1], 1))
        self.projection = spectral_norm(nn.Embedding(cond_dim, widths[-1]))
        self.classifier = nn.Linear(widths[-1], cond_dim)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        phi = self.features(x).sum(dim=(2, 3))
        projected = (y @ self.projection.weight * phi).sum(dim=1)
        return self.score(phi).squeeze(1) + projected, self.classifier(phi)


def discriminator_loss(discriminator: Discriminator, real: torch.Tensor, y_real: torch.Tensor,
                       fake: torch.Tensor, y_fake: torch.Tensor,
                       aux_weight: float) -> Dict[str, torch.Tensor]:
    """Hinge loss on real and fake images, each scored with its own labels (``fake`` detached
    by the caller), plus ``aux_weight`` × the auxiliary head's BCE on the real images."""
    real_score, real_logits = discriminator(real, y_real)
    fake_score, _ = discriminator(fake, y_fake)
    adversarial = F.relu(1 - real_score).mean() + F.relu(1 + fake_score).mean()
    auxiliary = F.binary_cross_entropy_with_logits(real_logits, y_real)
    return {"total": adversarial + aux_weight * auxiliary, "adversarial": adversarial,
            "auxiliary": auxiliary}


def generator_loss(discriminator: Discriminator, fake: torch.Tensor, y: torch.Tensor,
                   aux_weight: float) -> Dict[str, torch.Tensor]:
    """−D(G(z, y), y) plus ``aux_weight`` × the auxiliary BCE of the fakes against y."""
    score, logits = discriminator(fake, y)
    adversarial = -score.mean()
    auxiliary = F.binary_cross_entropy_with_logits(logits, y)
    return {"total": adversarial + aux_weight * auxiliary, "adversarial": adversarial,
            "auxiliary": auxiliary}


def teacher_loss(teacher: nn.Module, fake: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """BCE of a frozen classifier's object logits on the fakes (B, 3, S, S), upsampled to the
    lab's 64×64 as the outputs are, against y (B, cond_dim). The teacher is a noise-aware
    guide classifier (``p1.iclevr.guide_classifier``), read at t = 0."""
    if fake.shape[-1] != OUTPUT_SIZE:
        fake = F.interpolate(fake, size=OUTPUT_SIZE, mode="bilinear", align_corners=False)
    logits = teacher(fake, torch.zeros(len(fake), dtype=torch.long, device=fake.device))
    return F.binary_cross_entropy_with_logits(logits.float(), y)


def latent(seeds: Sequence[int], z_dim: int) -> torch.Tensor:
    """(len(seeds), z_dim): one standard normal vector per seed, so an image depends on its
    own seed only."""
    return torch.stack([torch.randn(z_dim, generator=torch.Generator().manual_seed(seed))
                        for seed in seeds])


@torch.no_grad()
def generate(generator: Generator, cond: torch.Tensor, seeds: Sequence[int],
             batch_size: int = 64) -> torch.Tensor:
    """uint8 (N, 3, 64, 64): the generator (in eval mode) at cond (N, cond_dim), one seed per
    image, upsampled bilinearly to the lab's 64×64."""
    device = next(generator.parameters()).device
    z = latent(seeds, generator.z_dim)
    images = []
    for start in range(0, len(z), batch_size):
        x = generator(z[start:start + batch_size].to(device),
                      cond[start:start + batch_size].to(device).float())
        if x.shape[-1] != OUTPUT_SIZE:
            x = F.interpolate(x, size=OUTPUT_SIZE, mode="bilinear", align_corners=False)
        images.append(((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu())
    return torch.cat(images)


@torch.no_grad()
def standing_statistics(generator: Generator, conds: torch.Tensor, batches: int,
                        batch_size: int, seed: int) -> None:
    """Set the BatchNorm running statistics to their average over ``batches`` generated batches
    (BigGAN's "standing statistics"), so that eval mode, in which every image depends only on
    its own z and y, matches what training saw. ``conds`` (N, cond_dim) are drawn from."""
    norms = [m for m in generator.modules() if isinstance(m, nn.BatchNorm2d)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    generator.train()
    device = next(generator.parameters()).device
    rng = torch.Generator().manual_seed(seed)
    for _ in range(batches):
        index = torch.randint(len(conds), (batch_size,), generator=rng)
        z = torch.randn((batch_size, generator.z_dim), generator=rng)
        generator(z.to(device), conds[index].to(device))
    for norm in norms:
        norm.momentum = 0.1
    generator.eval()


def export_state(generator: Generator, config: dict, step: int) -> dict:
    """What ``python3 -m p1.iclevr --model gan`` loads."""
    return {"kind": KIND, "generator_config": config, "generator": generator.state_dict(),
            "step": step}


def checkpoint_kind(checkpoint) -> str:
    """"gan" for a file of this module, "ddpm" for a p1 DDPM checkpoint, else "unknown"."""
    if isinstance(checkpoint, dict) and checkpoint.get("kind") == KIND:
        return "gan"
    if isinstance(checkpoint, dict) and "model_config" in checkpoint:
        return "ddpm"
    return "unknown"


def load_generator(path: str, device: torch.device, how_to_get: str) -> Tuple[Generator, dict]:
    """(generator in eval mode on device, checkpoint dict) from an exported GAN file (or a
    training checkpoint of ``p1.iclevr.train_gan``); UserError for anything else."""
    if not os.path.isfile(path):
        raise UserError(f"no checkpoint at {path}; {how_to_get}")
    try:
        checkpoint = torch.load(path, map_location="cpu")
    except Exception as err:  # torch raises many types for a corrupt file
        raise UserError(f"cannot read checkpoint {path}: {err}") from None
    kind = checkpoint_kind(checkpoint)
    if kind == "ddpm":
        raise UserError(f"{path} is a DDPM checkpoint: use --model ddpm")
    if kind != "gan":
        raise UserError(f"{path} is not an iCLEVR GAN checkpoint (python3 -m p1.iclevr.train_gan)")
    weights = checkpoint.get("generator_ema", checkpoint["generator"])
    try:
        generator = Generator(**checkpoint["generator_config"])
        generator.load_state_dict(weights)
    except (KeyError, RuntimeError, TypeError, ValueError) as err:
        first_line = str(err).strip().splitlines()[0]
        raise UserError(f"checkpoint {path} does not match the GAN: {first_line}") from None
    return generator.to(device).eval(), checkpoint
