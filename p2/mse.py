"""`python3 -m p2.mse OUT_DIR GT_DIR`: the self-check students run against the GT faces.

Mean squared error over all pixels of the 0-255 RGB images, per image pair (matched by
file name), then averaged over the images. The course's bar is MSE < 20. ``--json PATH`` also
writes the per-image and mean values (read by the report).
"""

import argparse
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
from PIL import Image, UnidentifiedImageError

from p2.errors import UserError, run_cli
from p2.jsonout import check_writable, write_json

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}


def read_rgb(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"), dtype=np.float64)
    except (OSError, UnidentifiedImageError):
        raise UserError(f"cannot read image {path}") from None


def image_mse(out_dir: Path, gt_dir: Path) -> Dict[str, float]:
    """MSE of each GT image against the output image of the same name."""
    for folder in (out_dir, gt_dir):
        if not folder.is_dir():
            raise UserError(f"folder not found: {folder}")
    gt_names = sorted(p.name for p in gt_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not gt_names:
        raise UserError(f"no images in {gt_dir}")
    missing = [name for name in gt_names if not (out_dir / name).is_file()]
    if missing:
        raise UserError(f"{out_dir} lacks {len(missing)} of the GT images, e.g. {missing[0]}")
    errors = {}
    for name in gt_names:
        ours, truth = read_rgb(out_dir / name), read_rgb(gt_dir / name)
        if ours.shape != truth.shape:
            raise UserError(
                f"{name}: image size {ours.shape[:2]} differs from the GT's {truth.shape[:2]}"
            )
        errors[name] = float(np.mean((ours - truth) ** 2))
    return errors


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python3 -m p2.mse", description=__doc__.split("\n")[0])
    parser.add_argument("out_dir", type=Path, help="generated images")
    parser.add_argument("gt_dir", type=Path, help="ground-truth images (same file names)")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the results")
    args = parser.parse_args(argv)
    if args.json:
        check_writable(args.json)
    errors = image_mse(args.out_dir, args.gt_dir)
    for name, error in errors.items():
        print(f"{name}\t{error:.4f}")
    mean = float(np.mean(list(errors.values())))
    print(f"mean MSE over {len(errors)} images: {mean:.4f}")
    if args.json:
        write_json(args.json, {"tool": "p2.mse", "out_dir": str(args.out_dir),
                               "gt_dir": str(args.gt_dir), "per_image": errors,
                               "mean": mean, "images": len(errors), "bar": 20})
        print(f"wrote {args.json}")


if __name__ == "__main__":
    run_cli(main)
