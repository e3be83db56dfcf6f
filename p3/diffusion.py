"""SD v1 noise schedule (as data), classifier-free guidance and two samplers.

Samplers are pure functions of (eps_fn, x_T, alphas_cumprod, steps): `eps_fn(x, t)` is the
noise predictor for the whole batch, already guided (see `classifier_free_guidance`).
"""
import math

import numpy as np
import torch

LATENT_SCALE = 0.18215
N_TRAIN_STEPS = 1000


def scaled_linear_alphas_cumprod(beta_start=0.00085, beta_end=0.012, n=N_TRAIN_STEPS):
    """ᾱ_0..ᾱ_{n-1} (float64 tensor) of LDM's "linear" schedule, linear in √β (sd_v1.md §3).

    Computed in float64 and rounded to float32, exactly the checkpoint buffer the CompVis
    samplers read.
    """
    betas = np.linspace(beta_start**0.5, beta_end**0.5, n, dtype=np.float64) ** 2
    alphas_cumprod = np.cumprod(1.0 - betas).astype(np.float32)
    return torch.from_numpy(alphas_cumprod).double()


def classifier_free_guidance(unet, cond, uncond, scale):
    """eps_fn(x, t) = ε_u + scale·(ε_c − ε_u), both from one UNet call on a 2B batch.

    cond, uncond: (B, M, D) contexts; the unconditional half goes first (sd_v1.md §7.2).
    """
    context = torch.cat([uncond, cond])

    def eps_fn(x, t):
        eps_u, eps_c = unet(torch.cat([x, x]), torch.cat([t, t]), context).chunk(2)
        return eps_u + scale * (eps_c - eps_u)

    return eps_fn


def ddim_timesteps(steps, n=N_TRAIN_STEPS):
    """CompVis "uniform" DDIM timesteps, ascending: range(0, n, n // S) + 1 (1, 21, …, 981 for
    S = 50). When n % S != 0 this gives a few more than S entries, as in CompVis."""
    return [t + 1 for t in range(0, n, n // steps)]


@torch.no_grad()
def sample_ddim(eps_fn, x, alphas_cumprod, steps):
    """Deterministic DDIM (η = 0), CompVis convention: integer t, last ᾱ_prev = ᾱ_0.

    x: x_T (B, C, H, W) -> x_0 latent of the same shape.
    """
    ts = ddim_timesteps(steps)
    a = alphas_cumprod.to(x.device)
    for i in reversed(range(len(ts))):
        a_t = a[ts[i]]
        a_prev = a[ts[i - 1]] if i > 0 else a[0]
        t = torch.full((x.shape[0],), ts[i], device=x.device, dtype=torch.long)
        eps = eps_fn(x, t)
        x0 = (x - (1 - a_t).sqrt() * eps) / a_t.sqrt()
        x = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
    return x


class DiscreteVPSchedule:
    """Continuous-time view of a discrete ᾱ table (DPM-Solver's `NoiseScheduleVP('discrete')`).

    Grid point i (0…N−1) sits at t = (i+1)/N; log α(t) = ½ log ᾱ interpolated piecewise-linearly.
    """

    def __init__(self, alphas_cumprod):
        self.n = len(alphas_cumprod)
        self.t_grid = torch.linspace(0.0, 1.0, self.n + 1, dtype=torch.float64)[1:]
        self.log_alpha_grid = 0.5 * torch.log(alphas_cumprod.double())

    def log_alpha(self, t: float) -> float:
        i = min(max(int(np.searchsorted(self.t_grid.numpy(), t)) - 1, 0), self.n - 2)
        t0, t1 = self.t_grid[i].item(), self.t_grid[i + 1].item()
        y0, y1 = self.log_alpha_grid[i].item(), self.log_alpha_grid[i + 1].item()
        return y0 + (t - t0) * (y1 - y0) / (t1 - t0)

    def alpha_sigma_lambda(self, t: float):
        log_alpha = self.log_alpha(t)
        sigma = math.sqrt(1.0 - math.exp(2.0 * log_alpha))
        return math.exp(log_alpha), sigma, log_alpha - math.log(sigma)

    def model_time(self, t: float) -> float:
        """The (fractional) timestep the UNet receives: N·(t − 1/N)."""
        return (t - 1.0 / self.n) * self.n


@torch.no_grad()
def sample_dpmpp_2m(eps_fn, x, alphas_cumprod, steps):
    """DPM-Solver++(2M): multistep, order 2, data prediction, time-uniform steps, as the
    course template calls it (sd_v1.md §7.3; Lu et al. 2022, arXiv 2211.01095, Alg. 2).

    Exactly `steps` UNet calls; the first step, and the last when steps < 15, are first order.
    x: x_T (B, C, H, W) -> x_0 latent.
    """
    schedule = DiscreteVPSchedule(alphas_cumprod)
    times = torch.linspace(1.0, 1.0 / schedule.n, steps + 1, dtype=torch.float64).tolist()

    def data_prediction(x, t):
        alpha, sigma, _ = schedule.alpha_sigma_lambda(t)
        t_in = torch.full((x.shape[0],), schedule.model_time(t), device=x.device,
                          dtype=torch.float64)
        return (x - sigma * eps_fn(x, t_in)) / alpha

    x0_prev = data_prediction(x, times[0])
    x0_prev2, lambda_prev2 = None, None
    for k in range(1, steps + 1):
        _, sigma_s, lambda_s = schedule.alpha_sigma_lambda(times[k - 1])
        alpha_t, sigma_t, lambda_t = schedule.alpha_sigma_lambda(times[k])
        h = lambda_t - lambda_s
        phi = math.expm1(-h)
        x_next = (sigma_t / sigma_s) * x - alpha_t * phi * x0_prev
        second_order = x0_prev2 is not None and not (steps < 15 and k == steps)
        if second_order:
            r = (lambda_s - lambda_prev2) / h
            x_next = x_next - 0.5 * alpha_t * phi * (x0_prev - x0_prev2) / r
        x = x_next
        if k < steps:
            x0_prev2, lambda_prev2 = x0_prev, lambda_s
            x0_prev = data_prediction(x, times[k])
    return x
