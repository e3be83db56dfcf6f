"""Noise schedule, DDIM sampler and noise interpolation for the face DDPM.

Notation of Song et al., "Denoising Diffusion Implicit Models" (2021): alpha_bar_t is the
cumulative product of (1 - beta), x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps.
The schedule is data (`DDIMSchedule`); the sampler is a pure function of the noise model,
the starting noise and the schedule.
"""

import math
from typing import Callable, NamedTuple, Optional, Sequence

import torch

EpsModel = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x_t (B,C,H,W), t (B,)) -> eps
NoiseSampler = Callable[[], torch.Tensor]  # () -> fresh standard normal noise shaped like x


def linear_betas(
    num_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 2e-2
) -> torch.Tensor:
    """The template's `beta_scheduler`: betas linear in beta, float64, shape (num_steps,)."""
    return torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64)


def alphas_cumprod(betas: torch.Tensor) -> torch.Tensor:
    """alpha_bar_t = prod_{s <= t} (1 - beta_s), same shape and dtype as betas."""
    return torch.cumprod(1.0 - betas, dim=0)


class DDIMSchedule(NamedTuple):
    """The S steps of a DDIM run, in sampling order (from noisy to clean).

    timesteps: (S,) int64, the t passed to the model, decreasing.
    alpha_bars: (S,) float64, alpha_bar at each timestep.
    alpha_bars_prev: (S,) float64, alpha_bar at the timestep reached by each step.
    """

    timesteps: torch.Tensor
    alpha_bars: torch.Tensor
    alpha_bars_prev: torch.Tensor


def uniform_ddim_schedule(
    alpha_bars: torch.Tensor,
    num_steps: int = 50,
    offset: int = 1,
    final_alpha_bar: Optional[float] = None,
) -> DDIMSchedule:
    """Equally spaced timesteps `offset + k * (T // num_steps)`, k = 0..num_steps-1.

    The defaults are CompVis' `make_ddim_timesteps("uniform")`: t = 981, 961, ..., 1 for 50 of
    1000 steps, and the last step lands on alpha_bar[0] (`final_alpha_bar=None`), not on 1.
    This is the convention that reproduces the course's ground-truth faces.
    """
    total = len(alpha_bars)
    if not 1 <= num_steps <= total:
        raise ValueError(f"num_steps must be in 1..{total}, got {num_steps}")
    ascending = torch.arange(num_steps, dtype=torch.int64) * (total // num_steps) + offset
    if ascending[-1] >= total or ascending[0] < 0:
        raise ValueError(f"offset {offset} puts timesteps outside 0..{total - 1}")
    final = alpha_bars[:1] if final_alpha_bar is None else alpha_bars.new_tensor([final_alpha_bar])
    prev = torch.cat([final, alpha_bars[ascending[:-1]]])
    return DDIMSchedule(ascending.flip(0), alpha_bars[ascending].flip(0), prev.flip(0))


def ddim_sample(
    eps_model: EpsModel,
    x_T: torch.Tensor,
    schedule: DDIMSchedule,
    eta: float = 0.0,
    noise_sampler: Optional[NoiseSampler] = None,
) -> torch.Tensor:
    """Run the DDIM reverse process from x_T (B, C, H, W); returns x_0, same shape and dtype.

    eta = 0 is deterministic; eta = 1 has the DDPM posterior variance. For eta > 0 the fresh
    noise of each step comes from `noise_sampler` (default `torch.randn_like`).
    """
    x = x_T
    for t, a_t, a_prev in zip(*(column.tolist() for column in schedule)):  # a = alpha_bar
        eps = eps_model(x, torch.full((x.shape[0],), t, dtype=torch.int64, device=x.device))
        x0 = (x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)  # eq. (12), "predicted x_0"
        sigma = eta * math.sqrt((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev))  # eq. (16)
        x = math.sqrt(a_prev) * x0 + math.sqrt(1 - a_prev - sigma**2) * eps
        if sigma > 0:
            x = x + sigma * (noise_sampler() if noise_sampler else torch.randn_like(x))
    return x


def per_sample_noise(
    seeds: Sequence[int], shape: Sequence[int], device: torch.device
) -> NoiseSampler:
    """A noise sampler whose row i is drawn from its own CPU generator seeded with seeds[i].

    shape is one sample's shape (C, H, W). A sample's noise therefore depends on its seed only,
    not on the batch it is in or on the device.
    """
    generators = [torch.Generator().manual_seed(seed) for seed in seeds]

    def sample() -> torch.Tensor:
        return torch.stack([torch.randn(tuple(shape), generator=g) for g in generators]).to(device)

    return sample


def slerp(z0: torch.Tensor, z1: torch.Tensor, alpha: float) -> torch.Tensor:
    """Spherical interpolation between two noises of any (equal) shape; alpha in [0, 1]."""
    theta = torch.acos(torch.sum(z0 * z1) / (z0.norm() * z1.norm()))
    return (torch.sin((1 - alpha) * theta) * z0 + torch.sin(alpha * theta) * z1) / torch.sin(theta)


def lerp(z0: torch.Tensor, z1: torch.Tensor, alpha: float) -> torch.Tensor:
    """Linear interpolation (1 - alpha) z0 + alpha z1."""
    return (1 - alpha) * z0 + alpha * z1
