import pytest
import torch

from p1.diffusion import (
    classifier_guided,
    cosine_schedule,
    ddim_sample,
    ddpm_sample,
    dpm_solver_pp_sample,
    drop_condition,
    guided,
    initial_noise,
    linear_schedule,
    logsnr_timesteps,
    make_schedule,
    noisy_classifier_guided,
    q_sample,
    sample,
    spaced_timesteps,
    training_loss,
)


def point_mass_eps(schedule, target):
    """Exact ε predictor when the data distribution is the single image ``target``."""
    def eps_fn(x, t):
        a = schedule.alphas_cumprod[t].float().reshape(-1, 1, 1, 1)
        return (x - a.sqrt() * target) / (1 - a).sqrt()
    return eps_fn


def generators(n, seed=0):
    return [torch.Generator().manual_seed(seed + i) for i in range(n)]


def test_linear_schedule_matches_homework_beta_scheduler():
    schedule = linear_schedule()
    assert schedule.betas.dtype == torch.float64 and schedule.num_timesteps == 1000
    assert schedule.betas[0].item() == pytest.approx(1e-4)
    assert schedule.betas[-1].item() == pytest.approx(0.02)
    expected = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0)
    assert torch.equal(schedule.alphas_cumprod, expected)
    assert make_schedule({"num_timesteps": 50}).num_timesteps == 50
    with pytest.raises(ValueError):
        make_schedule({"kind": "sigmoid"})


def test_cosine_schedule_matches_diffusers_squaredcos_cap_v2():
    diffusers = pytest.importorskip("diffusers")
    oracle = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    schedule = make_schedule({"kind": "cosine", "num_timesteps": 1000})
    assert schedule.num_timesteps == 1000
    assert torch.allclose(schedule.betas.float(), oracle.betas, rtol=1e-4, atol=1e-7)
    assert torch.equal(schedule.betas, cosine_schedule(1000).betas)
    assert bool((schedule.alphas_cumprod[1:] < schedule.alphas_cumprod[:-1]).all())


def test_q_sample_formula():
    schedule = linear_schedule(10)
    x0, noise = torch.ones(2, 1, 2, 2), torch.full((2, 1, 2, 2), 2.0)
    out = q_sample(schedule, x0, torch.tensor([0, 9]), noise)
    for i, t in enumerate([0, 9]):
        a = schedule.alphas_cumprod[t].item()
        assert torch.allclose(out[i], torch.full((1, 2, 2), a ** 0.5 + 2 * (1 - a) ** 0.5))


def test_spaced_timesteps():
    assert spaced_timesteps(1000, 5) == [999, 749, 500, 250, 0]
    assert spaced_timesteps(10, 10) == list(range(9, -1, -1))
    assert spaced_timesteps(10, 1) == [9]
    with pytest.raises(ValueError):
        spaced_timesteps(10, 11)


def test_ddim_eta1_step_is_the_ddpm_posterior():
    """One DDIM η=1 step over consecutive timesteps = DDPM eq. 7 mean + β̃ noise."""
    schedule = linear_schedule(50)
    t = 30
    torch.manual_seed(0)
    x = torch.randn(1, 3, 4, 4)
    eps = torch.randn(1, 3, 4, 4)
    out = ddim_sample(lambda x_, t_: eps, x, schedule, [t], eta=1.0, generators=generators(1),
                      clip_x0=False)
    # ddim_sample([t]) goes to the clean image; compare one step t -> t-1 instead
    captured = {}
    ddim_sample(lambda x_, t_: eps, x, schedule, [t, t - 1], eta=1.0, generators=generators(1),
                clip_x0=False, callback=lambda tn, state: captured.setdefault(tn, state))
    a_t, a_prev = schedule.alphas_cumprod[t].item(), schedule.alphas_cumprod[t - 1].item()
    beta = schedule.betas[t].item()
    x0 = (x - (1 - a_t) ** 0.5 * eps) / a_t ** 0.5
    mean = (a_prev ** 0.5 * beta / (1 - a_t)) * x0 + ((1 - beta) ** 0.5 * (1 - a_prev)
                                                       / (1 - a_t)) * x
    variance = (1 - a_prev) / (1 - a_t) * beta
    z = initial_noise(generators(1), (3, 4, 4))
    assert torch.allclose(captured[t - 1], mean + variance ** 0.5 * z, atol=1e-5)
    assert torch.allclose(out, x0, atol=1e-5)  # last step lands on x̂0 (ᾱ = 1)


@pytest.mark.parametrize("name", ["ddim", "dpm++", "ddpm"])
def test_samplers_recover_a_point_mass(name):
    schedule = linear_schedule(100)
    target = torch.rand(2, 3, 4, 4) * 1.6 - 0.8
    x = initial_noise(generators(2), (3, 4, 4))
    out = sample(name, point_mass_eps(schedule, target), x, schedule, 8, generators(2, 7))
    assert torch.allclose(out, target, atol=1e-4)


def test_dpm_solver_pp_is_second_order_on_a_gaussian():
    """Data N(0, s²I): the exact ODE solution maps x_T to s·x_T/sqrt(ᾱ_T s² + 1 − ᾱ_T).
    DPM-Solver++(2M) must beat DDIM (first order) at equal steps."""
    schedule = linear_schedule(1000)
    s = 0.5

    def eps_fn(x, t):
        a = schedule.alphas_cumprod[t].float().reshape(-1, 1, 1, 1)
        return (1 - a).sqrt() * x / (a * s ** 2 + 1 - a)

    x = initial_noise(generators(4), (1, 4, 4))
    a_T = schedule.alphas_cumprod[-1].item()
    exact = s * x / (a_T * s ** 2 + 1 - a_T) ** 0.5
    fast = dpm_solver_pp_sample(eps_fn, x, schedule, logsnr_timesteps(schedule, 20),
                                clip_x0=False)
    slow = ddim_sample(eps_fn, x, schedule, spaced_timesteps(1000, 20), clip_x0=False)
    assert (fast - exact).abs().max() < 0.02
    assert (fast - exact).abs().max() < 0.25 * (slow - exact).abs().max()


def test_logsnr_timesteps_are_distinct_and_span_the_schedule():
    schedule = linear_schedule(1000)
    for steps in (1, 2, 5, 20, 50, 200, 1000):
        chosen = logsnr_timesteps(schedule, steps)
        assert len(chosen) == steps and chosen[0] == 999
        assert all(a > b for a, b in zip(chosen, chosen[1:])) and chosen[-1] >= 0
    assert logsnr_timesteps(schedule, 20)[-1] == 0
    with pytest.raises(ValueError):
        logsnr_timesteps(schedule, 1001)


def test_ddpm_noise_depends_on_each_sample_only():
    schedule = linear_schedule(10)
    eps_fn = point_mass_eps(schedule, torch.zeros(1, 3, 2, 2))
    gens = generators(3)
    x = initial_noise(gens, (3, 2, 2))
    full = ddpm_sample(eps_fn, x, schedule, generators(3), clip_x0=False)
    alone = ddpm_sample(eps_fn, x[1:2], schedule, [generators(3)[1]], clip_x0=False)
    assert torch.equal(full[1:2], alone)
    with pytest.raises(ValueError):
        ddim_sample(eps_fn, x, schedule, [5, 2], eta=0.5)


def test_guided_combines_conditional_and_unconditional():
    def model(x, t, cond):
        return x * 0 + cond.sum(1).reshape(-1, 1, 1, 1)

    x, t = torch.zeros(2, 1, 1, 1), torch.tensor([3, 3])
    cond, null = torch.ones(2, 4), torch.zeros(4)
    assert torch.equal(guided(model, cond, null, 1.0)(x, t), torch.full((2, 1, 1, 1), 4.0))
    assert torch.equal(guided(model, cond, null, 0.0)(x, t), torch.zeros(2, 1, 1, 1))
    assert torch.equal(guided(model, cond, null, 3.0)(x, t), torch.full((2, 1, 1, 1), 12.0))


def test_classifier_guided_shifts_eps_by_the_scaled_gradient():
    schedule = linear_schedule(10)
    x, t = torch.zeros(2, 1, 2, 2), torch.tensor([0, 9])
    seen = []

    def grad_log_prob(x0):
        seen.append(x0)
        return torch.ones_like(x0)

    eps = classifier_guided(lambda x, t: torch.full_like(x, 0.5), schedule, grad_log_prob, 2.0)
    out = eps(x, t)
    for i, step in enumerate([0, 9]):
        a = schedule.alphas_cumprod[step].item()
        assert torch.allclose(out[i], torch.full((1, 2, 2), 0.5 - 2.0 * (1 - a) ** 0.5), atol=1e-6)
        expected_x0 = max(-1.0, -(1 - a) ** 0.5 * 0.5 / a ** 0.5)
        assert torch.allclose(seen[0][i], torch.full((1, 2, 2), expected_x0), atol=1e-6)


def test_noisy_classifier_guided_follows_algorithm_2():
    schedule = linear_schedule(10)
    x, t = torch.randn(2, 1, 2, 2), torch.tensor([0, 9])
    seen = []

    def grad_log_prob(x_t, t_in):
        seen.append((x_t, t_in))
        return torch.ones_like(x_t)

    out = noisy_classifier_guided(lambda x, t: torch.full_like(x, 0.5), schedule, grad_log_prob,
                                  2.0)(x, t)
    for i, step in enumerate([0, 9]):
        a = schedule.alphas_cumprod[step].item()
        assert torch.allclose(out[i], torch.full((1, 2, 2), 0.5 - 2.0 * (1 - a) ** 0.5), atol=1e-6)
    assert torch.equal(seen[0][0], x) and torch.equal(seen[0][1], t)  # judged on x_t itself


def test_classifier_guidance_pulls_samples_towards_the_classifier():
    schedule = linear_schedule(100)

    def standard_normal_eps(x, t):  # exact ε when the data are N(0, I): x_t ~ N(0, I) too
        return (1 - schedule.alphas_cumprod[t].float()).sqrt().reshape(-1, 1, 1, 1) * x

    target = torch.full((64, 1, 2, 2), 0.5)
    x = initial_noise(generators(64), (1, 2, 2))
    plain = sample("ddim", standard_normal_eps, x, schedule, 20, generators(64))
    pulled = sample("ddim", classifier_guided(standard_normal_eps, schedule,
                                              lambda x0: target - x0, 1.0),
                    x, schedule, 20, generators(64))
    assert (pulled - target).abs().mean() < 0.7 * (plain - target).abs().mean()


def test_drop_condition_rate_and_rows():
    cond = torch.ones(4000, 3)
    dropped = drop_condition(cond, 0.25, torch.Generator().manual_seed(0))
    rows_kept = dropped.sum(1) == 3
    assert torch.all((dropped.sum(1) == 0) | rows_kept)
    assert abs(1 - rows_kept.float().mean().item() - 0.25) < 0.03
    assert torch.equal(drop_condition(cond, 0.0), cond)


def test_training_loss_is_deterministic_and_differentiable():
    schedule = linear_schedule(20)
    model = torch.nn.Conv2d(3, 3, 1)
    wrapped = lambda x, t, c: model(x)  # noqa: E731
    x0 = torch.rand(4, 3, 4, 4) * 2 - 1
    a = training_loss(wrapped, schedule, x0, torch.zeros(4, 2), torch.Generator().manual_seed(1))
    b = training_loss(wrapped, schedule, x0, torch.zeros(4, 2), torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.item() > 0
    a.backward()
    assert model.weight.grad is not None


def test_min_snr_weighting():
    schedule = linear_schedule(20)
    x0 = torch.rand(64, 3, 4, 4) * 2 - 1

    def zeros(x, t, c):
        return torch.zeros_like(x)

    def loss(gamma):
        return training_loss(zeros, schedule, x0, torch.zeros(64, 2),
                             torch.Generator().manual_seed(3), gamma)

    snr = schedule.alphas_cumprod / (1 - schedule.alphas_cumprod)
    assert torch.allclose(loss(0.0), loss(float(snr.max()) + 1))
    generator = torch.Generator().manual_seed(3)
    t = torch.randint(0, 20, (64,), generator=generator)
    noise = torch.randn(x0.shape, generator=generator)
    weights = (snr[t].clamp(max=5.0) / snr[t]).float()
    expected = ((noise ** 2).flatten(1).mean(1) * weights).mean()
    assert torch.allclose(loss(5.0), expected)
