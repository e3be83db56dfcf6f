import pytest
import torch

from p3.model import tiny_config
from p3.unet import UNetModel, timestep_embedding


@pytest.fixture(scope="module")
def golden(sd):
    return sd.load("sd_unet_tiny_golden.pt")


def build(sd, golden, dtype):
    model = UNetModel(tiny_config().unet)
    model.load_state_dict(sd.weights(golden))
    return model.to(dtype).eval()


def test_key_order_and_shapes_match_compvis(golden):
    state = UNetModel(tiny_config().unet).state_dict()
    assert list(state) == list(golden["keys"])
    assert all(list(v.shape) == list(golden["shapes"][k]) for k, v in state.items())


@pytest.mark.parametrize("t_name, out_name", [("t", "eps"), ("t_frac", "eps_t_frac")])
def test_float64_forward_matches_golden(sd, golden, t_name, out_name):
    model = build(sd, golden, torch.float64)
    inputs = golden["inputs"]
    with torch.no_grad():
        eps = model(inputs["x"].double(), inputs[t_name], inputs["context"].double())
    sd.assert_close(eps, golden["outputs"][out_name])


def test_float32_forward_matches_compvis_float32(sd, golden):
    model = build(sd, golden, torch.float32)
    inputs = golden["inputs"]
    with torch.no_grad():
        eps = model(inputs["x"].float(), inputs["t"], inputs["context"].float())
    assert eps.dtype == torch.float32
    assert (eps - golden["outputs"]["eps_fp32_compvis"].float()).abs().max() < 1e-6


def test_timestep_embedding_is_cosine_first():
    emb = timestep_embedding(torch.tensor([0.0, 5.0]), 8, torch.float64)
    assert emb.shape == (2, 8)
    assert torch.equal(emb[0], torch.tensor([1.0] * 4 + [0.0] * 4, dtype=torch.float64))
    assert emb[1, 0].item() == pytest.approx(torch.cos(torch.tensor(5.0)).item(), abs=1e-6)
