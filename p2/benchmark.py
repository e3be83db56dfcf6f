"""`python3 -m p2.benchmark`: seconds per face and the sampler's own share of the time.

Runs `ddim_sample` on the face UNet (random weights unless --unet is given; speed does not
depend on the weights) and times every UNet call separately, so that
overhead = total - UNet time is what the sampler itself costs.
"""

import argparse
import time
from pathlib import Path
from typing import List, Optional

import torch

from p2.diffusion import EpsModel, alphas_cumprod, ddim_sample, linear_betas, uniform_ddim_schedule
from p2.errors import run_cli
from p2.files import load_unet, resolve_device
from p2.generate import use_exact_fp32
from p2.model import FaceUNet


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class TimedModel:
    """Adapter that adds up the wall time spent inside the model."""

    def __init__(self, model: EpsModel, device: torch.device):
        self.model, self.device, self.seconds = model, device, 0.0

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        synchronize(self.device)
        start = time.perf_counter()
        eps = self.model(x, t)
        synchronize(self.device)
        self.seconds += time.perf_counter() - start
        return eps


def time_sampling(
    model: EpsModel, batch_size: int, size: int, steps: int, device: torch.device
) -> dict:
    """One timed DDIM run after a warm-up forward; returns seconds (total, in the UNet)."""
    schedule = uniform_ddim_schedule(alphas_cumprod(linear_betas()), steps)
    x_T = torch.randn(batch_size, 3, size, size, generator=torch.Generator().manual_seed(0)).to(
        device
    )
    timed = TimedModel(model, device)
    with torch.no_grad():
        model(x_T, torch.zeros(batch_size, dtype=torch.int64, device=device))
        synchronize(device)
        start = time.perf_counter()
        ddim_sample(timed, x_T, schedule)
        synchronize(device)
    total = time.perf_counter() - start
    return {"total": total, "unet": timed.seconds}


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python3 -m p2.benchmark", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--unet", type=Path, help="UNet.pt (default: random weights, same speed)")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--size", type=int, default=256, help="image side, a multiple of 32")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    model = (load_unet(args.unet) if args.unet else FaceUNet().eval()).to(device)
    use_exact_fp32()
    seconds = time_sampling(model, args.batch_size, args.size, args.steps, device)
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu, {torch.get_num_threads()} threads"
    )
    overhead = seconds["total"] - seconds["unet"]
    print(f"device: {name}; torch {torch.__version__}")
    print(f"{args.batch_size} x {args.size}x{args.size}, {args.steps} DDIM steps, fp32")
    print(f"seconds per image:     {seconds['total'] / args.batch_size:.3f}")
    print(
        f"sampler overhead:      {overhead:.4f} s "
        f"({100 * overhead / seconds['total']:.2f}% of the total)"
    )


if __name__ == "__main__":
    run_cli(main)
