"""`python3 -m p2.interpolation_norms [NOISE_DIR] --json PATH`: what interpolation does to noise.

DDIM maps a noise x_T to a face; the UNet was trained on x_T ~ N(0, I), whose norm is very
nearly sqrt(d) (d = 3 x 256 x 256 values). This tool measures, for alpha = 0, 0.1, ..., 1,
the norm and standard deviation of the linear and the spherical interpolation of two noises
(00.pt and 01.pt of NOISE_DIR, or two standard Gaussian noises of the course's shape drawn
with --seed when no folder is given). No UNet is involved: it shows what the model is given,
not what it draws. For independent Gaussian noises the linear mix has standard deviation
sqrt((1 - alpha)^2 + alpha^2) (0.707 at alpha = 0.5); slerp keeps the norm.
"""

import argparse
import math
from pathlib import Path
from typing import List, Optional

import torch

from p2.diffusion import lerp, slerp
from p2.errors import UserError, run_cli
from p2.files import load_noises
from p2.jsonout import check_writable, write_json

SHAPE = (1, 3, 256, 256)


def pick_pair(noise_dir: Optional[Path], pair: List[str], seed: int):
    """(description, z0, z1): two noises of the folder by name, or two seeded Gaussian ones."""
    if noise_dir is None:
        generator = torch.Generator().manual_seed(seed)
        z0, z1 = (torch.randn(SHAPE, generator=generator, dtype=torch.float64) for _ in range(2))
        return f"two standard Gaussian noises {SHAPE}, seed {seed}", z0, z1
    names, noises = load_noises(noise_dir)
    missing = [name for name in pair if name not in names]
    if missing:
        raise UserError(f"{noise_dir} has no {missing[0]}.pt")
    z0, z1 = (noises[names.index(name)].double() for name in pair)
    return f"{noise_dir}/{pair[0]}.pt and {pair[1]}.pt", z0, z1


def measure(z0: torch.Tensor, z1: torch.Tensor, alphas: List[float]) -> dict:
    """Norms (relative to sqrt(d)) and standard deviations of lerp and slerp per alpha."""
    root_d = math.sqrt(z0.numel())
    cosine = float(torch.sum(z0 * z1) / (z0.norm() * z1.norm()))
    rows = []
    for alpha in alphas:
        row = {"alpha": alpha,
               "independent_gaussian_std": math.sqrt((1 - alpha) ** 2 + alpha ** 2)}
        for name, mix in (("linear", lerp), ("slerp", slerp)):
            z = mix(z0, z1, alpha)
            row[f"{name}_norm_over_sqrt_d"] = float(z.norm()) / root_d
            row[f"{name}_std"] = float(z.std())
        rows.append(row)
    return {"values_per_noise": z0.numel(), "cosine_between_noises": cosine,
            "angle_degrees": math.degrees(math.acos(max(-1.0, min(1.0, cosine)))), "rows": rows}


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python3 -m p2.interpolation_norms",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("noise_dir", type=Path, nargs="?", default=None,
                        help="folder of NN.pt noises (default: two seeded Gaussian noises)")
    parser.add_argument("--pair", nargs=2, default=["00", "01"], metavar=("FROM", "TO"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the table")
    args = parser.parse_args(argv)
    if args.json:
        check_writable(args.json)
    source, z0, z1 = pick_pair(args.noise_dir, args.pair, args.seed)
    result = measure(z0, z1, [round(0.1 * i, 1) for i in range(11)])
    print(f"{source}: angle {result['angle_degrees']:.2f} degrees")
    print("| alpha | linear: norm / sqrt(d) | linear: std | slerp: norm / sqrt(d) | theory |")
    print("|---|---|---|---|---|")
    for row in result["rows"]:
        print(f"| {row['alpha']:.1f} | {row['linear_norm_over_sqrt_d']:.4f} | "
              f"{row['linear_std']:.4f} | {row['slerp_norm_over_sqrt_d']:.4f} | "
              f"{row['independent_gaussian_std']:.4f} |")
    if args.json:
        write_json(args.json, dict(result, tool="p2.interpolation_norms", source=source))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    run_cli(main)
