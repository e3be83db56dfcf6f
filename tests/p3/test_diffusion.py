import pytest
import torch

from p3.diffusion import (
    DiscreteVPSchedule,
    classifier_free_guidance,
    ddim_timesteps,
    sample_ddim,
    sample_dpmpp_2m,
    scaled_linear_alphas_cumprod,
)
from p3.model import tiny_config
from p3.unet import UNetModel


@pytest.fixture(scope="module")
def golden(sd):
    return sd.load("sd_sampler_tiny_golden.pt")


@pytest.fixture(scope="module")
def unet(sd, golden):
    model = UNetModel(tiny_config().unet)
    model.load_state_dict(sd.weights(sd.load("sd_unet_tiny_golden.pt")))
    return model.double().eval()


def test_schedule_reference_values(golden):
    a = scaled_linear_alphas_cumprod()
    assert torch.equal(a, golden["schedule"]["alphas_cumprod_float32_upcast"])
    for i, ref in [(0, 0.99915), (1, 0.998296028), (499, 0.27766965), (999, 0.00466009851)]:
        assert a[i].item() == pytest.approx(ref, rel=1e-6)


def test_ddim_timesteps_are_compvis_uniform():
    assert ddim_timesteps(50)[:3] == [1, 21, 41] and ddim_timesteps(50)[-1] == 981
    assert len(ddim_timesteps(30)) == 31  # every 33rd step from 1 to 991, as in CompVis


def test_dpm_schedule_interpolates_half_log_alphas_cumprod():
    a = scaled_linear_alphas_cumprod()
    schedule = DiscreteVPSchedule(a)
    assert schedule.log_alpha(1.0) == pytest.approx(0.5 * torch.log(a[-1]).item(), rel=1e-14)
    midpoint = 0.25 * torch.log(a[0] * a[1]).item()
    assert schedule.log_alpha(0.0015) == pytest.approx(midpoint, rel=1e-12)
    assert schedule.model_time(1.0) == pytest.approx(999.0)


def test_cfg_is_one_2b_call_with_uncond_first():
    calls = []

    def fake_unet(x, t, context):
        calls.append(context)
        return context[:, :1, :1, None].expand_as(x) * 1.0

    x = torch.zeros(2, 1, 1, 1)
    cond, uncond = torch.full((2, 1, 1), 3.0), torch.full((2, 1, 1), 1.0)
    eps = classifier_free_guidance(fake_unet, cond, uncond, 7.5)(x, torch.zeros(2))
    assert len(calls) == 1 and calls[0][:2].eq(1).all() and calls[0][2:].eq(3).all()
    assert torch.allclose(eps, torch.full_like(x, 1 + 7.5 * (3 - 1)))


@pytest.mark.parametrize("name", ["dpmsolverpp_10", "dpmsolverpp_50", "ddim_10", "ddim_50"])
def test_samplers_match_golden(sd, golden, unet, name):
    inputs, ref = golden["inputs"], golden["outputs"][name]
    seen = []

    def recording_unet(x, t, context):
        seen.append(t.double())
        return unet(x, t, context)

    eps_fn = classifier_free_guidance(
        recording_unet, inputs["cond"].double(), inputs["uncond"].double(), inputs["guidance_scale"]
    )
    sampler = sample_dpmpp_2m if name.startswith("dpm") else sample_ddim
    steps = int(name.split("_")[1])
    x0 = sampler(eps_fn, inputs["x_T"].double(), scaled_linear_alphas_cumprod(), steps)
    sd.assert_close(x0, ref["x0"])
    t_ref = ref["model_call_t_input"] if name.startswith("dpm") else ref["model_call_t"]
    assert torch.allclose(torch.stack(seen), t_ref.double(), rtol=0, atol=1e-9)
