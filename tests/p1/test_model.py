import pytest
import torch

from p1.model import ConditionalUNet, build_model, count_parameters, timestep_embedding


def test_digit_model_shapes_and_default_size():
    model = build_model({})
    x = torch.randn(2, 3, 28, 28)
    out = model(x, torch.tensor([0, 999]), torch.zeros(2, 12))
    assert out.shape == x.shape
    assert 0.5e6 < count_parameters(model) < 3e6  # small enough for 1000 CPU images < 10 min


def test_generic_multi_hot_condition_at_64px():
    model = ConditionalUNet(image_size=64, cond_dim=24, base_channels=8,
                            channel_mults=(1, 2, 2, 2), attention_levels=(3,))
    cond = torch.zeros(2, 24)
    cond[0, [1, 5, 7]] = 1.0
    out = model(torch.randn(2, 3, 64, 64), torch.tensor([3, 4]), cond)
    assert out.shape == (2, 3, 64, 64)


def test_patch_size_folds_pixels_into_channels():
    model = ConditionalUNet(image_size=64, cond_dim=24, base_channels=8, channel_mults=(1, 2, 4),
                            attention_levels=(2,), patch_size=2)
    assert model.stem.in_channels == 12 and model.image_channels == 3
    out = model(torch.randn(2, 3, 64, 64), torch.tensor([3, 4]), torch.zeros(2, 24))
    assert out.shape == (2, 3, 64, 64)
    with pytest.raises(ValueError, match="patch_size"):
        ConditionalUNet(image_size=64, channel_mults=(1, 2), patch_size=3)
    assert build_model({}).patch_size == 1  # checkpoints without the key stay valid


def test_condition_changes_output():
    torch.manual_seed(0)
    model = build_model({"base_channels": 8, "dropout": 0.0}).eval()
    x, t = torch.randn(1, 3, 28, 28), torch.tensor([10])
    a = model(x, t, torch.eye(12)[:1])
    b = model(x, t, torch.eye(12)[1:2])
    assert not torch.allclose(a, b)


def test_image_size_must_halve_cleanly():
    with pytest.raises(ValueError, match="divisible"):
        ConditionalUNet(image_size=30, channel_mults=(1, 2, 2))


def test_timestep_embedding_shape_and_values():
    emb = timestep_embedding(torch.tensor([0, 5]), 16)
    assert emb.shape == (2, 16)
    assert torch.allclose(emb[0, :8], torch.ones(8)) and torch.allclose(emb[0, 8:], torch.zeros(8))
