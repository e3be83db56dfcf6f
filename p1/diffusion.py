"""DDPM written from scratch: the noise schedule as data, the training loss, and samplers.

Notation (Ho et al. 2020, "DDPM"): timesteps are 0-based indices t = 0..T-1 (index t is the
paper's t+1), ᾱ_t = prod_{s<=t} (1 - β_s), x_t = sqrt(ᾱ_t) x_0 + sqrt(1 - ᾱ_t) ε.

Samplers are pure functions of ``(eps_fn, x_T, schedule, timesteps, ...)`` where
``eps_fn(x, t) -> ε`` is any noise predictor, usually ``guided(model, cond, null, scale)``.
They know nothing of conditions or guidance. Random draws come from one CPU
``torch.Generator`` per sample, so an image depends on its own seed only, not on the batch.
"""
from typing import Callable, List, Optional, Sequence

import torch

EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
StepCallback = Callable[[int, torch.Tensor], None]


class Schedule:
    """Float64 tables of a discrete noise schedule. betas: (T,)."""

    def __init__(self, betas: torch.Tensor):
        self.betas = betas.double()
        self.alphas_cumprod = torch.cumprod(1.0 - self.betas, dim=0)

    @property
    def num_timesteps(self) -> int:
        return self.betas.shape[0]

    def alpha_bar(self, t: int) -> float:
        """ᾱ_t as a float; t = -1 is the clean image (ᾱ = 1)."""
        return 1.0 if t < 0 else float(self.alphas_cumprod[t])


def linear_schedule(num_timesteps: int = 1000, beta_start: float = 1e-4,
                    beta_end: float = 0.02) -> Schedule:
    """The DDPM paper's linear β schedule (also the homework's ``beta_scheduler``)."""
    return Schedule(torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float64))


def cosine_schedule(num_timesteps: int = 1000, offset: float = 0.008,
                    max_beta: float = 0.999) -> Schedule:
    """The cosine schedule of Nichol & Dhariwal (2021, eq. 17): ᾱ(τ) = f(τ) / f(0) with
    f(τ) = cos²((τ + s) / (1 + s) · π/2), τ = t/T, and β_t = 1 − ᾱ_t / ᾱ_{t−1} clipped."""
    tau = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
    f = torch.cos((tau + offset) / (1 + offset) * torch.pi / 2) ** 2
    return Schedule((1 - f[1:] / f[:-1]).clamp(max=max_beta))


def make_schedule(config: dict) -> Schedule:
    """Schedule from its config dict, e.g. ``{"kind": "linear", "num_timesteps": 1000}``
    or ``{"kind": "cosine", "num_timesteps": 1000}``."""
    kind = config.get("kind", "linear")
    if kind == "linear":
        return linear_schedule(config.get("num_timesteps", 1000),
                               config.get("beta_start", 1e-4), config.get("beta_end", 0.02))
    if kind == "cosine":
        return cosine_schedule(config.get("num_timesteps", 1000))
    raise ValueError(f"unknown schedule kind {kind!r}")


def _gather(table: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """table[t] shaped (B, 1, 1, 1) in like's dtype and device."""
    return table.to(like.device)[t].to(like.dtype).reshape(-1, *([1] * (like.dim() - 1)))


def q_sample(schedule: Schedule, x0: torch.Tensor, t: torch.Tensor,
             noise: torch.Tensor) -> torch.Tensor:
    """Forward process q(x_t | x_0) (DDPM eq. 4). x0, noise: (B, C, H, W); t: (B,)."""
    a = _gather(schedule.alphas_cumprod, t, x0)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def drop_condition(cond: torch.Tensor, drop_prob: float,
                   generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Classifier-free guidance training: replace each row of cond (B, D) by the all-zeros
    "no condition" vector with probability drop_prob (Ho & Salimans 2022, Alg. 1)."""
    keep = torch.rand(cond.shape[0], generator=generator) >= drop_prob
    return cond * keep.to(cond.device, cond.dtype)[:, None]


def training_loss(model, schedule: Schedule, x0: torch.Tensor, cond: torch.Tensor,
                  generator: Optional[torch.Generator] = None,
                  min_snr_gamma: float = 0.0) -> torch.Tensor:
    """Simple DDPM loss ||ε - ε_θ(x_t, t, c)||² (DDPM eq. 14), t uniform.
    x0: (B, C, H, W) in [-1, 1]; cond: (B, D). Draws t and ε from ``generator`` on CPU.

    ``min_snr_gamma`` γ > 0 weights each sample by min(SNR_t, γ) / SNR_t, SNR_t = ᾱ_t/(1 − ᾱ_t)
    (Min-SNR-γ, Hang et al. 2023, for ε-prediction): the nearly clean timesteps, whose large
    but easy ε errors dominate the plain loss, stop crowding out the noisy ones that decide
    the layout and the condition."""
    t = torch.randint(0, schedule.num_timesteps, (x0.shape[0],), generator=generator)
    noise = torch.randn(x0.shape, generator=generator).to(x0.device, x0.dtype)
    t = t.to(x0.device)
    predicted = model(q_sample(schedule, x0, t, noise), t, cond)
    per_sample = ((predicted.float() - noise.float()) ** 2).flatten(1).mean(1)
    if min_snr_gamma > 0:
        snr = _gather(schedule.alphas_cumprod / (1 - schedule.alphas_cumprod), t,
                      per_sample).flatten()
        per_sample = per_sample * snr.clamp(max=min_snr_gamma) / snr
    return per_sample.mean()


def guided(model, cond: torch.Tensor, null_cond: torch.Tensor, scale: float) -> EpsFn:
    """Classifier-free guidance: ε = ε(x, ∅) + scale · (ε(x, c) − ε(x, ∅)).
    scale 1 is the plain conditional model, 0 the unconditional one (the CFG paper's w is
    scale − 1). cond: (B, D); null_cond: (D,) or (B, D). Both halves in one 2B batch."""
    if scale == 1.0:
        return lambda x, t: model(x, t, cond)
    null = null_cond.expand_as(cond)
    both_cond = torch.cat([cond, null])

    def eps_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        eps_c, eps_u = model(torch.cat([x, x]), torch.cat([t, t]), both_cond).chunk(2)
        return eps_u + scale * (eps_c - eps_u)

    return eps_fn


def classifier_guided(eps_fn: EpsFn, schedule: Schedule,
                      grad_log_prob: Callable[[torch.Tensor], torch.Tensor],
                      scale: float) -> EpsFn:
    """Classifier guidance (Dhariwal & Nichol 2021, Alg. 2): ε̂ = ε − s · sqrt(1 − ᾱ_t) · g.

    The classifier was trained on clean images, so it judges the clean-image estimate
    x̂0 = (x_t − sqrt(1 − ᾱ_t) ε) / sqrt(ᾱ_t) and g = ∇_{x̂0} log p(y | x̂0) from
    ``grad_log_prob(x̂0)`` (B, C, H, W) -> (B, C, H, W). (The exact ∇_{x_t} would carry a
    further 1/sqrt(ᾱ_t), which explodes at the noisy end; it is left out, as in universal
    guidance, Bansal et al. 2023.) Composes with any ``eps_fn``, e.g. a ``guided`` one."""
    def eps_guided(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        eps = eps_fn(x, t)
        a = _gather(schedule.alphas_cumprod, t, x)
        x0 = ((x - (1 - a).sqrt() * eps) / a.sqrt()).clamp(-1, 1)
        return eps - scale * (1 - a).sqrt() * grad_log_prob(x0).to(eps.dtype)

    return eps_guided


def fixed_shape(model_fn: Callable, chunk: int) -> Callable:
    """Run ``model_fn(x, t, cond)`` on chunks of exactly ``chunk`` rows (the last one padded
    with copies of row 0). Kernels then see one shape only, so a row's result does not depend
    on how many rows came with it: this is what makes images independent of the batch size
    bit for bit (batched convolutions and GEMMs round differently for other batch sizes)."""
    def run(x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        rows = x.shape[0]
        pad = (-rows) % chunk
        if pad:
            x = torch.cat([x, x[:1].expand(pad, *x.shape[1:])])
            t = torch.cat([t, t[:1].expand(pad)])
            cond = torch.cat([cond, cond[:1].expand(pad, *cond.shape[1:])])
        outputs = [model_fn(x[i:i + chunk], t[i:i + chunk], cond[i:i + chunk])
                   for i in range(0, x.shape[0], chunk)]
        return torch.cat(outputs)[:rows]

    return run


def noisy_classifier_guided(eps_fn: EpsFn, schedule: Schedule,
                            grad_log_prob: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                            scale: float) -> EpsFn:
    """Classifier guidance with a classifier trained on noisy images (Dhariwal & Nichol 2021,
    Alg. 2): ε̂ = ε − s · sqrt(1 − ᾱ_t) · ∇_{x_t} log p_φ(y | x_t, t), the gradient from
    ``grad_log_prob(x_t, t)`` (B, C, H, W). Composes with any ``eps_fn``."""
    def eps_guided(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        eps = eps_fn(x, t)
        a = _gather(schedule.alphas_cumprod, t, x)
        return eps - scale * (1 - a).sqrt() * grad_log_prob(x, t).to(eps.dtype)

    return eps_guided


def spaced_timesteps(num_timesteps: int, steps: int) -> List[int]:
    """``steps`` timesteps evenly spread over [0, T-1], descending, first T-1, last 0."""
    if not 1 <= steps <= num_timesteps:
        raise ValueError(f"steps must be in 1..{num_timesteps}, got {steps}")
    if steps == 1:
        return [num_timesteps - 1]
    points = torch.linspace(num_timesteps - 1, 0, steps, dtype=torch.float64).round().long()
    return [int(v) for v in points]


def logsnr_timesteps(schedule: Schedule, steps: int) -> List[int]:
    """``steps`` distinct timesteps, descending from T-1 to 0, whose log-SNR
    λ_t = log(ᾱ_t / (1 − ᾱ_t)) / 2 is as evenly spaced as possible (DPM-Solver's
    recommendation for low-resolution images; it takes small steps near the data)."""
    count = schedule.num_timesteps
    if not 1 <= steps <= count:
        raise ValueError(f"steps must be in 1..{count}, got {steps}")
    lam = 0.5 * torch.log(schedule.alphas_cumprod / (1 - schedule.alphas_cumprod))
    targets = torch.linspace(float(lam[-1]), float(lam[0]), steps, dtype=torch.float64)
    chosen = [int((lam - target).abs().argmin()) for target in targets]
    for i in range(1, steps):  # keep them strictly decreasing, and room for the rest above 0
        chosen[i] = min(chosen[i], chosen[i - 1] - 1)
    for i in reversed(range(steps)):
        chosen[i] = max(chosen[i], steps - 1 - i)
    return chosen


def initial_noise(generators: Sequence[torch.Generator], shape: Sequence[int]) -> torch.Tensor:
    """x_T: one standard normal draw of ``shape`` (C, H, W) per generator -> (B, C, H, W)."""
    return torch.stack([torch.randn(tuple(shape), generator=g) for g in generators])


def _predict_x0(eps: torch.Tensor, x: torch.Tensor, alpha_bar: float, clip: bool) -> torch.Tensor:
    x0 = (x - (1 - alpha_bar) ** 0.5 * eps) / alpha_bar ** 0.5
    return x0.clamp(-1, 1) if clip else x0


def ddim_sample(eps_fn: EpsFn, x: torch.Tensor, schedule: Schedule, timesteps: Sequence[int],
                eta: float = 0.0, generators: Optional[Sequence[torch.Generator]] = None,
                clip_x0: bool = True, callback: Optional[StepCallback] = None) -> torch.Tensor:
    """DDIM (Song et al. 2021, eq. 12) from x = x_{timesteps[0]} down to the clean image.

    x: (B, C, H, W); timesteps descending. Each step goes from t to the next timestep
    (-1 = clean after the last). eta = 0 is deterministic; eta = 1 with every timestep is
    ancestral DDPM with the posterior variance β̃_t. ``generators`` (one per sample) are needed
    when eta > 0. ``callback(t_next, x)`` sees the state after each step.
    """
    schedule_steps = list(timesteps) + [-1]
    for t, t_next in zip(schedule_steps[:-1], schedule_steps[1:]):
        a_t, a_next = schedule.alpha_bar(t), schedule.alpha_bar(t_next)
        t_batch = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
        eps = eps_fn(x, t_batch).to(x.dtype)
        x0 = _predict_x0(eps, x, a_t, clip_x0)
        if clip_x0:
            eps = (x - a_t ** 0.5 * x0) / (1 - a_t) ** 0.5
        sigma = eta * ((1 - a_next) / (1 - a_t) * (1 - a_t / a_next)) ** 0.5
        x = a_next ** 0.5 * x0 + max(1 - a_next - sigma ** 2, 0.0) ** 0.5 * eps
        if sigma > 0:
            if generators is None:
                raise ValueError("eta > 0 needs one generator per sample")
            x = x + sigma * initial_noise(generators, x.shape[1:]).to(x.device, x.dtype)
        if callback is not None:
            callback(t_next, x)
    return x


def ddpm_sample(eps_fn: EpsFn, x: torch.Tensor, schedule: Schedule,
                generators: Sequence[torch.Generator], clip_x0: bool = True,
                callback: Optional[StepCallback] = None) -> torch.Tensor:
    """Ancestral DDPM sampling (DDPM Alg. 2, variance β̃_t) through all T timesteps."""
    timesteps = list(range(schedule.num_timesteps - 1, -1, -1))
    return ddim_sample(eps_fn, x, schedule, timesteps, eta=1.0, generators=generators,
                       clip_x0=clip_x0, callback=callback)


def dpm_solver_pp_sample(eps_fn: EpsFn, x: torch.Tensor, schedule: Schedule,
                         timesteps: Sequence[int], clip_x0: bool = True,
                         callback: Optional[StepCallback] = None) -> torch.Tensor:
    """Multistep DPM-Solver++(2M) in data prediction (Lu et al. 2022, arXiv 2211.01095,
    Alg. 2), first order at the first step and at the final step to the clean image.

    With α_t = sqrt(ᾱ_t), σ_t = sqrt(1 − ᾱ_t), λ_t = log(α_t / σ_t), h = λ_next − λ_t:
    x_next = (σ_next/σ_t) x − α_next (e^{−h} − 1) D, D = x̂0 (order 1) or
    D = (1 + 1/(2r)) x̂0_t − 1/(2r) x̂0_prev with r = h_prev / h (order 2).
    x: (B, C, H, W) = x_{timesteps[0]}; deterministic.
    """
    steps = list(timesteps)
    previous_x0 = None
    previous_h = None
    for i, t in enumerate(steps):
        a_t = schedule.alpha_bar(t)
        t_batch = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
        x0 = _predict_x0(eps_fn(x, t_batch).to(x.dtype), x, a_t, clip_x0)
        if i == len(steps) - 1:
            x = x0  # σ_next = 0: the update reduces to the data prediction
            previous_h = None
        else:
            a_next = schedule.alpha_bar(steps[i + 1])
            lam_t = 0.5 * torch.log(torch.tensor(a_t / (1 - a_t), dtype=torch.float64))
            lam_next = 0.5 * torch.log(torch.tensor(a_next / (1 - a_next), dtype=torch.float64))
            h = float(lam_next - lam_t)
            if previous_x0 is None:
                d = x0
            else:
                r = previous_h / h
                d = (1 + 0.5 / r) * x0 - (0.5 / r) * previous_x0
            sigma_ratio = ((1 - a_next) / (1 - a_t)) ** 0.5
            x = sigma_ratio * x - a_next ** 0.5 * torch.expm1(torch.tensor(-h)).item() * d
            previous_x0, previous_h = x0, h
        if callback is not None:
            callback(steps[i + 1] if i + 1 < len(steps) else -1, x)
    return x


SAMPLERS = ("dpm++", "ddim", "ddpm")


def sample(sampler: str, eps_fn: EpsFn, x: torch.Tensor, schedule: Schedule, steps: int,
           generators: Sequence[torch.Generator], eta: float = 0.0,
           callback: Optional[StepCallback] = None) -> torch.Tensor:
    """Dispatch by name: "dpm++" (DPM-Solver++(2M) on log-SNR-uniform timesteps, ``steps``
    model calls), "ddim" (time-uniform, ``steps`` calls, ``eta``), or "ddpm" (ancestral,
    all T calls; ``steps`` ignored)."""
    if sampler == "ddpm":
        return ddpm_sample(eps_fn, x, schedule, generators, callback=callback)
    if sampler == "ddim":
        return ddim_sample(eps_fn, x, schedule, spaced_timesteps(schedule.num_timesteps, steps),
                           eta=eta, generators=generators, callback=callback)
    if sampler == "dpm++":
        return dpm_solver_pp_sample(eps_fn, x, schedule, logsnr_timesteps(schedule, steps),
                                    callback=callback)
    raise ValueError(f"unknown sampler {sampler!r}; choose from {', '.join(SAMPLERS)}")
