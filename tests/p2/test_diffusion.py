"""Schedule, DDIM and interpolation, checked against reference values and independent oracles."""

import math

import pytest
import torch

from p2.diffusion import (
    alphas_cumprod,
    ddim_sample,
    lerp,
    linear_betas,
    per_sample_noise,
    slerp,
    uniform_ddim_schedule,
)


def toy_eps_model(x, t):
    """A smooth, t-dependent stand-in for the UNet."""
    return torch.tanh(x) * 0.5 + 1e-3 * t.to(x.dtype)[:, None, None, None] * torch.sin(x)


def test_linear_betas_match_the_templates_reference_values():
    betas = linear_betas()
    assert betas.dtype == torch.float64 and betas.shape == (1000,)
    assert betas[0] == 1e-4 and betas[-1] == 2e-2
    assert abs(betas[1].item() - 0.00011991991991991993) < 1e-17
    assert abs(betas[500].item() - 0.01005995995995996) < 1e-17
    assert abs(alphas_cumprod(betas)[-1].item() - 4.0358297653757e-05) < 1e-15


def test_uniform_schedule_is_the_compvis_convention():
    alpha_bars = alphas_cumprod(linear_betas())
    schedule = uniform_ddim_schedule(alpha_bars, 50)
    assert schedule.timesteps.tolist() == list(range(981, 0, -20))
    assert torch.equal(schedule.alpha_bars, alpha_bars[schedule.timesteps])
    assert torch.equal(schedule.alpha_bars_prev[:-1], alpha_bars[schedule.timesteps[1:]])
    assert schedule.alpha_bars_prev[-1] == alpha_bars[0]  # not 1


@pytest.mark.parametrize("steps, offset", [(0, 1), (1001, 1), (1000, 1)])
def test_uniform_schedule_rejects_impossible_settings(steps, offset):
    with pytest.raises(ValueError):
        uniform_ddim_schedule(alphas_cumprod(linear_betas()), steps, offset)


def diffusers_ddim(x, steps, eta, noises):
    """The same run through diffusers' DDIMScheduler, configured to the course convention."""
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler(
        num_train_timesteps=1000,
        trained_betas=linear_betas().numpy(),
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        timestep_spacing="leading",
    )
    scheduler.set_timesteps(steps)
    seen = []
    for i, t in enumerate(scheduler.timesteps):
        seen.append(int(t))
        eps = toy_eps_model(x, torch.full((len(x),), int(t)))
        noise = noises[i] if eta > 0 else None
        x = scheduler.step(eps, t, x, eta=eta, variance_noise=noise).prev_sample
    return x, seen


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_ddim_matches_the_diffusers_oracle(eta):
    steps = 50
    x_T = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    noises = torch.randn(steps, 2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    schedule = uniform_ddim_schedule(alphas_cumprod(linear_betas()), steps)
    fresh = iter(noises)
    ours = ddim_sample(toy_eps_model, x_T, schedule, eta, noise_sampler=lambda: next(fresh))
    theirs, timesteps = diffusers_ddim(x_T, steps, eta, noises)
    assert timesteps == schedule.timesteps.tolist()
    assert torch.allclose(ours, theirs, atol=1e-4, rtol=1e-4)  # diffusers runs in float32


def test_ddim_with_eta_one_at_every_step_is_ancestral_ddpm():
    """DDIM over all T steps with eta = 1 and final alpha_bar 1 is the DDPM sampler with the
    posterior variance beta~_t (Ho et al. 2020, eq. 7 and Algorithm 2), given the same noise."""
    T = 20
    betas = torch.linspace(1e-3, 0.2, T, dtype=torch.float64)
    alpha_bars = alphas_cumprod(betas)
    x_T = torch.randn(2, 3, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    noises = torch.randn(
        T, 2, 3, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1)
    )

    x = x_T
    for step, t in enumerate(reversed(range(T))):
        eps = toy_eps_model(x, torch.full((2,), t))
        alpha, alpha_bar = 1 - betas[t].item(), alpha_bars[t].item()
        alpha_bar_prev = alpha_bars[t - 1].item() if t > 0 else 1.0
        mean = (x - (1 - alpha) / math.sqrt(1 - alpha_bar) * eps) / math.sqrt(alpha)
        variance = (1 - alpha_bar_prev) / (1 - alpha_bar) * (1 - alpha)
        x = mean + math.sqrt(variance) * noises[step] if t > 0 else mean
    fresh = iter(noises)
    schedule = uniform_ddim_schedule(alpha_bars, T, offset=0, final_alpha_bar=1.0)
    ours = ddim_sample(toy_eps_model, x_T, schedule, eta=1.0, noise_sampler=lambda: next(fresh))
    assert torch.allclose(ours, x, atol=1e-12)


def test_eta_zero_is_deterministic_and_draws_no_noise():
    x_T = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    schedule = uniform_ddim_schedule(alphas_cumprod(linear_betas()), 10)

    def forbidden():
        raise AssertionError("eta = 0 must not draw noise")

    first = ddim_sample(toy_eps_model, x_T, schedule, 0.0, forbidden)
    assert torch.equal(first, ddim_sample(toy_eps_model, x_T.clone(), schedule, 0.0, forbidden))


def test_per_sample_noise_does_not_depend_on_the_batch():
    together = per_sample_noise([7, 8, 9], (3, 4, 4), torch.device("cpu"))
    alone = per_sample_noise([8], (3, 4, 4), torch.device("cpu"))
    for _ in range(3):
        assert torch.equal(together()[1], alone()[0])


def test_slerp_and_lerp_endpoints_and_norm():
    g = torch.Generator().manual_seed(0)
    z0, z1 = torch.randn(1, 3, 16, 16, generator=g), torch.randn(1, 3, 16, 16, generator=g)
    for interpolate in (slerp, lerp):
        assert torch.allclose(interpolate(z0, z1, 0.0), z0, atol=1e-5)
        assert torch.allclose(interpolate(z0, z1, 1.0), z1, atol=1e-5)
    # slerp keeps the norm of (nearly orthogonal) Gaussian noises; lerp shrinks it midway
    assert abs(slerp(z0, z1, 0.5).norm() / z0.norm() - 1) < 0.05
    assert lerp(z0, z1, 0.5).norm() / z0.norm() < 0.8
