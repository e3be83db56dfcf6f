"""Report figures for Problem 2, one command each.

python3 -m p2.figures eta-grid NOISE_DIR UNet.pt eta_grid.png
    noises 00-03 (rows) x eta 0, 0.25, 0.5, 0.75, 1 (columns)
python3 -m p2.figures interpolation NOISE_DIR UNet.pt interpolation.png
    00.pt -> 01.pt, slerp (top row) and linear (bottom row), alpha 0, 0.1, ..., 1
"""

import argparse
from pathlib import Path
from typing import List, Optional, Sequence

import torch
from PIL import Image, ImageDraw, ImageFont
from torchvision.utils import make_grid

from p2.diffusion import EpsModel, lerp, slerp
from p2.errors import UserError, run_cli
from p2.files import load_noises, load_unet, min_max, resolve_device
from p2.generate import sample_faces, use_exact_fp32

PAD = 4


def font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1: a scalable font
    except TypeError:
        return ImageFont.load_default()


def labelled_grid(
    images: torch.Tensor, row_labels: Sequence[str], column_labels: Sequence[str], title: str
) -> Image.Image:
    """A grid of images (rows * columns, 3, H, W) in [0, 1], row-major, with labels and a title."""
    grid = make_grid(images, nrow=len(column_labels), padding=PAD, pad_value=1.0)
    grid = Image.fromarray(grid.mul(255).round().byte().permute(1, 2, 0).numpy())
    size = max(12, images.shape[-1] // 10)
    text = font(size)

    def width(label: str) -> int:
        return text.getbbox(label)[2]

    left, top = max(map(width, row_labels)) + 2 * PAD, 3 * size
    canvas = Image.new("RGB", (max(grid.width, width(title)) + left, grid.height + top), "white")
    canvas.paste(grid, (left, top))
    draw = ImageDraw.Draw(canvas)
    draw.text((left, 2), title, fill="black", font=text)
    cell_w, cell_h = images.shape[-1] + PAD, images.shape[-2] + PAD
    for j, label in enumerate(column_labels):
        x = left + PAD // 2 + j * cell_w + (cell_w - width(label)) // 2
        draw.text((x, top - size - PAD), label, fill="black", font=text)
    for i, label in enumerate(row_labels):
        draw.text(
            (PAD, top + PAD + i * cell_h + (cell_h - size) // 2), label, fill="black", font=text
        )
    return canvas


def pick(names: List[str], noises: torch.Tensor, wanted: Sequence[str]) -> torch.Tensor:
    missing = [name for name in wanted if name not in names]
    if missing:
        raise UserError(f"no noise file {missing[0]}.pt (have {', '.join(names)})")
    return torch.stack([noises[names.index(name)] for name in wanted])


def eta_grid(
    model: EpsModel, noises: torch.Tensor, etas: Sequence[float], **sampling
) -> torch.Tensor:
    """Rows = noises, columns = eta; a row reuses the same fresh-noise stream for every eta."""
    columns = [sample_faces(model, noises, eta=eta, **sampling) for eta in etas]
    return torch.stack(columns, dim=1).flatten(0, 1)


def interpolation_grid(
    model: EpsModel, z0: torch.Tensor, z1: torch.Tensor, alphas: Sequence[float], **sampling
) -> torch.Tensor:
    """Row 1: slerp(z0, z1, alpha); row 2: linear interpolation. DDIM with eta = 0."""
    latents = [interpolate(z0, z1, a) for interpolate in (slerp, lerp) for a in alphas]
    return sample_faces(model, torch.stack(latents), eta=0.0, **sampling)


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python3 -m p2.figures", description=__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(dest="figure", required=True)
    for name, help_text in (
        ("eta-grid", "noises x eta"),
        ("interpolation", "slerp and linear rows"),
    ):
        command = commands.add_parser(name, help=help_text)
        command.add_argument("noise_dir", type=Path)
        command.add_argument("unet", type=Path, help="UNet.pt")
        command.add_argument("out", type=Path, help="PNG file to write")
        command.add_argument("--steps", type=int, default=50)
        command.add_argument("--batch-size", type=int, default=10)
        command.add_argument("--seed", type=int, default=0)
        command.add_argument("--device", default="auto")
    commands.choices["eta-grid"].add_argument(
        "--noises", nargs="+", default=["00", "01", "02", "03"]
    )
    commands.choices["eta-grid"].add_argument(
        "--etas", nargs="+", type=float, default=[0, 0.25, 0.5, 0.75, 1]
    )
    commands.choices["interpolation"].add_argument("--pair", nargs=2, default=["00", "01"])
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    device = resolve_device(args.device)
    names, noises = load_noises(args.noise_dir)
    model = load_unet(args.unet).to(device)
    use_exact_fp32()
    sampling = dict(steps=args.steps, batch_size=args.batch_size, seed=args.seed, device=device)
    if args.figure == "eta-grid":
        images = eta_grid(model, pick(names, noises, args.noises), args.etas, **sampling)
        figure = labelled_grid(
            min_max(images),
            [f"{n}.pt" for n in args.noises],
            [f"eta={e:g}" for e in args.etas],
            f"DDIM, {args.steps} steps: rows = noise, columns = eta",
        )
    else:
        z0, z1 = pick(names, noises, args.pair)
        alphas = [i / 10 for i in range(11)]
        images = interpolation_grid(model, z0, z1, alphas, **sampling)
        figure = labelled_grid(
            min_max(images),
            ["slerp", "linear"],
            [f"a={a:g}" for a in alphas],
            f"Interpolating {args.pair[0]}.pt (a=0) to {args.pair[1]}.pt (a=1), DDIM eta=0",
        )
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        figure.save(args.out)
    except (OSError, ValueError) as err:
        raise UserError(f"cannot write {args.out}: {err}") from None
    print(f"wrote {args.out}")


if __name__ == "__main__":
    run_cli(main)
