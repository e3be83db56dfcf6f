import pytest
import torch

from p3.diffusion import LATENT_SCALE
from p3.model import tiny_config
from p3.vae import AutoencoderKL


@pytest.fixture(scope="module")
def golden(sd):
    return sd.load("sd_vae_tiny_golden.pt")


def build(sd, golden, dtype):
    model = AutoencoderKL(tiny_config().vae)
    model.load_state_dict(sd.weights(golden))
    return model.to(dtype).eval()


def test_key_order_and_shapes_match_compvis(golden):
    state = AutoencoderKL(tiny_config().vae).state_dict()
    assert list(state) == list(golden["keys"])
    assert all(list(v.shape) == list(golden["shapes"][k]) for k, v in state.items())


def test_float64_encode_decode_match_golden(sd, golden):
    model = build(sd, golden, torch.float64)
    inputs, outputs = golden["inputs"], golden["outputs"]
    with torch.no_grad():
        moments = model.quant_conv(model.encoder(inputs["image"].double()))
        mean, std = model.encode(inputs["image"].double())
        sample = mean + std * inputs["posterior_noise"].double()
        decoded = model.decode(inputs["z"].double())
        decoded_first_stage = model.decode(inputs["z"].double() / LATENT_SCALE)
    sd.assert_close(moments, outputs["moments"])
    sd.assert_close(mean, outputs["mean"])
    sd.assert_close(std, outputs["std"])
    sd.assert_close(sample, outputs["posterior_sample"])
    sd.assert_close(LATENT_SCALE * sample, outputs["latent_scaled"])
    sd.assert_close(decoded, outputs["decoded"])
    sd.assert_close(decoded_first_stage, outputs["decode_first_stage"])


def test_float32_matches_compvis_float32(sd, golden):
    model = build(sd, golden, torch.float32)
    inputs, outputs = golden["inputs"], golden["outputs"]
    with torch.no_grad():
        moments = model.quant_conv(model.encoder(inputs["image"].float()))
        decoded = model.decode(inputs["z"].float())
    assert (moments - outputs["moments_fp32_compvis"].float()).abs().max() < 1e-5
    assert (decoded - outputs["decoded_fp32_compvis"].float()).abs().max() < 1e-5
