"""DDPM vs GAN on Lab 6: one JSON and one figure from the two models' result folders.

    python3 -m p1.iclevr OUT/ddpm --evaluator E --cross-check JUDGE_B
    python3 -m p1.iclevr OUT/gan --model gan --evaluator E --cross-check JUDGE_B
    python3 -m p1.iclevr.compare OUT/ddpm OUT/gan --json ddpm_vs_gan.json --figure ddpm_vs_gan.png

For each model: the accuracy of every test file under the evaluator and the second judge
(``cross_check``, when the folder was made with ``--cross-check``), seconds to generate each
file's images, the parameters of what generates (the DDPM's UNet, the GAN's generator), the
training seconds the checkpoint records (the GAN's ``gan.pt``; the DDPM's files do not record
it: null) and the settings. The figure stacks the two ``test_grid.png`` with a title strip each.
"""
import argparse
import json
import os
from typing import Dict

import torch
from PIL import Image, ImageDraw

from p1.errors import UserError, run_cli
from p1.figures import load_font
from p1.iclevr.gan import checkpoint_kind
from p1.jsonout import check_writable, write_json

LABEL_HEIGHT = 24


def read_results(folder: str) -> dict:
    """accuracy.json of a ``python3 -m p1.iclevr`` folder, checked."""
    path = os.path.join(folder, "accuracy.json")
    try:
        with open(path) as handle:
            results = json.load(handle)
    except FileNotFoundError:
        raise UserError(f"no {path}: run python3 -m p1.iclevr {folder} --evaluator ...") from None
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read {path}: {err}") from None
    if not isinstance(results, dict) or not isinstance(results.get("settings"), dict):
        raise UserError(f"{path} is not an accuracy.json of python3 -m p1.iclevr")
    return results


def describe(folder: str) -> dict:
    """One model's row: accuracies, judge B, seconds, parameters, training seconds, settings."""
    results = read_results(folder)
    settings = results.pop("settings")
    path = settings.get("ckpt")
    try:
        checkpoint = torch.load(path, map_location="cpu")
    except Exception as err:
        raise UserError(f"cannot read the checkpoint {path} named in {folder}: {err}") from None
    kind = checkpoint_kind(checkpoint)
    weights = {"gan": checkpoint.get("generator"), "ddpm": checkpoint.get("ema")}.get(kind)
    if weights is None:
        raise UserError(f"{path} (named in {folder}) is neither a DDPM nor a GAN checkpoint")
    parameters = sum(tensor.numel() for key, tensor in weights.items()
                     if tensor.is_floating_point() and not key.endswith(
                         ("running_mean", "running_var", "inv_freq")))
    files = {stem: {"accuracy": row["accuracy"], "judge_b": row.get("cross_check"),
                    "seconds": row["seconds"], "images": row["images"], "labels": row["labels"]}
             for stem, row in results.items()}
    return {"model": kind, "files": files, "parameters": parameters,
            "train_seconds": checkpoint.get("train_seconds"), "step": checkpoint.get("step"),
            "settings": settings}


def stacked_figure(panels: Dict[str, str], path: str) -> None:
    """The grids one under the other, each under a title strip."""
    images = {title: Image.open(grid).convert("RGB") for title, grid in panels.items()}
    width = max(image.width for image in images.values())
    height = sum(image.height + LABEL_HEIGHT for image in images.values())
    figure = Image.new("RGB", (width, height), "white")
    draw, font, top = ImageDraw.Draw(figure), load_font(14), 0
    for title, image in images.items():
        draw.text((4, top + 4), title, fill="black", font=font)
        figure.paste(image, (0, top + LABEL_HEIGHT))
        top += image.height + LABEL_HEIGHT
    temporary = path + ".tmp.png"
    figure.save(temporary)
    os.replace(temporary, path)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ddpm", help="result folder of python3 -m p1.iclevr (the DDPM)")
    parser.add_argument("gan", help="result folder of python3 -m p1.iclevr --model gan")
    parser.add_argument("--json", required=True, help="where to write the comparison")
    parser.add_argument("--figure", default=None, help="PNG: test.json's grid of each model")
    parser.add_argument("--grid", default="test", help="which file's grid the figure shows")
    args = parser.parse_args(argv)
    check_writable(args.json)
    rows = {"ddpm": describe(args.ddpm), "gan": describe(args.gan)}
    for expected, row in rows.items():
        if row["model"] != expected:
            raise UserError(f"the {expected} folder holds results of a {row['model']}")
    if set(rows["ddpm"]["files"]) != set(rows["gan"]["files"]):
        raise UserError("the two folders were made from different test files")
    if args.figure:
        grids = {f"{name.upper()}, {args.grid}.json": os.path.join(folder, f"{args.grid}_grid.png")
                 for name, folder in (("ddpm", args.ddpm), ("gan", args.gan))}
        for grid in grids.values():
            if not os.path.isfile(grid):
                raise UserError(f"missing {grid}")
        stacked_figure(grids, args.figure)
    write_json(args.json, rows)
    for name, row in rows.items():
        scores = ", ".join(f"{stem} {f['accuracy']:.4f}" for stem, f in row["files"].items())
        print(f"{name}: {scores} ({row['parameters']:,} parameters)")
    print(f"wrote {args.json}" + (f" and {args.figure}" if args.figure else ""))


if __name__ == "__main__":
    run_cli(main)
