"""Stand-in digit data in the homework's layout, built offline.

    python3 -m p1.standin OUT_DIR [--mnistm 20000] [--svhn 20000] [--seed 0]

writes ``OUT_DIR/{mnistm,svhn}/{data/NNNNN.png, train.csv}`` (28x28 RGB), the layout of
``hw2_data/digits``.

* MNIST-M style, as Ganin et al. (2015) built MNIST-M: x = |p − d| per channel, d a real
  MNIST digit (``mnist10k.npz``) broadcast over RGB and p a random patch of a colour photo
  (``photos256.npz``), here a square crop of random size resized to 28x28.
* SVHN style, our own design: a digit drawn with one of the system's TrueType fonts in a
  random colour on a two-colour gradient background, random size, offset and tilt,
  neighbouring digits cut by the borders, then blur and sensor noise; drawn at 4x and
  downsampled.
"""
import argparse
import glob
import os
import shutil
from typing import List, Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from p1.data import DATASETS, IMAGE_SIZE
from p1.errors import UserError, run_cli

DEFAULT_STANDIN_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data", "standin"
)
FONT_GLOBS = ("/usr/share/fonts/**/*.ttf", "/usr/share/fonts/**/*.otf")
SUPERSAMPLE = 4


def mnistm_images(digits: np.ndarray, photos: np.ndarray, count: int,
                  rng: np.random.Generator) -> np.ndarray:
    """MNIST-M-style images. digits: uint8 (N, 28, 28); photos: uint8 (P, H, W, 3).
    Returns (indices into digits (count,), images uint8 (count, 28, 28, 3))."""
    order = np.concatenate([rng.permutation(len(digits))
                            for _ in range(-(-count // len(digits)))])[:count]
    images = np.empty((count, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    _, height, width, _ = photos.shape
    for i, digit_index in enumerate(order):
        photo = photos[rng.integers(len(photos))]
        side = int(rng.integers(IMAGE_SIZE, min(height, width, 2 * IMAGE_SIZE + 8) + 1))
        top, left = rng.integers(0, height - side + 1), rng.integers(0, width - side + 1)
        patch = Image.fromarray(photo[top:top + side, left:left + side])
        patch = np.asarray(patch.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR), np.int16)
        images[i] = np.abs(patch - digits[digit_index].astype(np.int16)[:, :, None])
    return order, images


def find_fonts() -> List[str]:
    """TrueType/OpenType font files of the system (may be empty)."""
    found = set()
    for pattern in FONT_GLOBS:
        found.update(glob.glob(pattern, recursive=True))
    return sorted(path for path in found if "Math" not in os.path.basename(path))


def _load_font(path: Optional[str], size: int):
    if path is None:
        try:
            return ImageFont.load_default(size=size)
        except TypeError:  # Pillow < 10.1 has a fixed-size default font only
            return ImageFont.load_default()
    return ImageFont.truetype(path, size)


def _luminance(colour: np.ndarray) -> float:
    return float(colour @ np.array([0.299, 0.587, 0.114]))


def _muted_colour(rng: np.random.Generator) -> np.ndarray:
    """A random colour pulled towards its grey level (street signs are rarely saturated)."""
    colour = rng.integers(0, 256, 3).astype(np.float64)
    saturation = rng.uniform(0.2, 0.9)
    return np.round(_luminance(colour) * (1 - saturation) + colour * saturation)


def _contrasting_colours(rng: np.random.Generator):
    background = _muted_colour(rng)
    while True:
        foreground = _muted_colour(rng)
        if abs(_luminance(foreground) - _luminance(background)) > 70:
            return background, foreground


def svhn_image(digit: int, fonts: Sequence[Optional[str]], rng: np.random.Generator) -> np.ndarray:
    """One SVHN-style 28x28 RGB image (uint8) of ``digit`` centred among neighbours."""
    side = IMAGE_SIZE * SUPERSAMPLE
    background, foreground = _contrasting_colours(rng)
    other = np.clip(background + rng.integers(-60, 61, 3), 0, 255)
    ramp = np.linspace(0, 1, side)[:, None, None]
    canvas = (background * (1 - ramp) + other * ramp).repeat(side, axis=1)
    image = Image.fromarray(canvas.astype(np.uint8))
    if rng.random() < 0.5:
        image = image.transpose(Image.ROTATE_90)

    font = _load_font(fonts[rng.integers(len(fonts))], int(side * rng.uniform(0.55, 0.95)))
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = draw.textbbox((0, 0), str(digit), font=font)
    glyph_width, glyph_height = right - left, bottom - top
    centre_x = side / 2 + rng.uniform(-0.08, 0.08) * side
    centre_y = side / 2 + rng.uniform(-0.08, 0.08) * side
    gap = glyph_width * rng.uniform(1.05, 1.4)
    colour = tuple(int(v) for v in foreground)
    for offset, label in ((-1, rng.integers(10)), (0, digit), (1, rng.integers(10))):
        if offset and rng.random() < 0.3:
            continue
        x = centre_x + offset * gap - glyph_width / 2 - left
        y = centre_y - glyph_height / 2 - top
        draw.text((x, y), str(label), font=font, fill=colour)

    image = image.rotate(rng.uniform(-10, 10), resample=Image.BILINEAR,
                         fillcolor=tuple(int(v) for v in background))
    image = image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.LANCZOS)
    image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.0, 1.0)))
    pixels = np.asarray(image, dtype=np.float64)
    pixels = pixels + rng.normal(0.0, rng.uniform(0.0, 8.0), pixels.shape)
    return np.clip(pixels.round(), 0, 255).astype(np.uint8)


def write_dataset(folder: str, images: np.ndarray, labels: Sequence[int]) -> None:
    """``folder/data/NNNNN.png`` + ``folder/train.csv``. images: uint8 (N, 28, 28, 3)."""
    os.makedirs(os.path.join(folder, "data"))
    with open(os.path.join(folder, "train.csv"), "w") as handle:
        handle.write("image_name,label\n")
        for index, (image, label) in enumerate(zip(images, labels)):
            name = f"{index:05d}.png"
            Image.fromarray(image).save(os.path.join(folder, "data", name))
            handle.write(f"{name},{int(label)}\n")


def _load_npz(path: str, key: str) -> np.ndarray:
    if not os.path.isfile(path):
        raise UserError(f"missing {path} (the stand-in sources, see ../shared/data/standin)")
    try:
        with np.load(path) as archive:
            return archive[key]
    except (OSError, ValueError, KeyError) as err:
        raise UserError(f"cannot read {key!r} from {path}: {err}") from None


def build(out_dir: str, mnistm_count: int, svhn_count: int, seed: int,
          standin_dir: str = DEFAULT_STANDIN_DIR) -> None:
    """Write both stand-in datasets under out_dir; nothing is left behind on failure."""
    targets = [os.path.join(out_dir, name) for name in DATASETS]
    existing = [path for path in targets if os.path.exists(path)]
    if existing:
        raise UserError(f"{existing[0]} already exists; remove it or choose another folder")
    rng = np.random.default_rng(seed)
    staging = os.path.join(out_dir, ".standin-tmp")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        if mnistm_count:
            digits = _load_npz(os.path.join(standin_dir, "mnist10k.npz"), "images")
            labels = _load_npz(os.path.join(standin_dir, "mnist10k.npz"), "labels")
            photos = _load_npz(os.path.join(standin_dir, "photos256.npz"), "images")
            order, images = mnistm_images(digits, photos, mnistm_count, rng)
            write_dataset(os.path.join(staging, "mnistm"), images, labels[order])
        if svhn_count:
            fonts = find_fonts() or [None]
            labels = rng.integers(0, 10, svhn_count)
            images = np.stack([svhn_image(int(d), fonts, rng) for d in labels])
            write_dataset(os.path.join(staging, "svhn"), images, labels)
        for name in DATASETS:
            if os.path.isdir(os.path.join(staging, name)):
                os.replace(os.path.join(staging, name), os.path.join(out_dir, name))
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", help="folder to hold mnistm/ and svhn/ (like hw2_data/digits)")
    parser.add_argument("--mnistm", type=int, default=20000, help="MNIST-M-style images")
    parser.add_argument("--svhn", type=int, default=20000, help="SVHN-style images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--standin-dir", default=DEFAULT_STANDIN_DIR,
                        help="folder with mnist10k.npz and photos256.npz")
    args = parser.parse_args(argv)
    if args.mnistm < 0 or args.svhn < 0:
        raise UserError("image counts must be >= 0")
    os.makedirs(args.out_dir, exist_ok=True)
    build(args.out_dir, args.mnistm, args.svhn, args.seed, args.standin_dir)
    print(f"wrote {args.mnistm} MNIST-M-style and {args.svhn} SVHN-style images to "
          f"{args.out_dir}")


if __name__ == "__main__":
    run_cli(main)
