"""Reading noises and weights, writing images: every failure becomes a one-line UserError."""

import contextlib
import inspect
import os
import shutil
import tempfile
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import torch
from torchvision.utils import save_image

from p2.errors import UserError
from p2.model import FaceUNet


def torch_load(path: Path, what: str) -> object:
    """torch.load onto the CPU (tensors saved on CUDA included), tensors-only where supported."""
    if not path.is_file():
        raise UserError(f"{what} not found: {path}")
    kwargs = (
        {"weights_only": True} if "weights_only" in inspect.signature(torch.load).parameters else {}
    )
    try:
        return torch.load(path, map_location="cpu", **kwargs)
    except Exception as err:  # torch raises many kinds for corrupt or foreign files
        raise UserError(
            f"{what} {path} is not a readable torch file ({type(err).__name__})"
        ) from None


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available else cpu; a CUDA request without CUDA is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r} (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name} requested but CUDA is not available (use --device cpu)")
    return device


def load_noises(noise_dir: Path) -> Tuple[List[str], torch.Tensor]:
    """All `*.pt` noises of a folder, sorted by name -> (names, (N, 3, H, W) float32).

    Each file holds one float tensor of shape (1, 3, H, W) or (3, H, W), H and W multiples of
    32 (the course noises are (1, 3, 256, 256)); all must share one shape.
    """
    if not noise_dir.is_dir():
        raise UserError(f"noise folder not found: {noise_dir}")
    paths = sorted(noise_dir.glob("*.pt"))
    if not paths:
        raise UserError(f"no .pt noise files in {noise_dir}")
    noises = []
    for path in paths:
        noise = torch_load(path, "noise file")
        if not isinstance(noise, torch.Tensor) or not noise.is_floating_point():
            raise UserError(f"noise file {path} does not hold a float tensor")
        if noise.dim() == 3:
            noise = noise[None]
        if (
            noise.dim() != 4
            or noise.shape[:2] != (1, 3)
            or noise.shape[2] % 32
            or noise.shape[3] % 32
        ):
            raise UserError(
                f"noise file {path} has shape {tuple(noise.shape)}; expected (1, 3, H, W) "
                "with H and W multiples of 32, e.g. (1, 3, 256, 256)"
            )
        if noises and noise.shape != noises[0].shape:
            raise UserError(
                f"noise file {path} has shape {tuple(noise.shape)}, unlike {paths[0].name}"
            )
        noises.append(noise.float())
    return [path.stem for path in paths], torch.cat(noises)


def load_unet(path: Path) -> FaceUNet:
    """The face UNet from a plain state_dict (`UNet.pt`), loaded strictly, in eval mode."""
    state_dict = torch_load(path, "UNet checkpoint")
    if not isinstance(state_dict, dict) or not all(
        isinstance(v, torch.Tensor) for v in state_dict.values()
    ):
        raise UserError(f"UNet checkpoint {path} is not a state_dict (a dict of tensors)")
    if "down1.weight" not in state_dict:
        raise UserError(
            f"UNet checkpoint {path} is not a face UNet state_dict (no key 'down1.weight')"
        )
    model = FaceUNet.for_state_dict(state_dict)
    check_state_dict(model.state_dict(), state_dict, path)
    model.load_state_dict(state_dict)
    return model.eval()


def check_state_dict(
    expected: Dict[str, torch.Tensor], found: Dict[str, torch.Tensor], path: Path
) -> None:
    """Name the first missing, unexpected or mis-shaped keys of a state_dict."""

    def first(keys: List[str]) -> str:
        return ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")

    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    if missing or unexpected:
        parts = [f"missing {first(missing)}"] if missing else []
        parts += [f"unexpected {first(unexpected)}"] if unexpected else []
        raise UserError(f"UNet checkpoint {path} does not match the face UNet: " + "; ".join(parts))
    for key, tensor in expected.items():
        if found[key].shape != tensor.shape:
            raise UserError(
                f"UNet checkpoint {path}: {key} has shape {tuple(found[key].shape)}, "
                f"expected {tuple(tensor.shape)}"
            )


def min_max(images: torch.Tensor) -> torch.Tensor:
    """Normalise each image (N, C, H, W) to [0, 1] over its own values, as the GT was made."""
    flat = images.flatten(1)
    low, high = flat.min(1)[0], flat.max(1)[0]
    return ((flat - low[:, None]) / (high - low).clamp_min(1e-12)[:, None]).reshape(images.shape)


def save_min_max(images: torch.Tensor, paths: List[Path]) -> None:
    """Save images (N, 3, H, W), each min-max normalised, one PNG per path."""
    for image, path in zip(min_max(images), paths):
        save_image(image, str(path))


@contextlib.contextmanager
def staged_output(out_dir: Path) -> Iterator[Path]:
    """Yield a hidden staging folder inside out_dir; on success move its files into out_dir.

    On any failure the staging folder is removed (and out_dir too if this call created it), so
    out_dir never holds a partial result.
    """
    created = not out_dir.exists()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=out_dir))
    except OSError as err:
        raise UserError(f"cannot write to output folder {out_dir}: {err.strerror or err}") from None
    try:
        yield staging
        for path in sorted(staging.iterdir()):
            os.replace(path, out_dir / path.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if created and not any(out_dir.iterdir()):
            out_dir.rmdir()
