"""Report figures for Problem 1, one command:

    python3 -m p1.figures OUT_DIR [--ckpt p1/ddpm_digits.pt] [--sampler dpm++ --steps 20]

writes ``grid_mnistm.png`` and ``grid_svhn.png`` (10x10: row d = digit d, column j = the
j-th noise, the same images as ``hw2_1.sh``'s ``d_001..d_010``) and ``reverse_process.png``
(the first "0" of each dataset, i.e. the noise of ``0_001.png``, at t = 1000, 800, 600, 400,
200, 0 of ancestral DDPM sampling by default, labelled). Also holds the small PIL line chart
used for the training loss curve.
"""
import argparse
import math
import os
from typing import Dict, List, Sequence

import torch
from PIL import Image, ImageDraw, ImageFont
from torchvision.utils import make_grid

from p1.data import DATASETS, NUM_DIGITS, digit_condition, to_uint8
from p1.devices import check_device
from p1.diffusion import initial_noise
from p1.errors import run_cli
from p1.generate import (
    add_guide_arguments,
    add_sampling_arguments,
    grader_jobs,
    load_checkpoint,
    load_digit_guidance,
    sample_images,
    sample_seed,
    validate_sampling_arguments,
)

REVERSE_TIMES = (1000, 800, 600, 400, 200, 0)
DATASET_TITLES = {"mnistm": "MNIST-M", "svhn": "SVHN"}


def load_font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def save_line_chart(xs: Sequence[float], ys: Sequence[float], path: str, title: str,
                    xlabel: str, width: int = 640, height: int = 400) -> None:
    """A plain line chart (log-scale y when all values are positive) drawn with PIL."""
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    font = load_font(12)
    left, right, top, bottom = 70, width - 20, 30, height - 40
    draw.text((left, 8), title, fill="black", font=font)
    draw.rectangle([left, top, right, bottom], outline="black")
    if xs:
        log_y = min(ys) > 0
        values = [math.log10(y) for y in ys] if log_y else list(ys)
        x_low, x_high = min(xs), max(xs)
        y_low, y_high = min(values), max(values)
        x_span, y_span = (x_high - x_low) or 1.0, (y_high - y_low) or 1.0

        def point(x, v):
            return (left + (x - x_low) / x_span * (right - left),
                    bottom - (v - y_low) / y_span * (bottom - top))

        points = [point(x, v) for x, v in zip(xs, values)]
        if len(points) > 1:
            draw.line(points, fill=(31, 119, 180), width=2)
        else:
            draw.ellipse([points[0][0] - 2, points[0][1] - 2, points[0][0] + 2,
                          points[0][1] + 2], fill=(31, 119, 180))
        for v in (y_low, (y_low + y_high) / 2, y_high):
            label = f"{10 ** v:.4g}" if log_y else f"{v:.4g}"
            y = point(x_low, v)[1]
            draw.line([left - 4, y, left, y], fill="black")
            draw.text((4, y - 6), label, fill="black", font=font)
        for x in (x_low, (x_low + x_high) / 2, x_high):
            px = point(x, y_low)[0]
            draw.line([px, bottom, px, bottom + 4], fill="black")
            draw.text((px - 15, bottom + 6), f"{x:.0f}", fill="black", font=font)
    draw.text(((left + right) // 2 - 15, height - 16), xlabel, fill="black", font=font)
    image.save(path)


def pick_states(states: Dict[int, torch.Tensor], times: Sequence[int] = REVERSE_TIMES
                ) -> List[torch.Tensor]:
    """For paper-style times t (1000 = pure noise, 0 = clean), the recorded states keyed by
    0-based timestep (t − 1; −1 = clean) closest at or below each time."""
    picked = []
    for time_point in times:
        candidates = [key for key in states if key <= time_point - 1]
        picked.append(states[max(candidates)])
    return picked


def labelled_strip(rows: Sequence[Sequence[torch.Tensor]], row_titles: Sequence[str],
                   column_titles: Sequence[str], scale: int = 4) -> Image.Image:
    """A labelled table of uint8 images (C, H, W), upscaled ``scale`` times (nearest)."""
    height, width = rows[0][0].shape[1:]
    cell_w, cell_h = width * scale, height * scale
    margin_left, margin_top, gap = 70, 22, 4
    canvas = Image.new("RGB", (margin_left + len(column_titles) * (cell_w + gap),
                               margin_top + len(rows) * (cell_h + gap)), "white")
    draw = ImageDraw.Draw(canvas)
    font = load_font(14)
    for j, title in enumerate(column_titles):
        draw.text((margin_left + j * (cell_w + gap) + 8, 4), title, fill="black", font=font)
    for i, (row, title) in enumerate(zip(rows, row_titles)):
        y = margin_top + i * (cell_h + gap)
        draw.text((4, y + cell_h // 2 - 7), title, fill="black", font=font)
        for j, image in enumerate(row):
            tile = Image.fromarray(image.permute(1, 2, 0).numpy()).resize((cell_w, cell_h),
                                                                          Image.NEAREST)
            canvas.paste(tile, (margin_left + j * (cell_w + gap), y))
    return canvas


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", help="folder for the PNG figures")
    add_sampling_arguments(parser)
    parser.add_argument("--reverse-sampler", choices=("ddpm", "dpm++", "ddim"), default="ddpm",
                        help="sampler shown in the reverse-process figure")
    add_guide_arguments(parser)
    args = parser.parse_args(argv)
    validate_sampling_arguments(args)
    device = check_device(args.device)
    model, schedule, _ = load_checkpoint(args.ckpt, device)
    validate_sampling_arguments(args, schedule.num_timesteps)
    extra_guidance = load_digit_guidance(args, schedule, device)
    os.makedirs(args.out_dir, exist_ok=True)

    index_of = {job: i for i, job in enumerate(grader_jobs(50))}
    for k, dataset in enumerate(DATASETS):
        jobs = [(dataset, digit, number) for digit in range(NUM_DIGITS) for number in range(1, 11)]
        cond = digit_condition([d for _, d, _ in jobs], [k] * len(jobs))
        seeds = [sample_seed(args.seed, index_of[job]) for job in jobs]
        images = sample_images(model, schedule, cond, seeds, args.sampler, args.steps,
                               args.guidance, args.batch_size, args.precision,
                               args.model_chunk, extra_guidance=extra_guidance)
        grid = make_grid(images, nrow=10, padding=2, pad_value=255)
        Image.fromarray(grid.permute(1, 2, 0).numpy()).save(
            os.path.join(args.out_dir, f"grid_{dataset}.png"))

    rows = []
    for k, dataset in enumerate(DATASETS):
        seed = sample_seed(args.seed, index_of[(dataset, 0, 1)])
        states = {}

        def record(first, t_next, x, states=states):
            states[t_next] = to_uint8(x[0]).cpu()

        noise = initial_noise([torch.Generator().manual_seed(seed)], (3, model.image_size,
                                                                      model.image_size))
        states[schedule.num_timesteps - 1] = to_uint8(noise[0])
        sample_images(model, schedule, digit_condition([0], [k]), [seed], args.reverse_sampler,
                      args.steps, args.guidance, 1, args.precision, model_chunk=2,
                      callback=record, extra_guidance=extra_guidance)
        rows.append(pick_states(states))
    strip = labelled_strip(rows, [DATASET_TITLES[d] for d in DATASETS],
                           [f"t={t}" for t in REVERSE_TIMES])
    strip.save(os.path.join(args.out_dir, "reverse_process.png"))
    print(f"wrote grid_mnistm.png, grid_svhn.png and reverse_process.png to {args.out_dir}")


if __name__ == "__main__":
    run_cli(main)
