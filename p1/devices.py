"""The --device option of every p1 entry point: its default and its check."""
import torch

from p1.errors import UserError


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def check_device(device: str) -> torch.device:
    """torch.device from a string; UserError if it names CUDA and none is available."""
    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise UserError(f"unknown device {device!r} (use cpu, cuda or cuda:N)") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {device} requested but CUDA is not available; use --device cpu")
    return parsed
