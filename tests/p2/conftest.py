import copy
from pathlib import Path

import pytest
import torch

from p2.model import FaceUNet

GOLDEN = Path(__file__).parent / "golden"


def recipe_state_dict(golden: dict) -> dict:
    """The golden vectors' synthetic weights (face_unet.md §10): seed 1000 + i for entry i."""
    state = {}
    for i, (key, value) in enumerate(FaceUNet().state_dict().items()):
        if key == "time.0.inv_freq":
            state[key] = golden["inv_freq"]
        else:
            generator = torch.Generator().manual_seed(1000 + i)
            state[key] = torch.randn(value.shape, generator=generator, dtype=torch.float32) * 0.05
    return state


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    return GOLDEN


@pytest.fixture(scope="session")
def load_golden():
    return lambda name: torch.load(GOLDEN / name)


@pytest.fixture(scope="session")
def recipe_model_fp32(load_golden) -> FaceUNet:
    """FaceUNet with the golden vectors' synthetic weights, loaded strictly, eval mode."""
    model = FaceUNet()
    model.load_state_dict(recipe_state_dict(load_golden("face_unet_golden.pt")), strict=True)
    return model.eval()


@pytest.fixture(scope="session")
def recipe_model_fp64(recipe_model_fp32) -> FaceUNet:
    return copy.deepcopy(recipe_model_fp32).double()


@pytest.fixture(scope="session")
def tiny_unet_file(tmp_path_factory) -> Path:
    """A random face UNet of width 32 (about 7M parameters) saved as a plain state_dict."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "tiny_unet.pt"
    torch.save(FaceUNet(channels=32).state_dict(), path)
    return path


@pytest.fixture
def noise_dir(tmp_path) -> Path:
    """Four 32x32 noises 00.pt..03.pt shaped like the course's (1, 3, H, W) files."""
    folder = tmp_path / "noise"
    folder.mkdir()
    generator = torch.Generator().manual_seed(1)
    for i in range(4):
        torch.save(torch.randn(1, 3, 32, 32, generator=generator), folder / f"{i:02d}.pt")
    return folder
