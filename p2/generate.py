"""`bash hw2_2.sh NOISE_DIR OUT_DIR UNet.pt`: one face per noise file, by DDIM.

Each `NAME.pt` in NOISE_DIR becomes `OUT_DIR/NAME.png`: 50 uniform DDIM steps with eta = 0
(the convention of `p2.diffusion.uniform_ddim_schedule`), fp32, batched, on the GPU when
there is one, each image min-max normalised as the ground truth was.
"""

import argparse
import sys
import time
from pathlib import Path
from typing import List, Optional

import torch
from tqdm import tqdm

from p2.diffusion import (
    EpsModel,
    alphas_cumprod,
    ddim_sample,
    linear_betas,
    per_sample_noise,
    uniform_ddim_schedule,
)
from p2.errors import run_cli
from p2.files import load_noises, load_unet, resolve_device, save_min_max, staged_output


def sample_faces(
    eps_model: EpsModel,
    noises: torch.Tensor,
    steps: int = 50,
    eta: float = 0.0,
    batch_size: int = 10,
    seed: int = 0,
    device: Optional[torch.device] = None,
) -> torch.Tensor:
    """DDIM from each noise (N, 3, H, W) -> images (N, 3, H, W) on the CPU, unnormalised.

    With eta > 0 the noise of image i comes from its own generator (seed * 1000003 + i), so an
    image never depends on the batch size.
    """
    schedule = uniform_ddim_schedule(alphas_cumprod(linear_betas()), steps)
    images = []
    with torch.no_grad():
        for start in range(0, len(noises), batch_size):
            x_T = noises[start : start + batch_size].to(device or "cpu")
            seeds = [seed * 1000003 + i for i in range(start, start + len(x_T))]
            noise_sampler = per_sample_noise(seeds, x_T.shape[1:], x_T.device)
            images.append(ddim_sample(eps_model, x_T, schedule, eta, noise_sampler).cpu())
    return torch.cat(images)


def use_exact_fp32() -> None:
    """No TF32 and deterministic cuDNN kernels: the same bytes on every run."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def with_progress(eps_model: EpsModel, bar: tqdm) -> EpsModel:
    def counted(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        bar.update(len(x))
        return eps_model(x, t)

    return counted


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="hw2_2.sh", description=__doc__.split("\n")[0])
    parser.add_argument("noise_dir", type=Path, help="folder of *.pt noises, each (1, 3, 256, 256)")
    parser.add_argument("out_dir", type=Path, help="where NAME.png is written for each NAME.pt")
    parser.add_argument("unet", type=Path, help="the course's UNet.pt (a state_dict)")
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps (default 50)")
    parser.add_argument(
        "--eta", type=float, default=0.0, help="DDIM eta (default 0: deterministic)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=10, help="images per UNet call (default 10)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise added when eta > 0")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    args = parser.parse_args(argv)
    if not 1 <= args.steps <= 1000 or args.batch_size < 1 or args.eta < 0:
        parser.error("need 1 <= --steps <= 1000, --batch-size >= 1 and --eta >= 0")
    return args


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    device = resolve_device(args.device)
    names, noises = load_noises(args.noise_dir)
    with staged_output(args.out_dir) as staging:
        model = load_unet(args.unet).to(device)
        if device.type == "cpu":
            print(
                "warning: no GPU in use; on a CPU a 256x256 face takes minutes (~6 per core)",
                file=sys.stderr,
            )
        use_exact_fp32()
        start = time.perf_counter()
        with tqdm(
            total=len(names) * args.steps, unit="img-step", desc="DDIM", file=sys.stderr
        ) as bar:
            images = sample_faces(
                with_progress(model, bar),
                noises,
                args.steps,
                args.eta,
                args.batch_size,
                args.seed,
                device,
            )
        save_min_max(images, [staging / f"{name}.png" for name in names])
    seconds = time.perf_counter() - start
    print(f"wrote {len(names)} images to {args.out_dir} in {seconds:.1f} s on {device}")


if __name__ == "__main__":
    run_cli(main)
