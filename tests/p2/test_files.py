"""Loading noises and weights, and the staged output folder: every bad input is one UserError."""

import pytest
import torch

from p2.errors import UserError
from p2.files import load_noises, load_unet, min_max, resolve_device, staged_output
from p2.model import FaceUNet


def test_load_noises_sorted_and_stacked(noise_dir):
    names, noises = load_noises(noise_dir)
    assert names == ["00", "01", "02", "03"]
    assert noises.shape == (4, 3, 32, 32) and noises.dtype == torch.float32
    assert torch.equal(noises[2:3], torch.load(noise_dir / "02.pt"))


@pytest.mark.parametrize(
    "content, message",
    [
        (torch.randn(1, 3, 30, 32), "multiples of 32"),
        (torch.randn(2, 3, 32, 32), "expected (1, 3, H, W)"),
        (torch.zeros(1, 3, 32, 32, dtype=torch.int64), "float tensor"),
        ({"x": 1}, "float tensor"),
    ],
)
def test_load_noises_rejects_wrong_content(noise_dir, content, message):
    torch.save(content, noise_dir / "04.pt")
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_noises(noise_dir)


def test_load_noises_rejects_missing_empty_and_corrupt(tmp_path, noise_dir):
    with pytest.raises(UserError, match="not found"):
        load_noises(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no noises here")
    with pytest.raises(UserError, match="no .pt noise files"):
        load_noises(empty)
    (noise_dir / "05.pt").write_bytes(b"not a tensor")
    with pytest.raises(UserError, match="not a readable torch file"):
        load_noises(noise_dir)


def test_load_unet_strict_with_clear_key_errors(tmp_path, tiny_unet_file):
    model = load_unet(tiny_unet_file)
    assert isinstance(model, FaceUNet) and not model.training

    state = torch.load(tiny_unet_file)
    broken = dict(state)
    broken.pop("up7.attention.qkv.weight")
    broken["extra.weight"] = torch.zeros(1)
    torch.save(broken, tmp_path / "broken.pt")
    with pytest.raises(
        UserError, match="missing up7.attention.qkv.weight; unexpected extra.weight"
    ):
        load_unet(tmp_path / "broken.pt")

    reshaped = dict(state)
    reshaped["out.2.bias"] = torch.zeros(4)
    torch.save(reshaped, tmp_path / "reshaped.pt")
    with pytest.raises(UserError, match=r"out.2.bias has shape \(4,\), expected \(3,\)"):
        load_unet(tmp_path / "reshaped.pt")


@pytest.mark.parametrize(
    "content, message",
    [
        (b"garbage", "not a readable torch file"),
        ([1, 2], "not a state_dict"),
        ({"w": torch.zeros(1)}, "not a face UNet"),
    ],
)
def test_load_unet_rejects_foreign_files(tmp_path, content, message):
    path = tmp_path / "UNet.pt"
    path.write_bytes(content) if isinstance(content, bytes) else torch.save(content, path)
    with pytest.raises(UserError, match=message):
        load_unet(path)
    with pytest.raises(UserError, match="not found"):
        load_unet(tmp_path / "missing.pt")


@pytest.fixture
def cuda_tagged_saves():
    """Make torch.save record CPU tensors as living on cuda:0, as the course's files do."""
    from torch import serialization

    def tag(obj):
        return "cuda:0" if getattr(obj, "device", None) == torch.device("cpu") else None

    serialization.register_package(0, tag, lambda obj, location: None)
    yield
    serialization._package_registry[:] = [
        entry for entry in serialization._package_registry if entry[1] is not tag
    ]


def test_weights_saved_on_cuda_load_on_a_cpu_only_machine(
    tmp_path, tiny_unet_file, cuda_tagged_saves
):
    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA")
    path = tmp_path / "cuda_unet.pt"
    torch.save(torch.load(tiny_unet_file), path)
    with pytest.raises(RuntimeError, match="CUDA"):
        torch.load(path)  # what a naive loader does
    assert isinstance(load_unet(path), FaceUNet)


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(UserError, match="unknown device"):
        resolve_device("gpu please")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="CUDA is not available"):
            resolve_device("cuda")


def test_min_max_normalises_each_image_over_all_its_channels():
    images = torch.stack([torch.linspace(-3, 5, 48).reshape(3, 4, 4), torch.full((3, 4, 4), 2.0)])
    out = min_max(images)
    assert out[0].min() == 0 and out[0].max() == 1
    assert torch.all(out[1] == 0)  # a constant image does not divide by zero


def test_staged_output_moves_files_only_on_success(tmp_path):
    out = tmp_path / "out"
    with staged_output(out) as staging:
        (staging / "00.png").write_bytes(b"x")
    assert sorted(p.name for p in out.iterdir()) == ["00.png"]

    fresh = tmp_path / "fresh"
    with pytest.raises(RuntimeError), staged_output(fresh) as staging:
        (staging / "00.png").write_bytes(b"x")
        raise RuntimeError("sampling failed")
    assert not fresh.exists()

    with pytest.raises(RuntimeError), staged_output(out) as staging:
        (staging / "01.png").write_bytes(b"x")
        raise RuntimeError("sampling failed")
    assert sorted(p.name for p in out.iterdir()) == ["00.png"]


def test_staged_output_reports_an_unwritable_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    with pytest.raises(UserError, match="cannot write to output folder"), staged_output(
        blocker / "out"
    ):
        pass
