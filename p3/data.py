"""Training data for textual inversion: a folder of concept images and prompt templates.

Each training example is one image of the folder, augmented (random square crop, horizontal
flip), resized to the model's resolution and scaled to [-1, 1], with a caption made from a
template ("a photo of a {}" for objects, "a painting in the style of {}" for styles) filled
with the placeholder token. All randomness comes from the generator passed in.
"""
from pathlib import Path
from typing import List, Sequence, Tuple

import torch
from PIL import Image, UnidentifiedImageError
from torchvision.transforms import functional as TF

from .errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")

OBJECT_TEMPLATES = (
    "a photo of a {}",
    "a photo of the {}",
    "a close-up photo of a {}",
    "a cropped photo of the {}",
    "a bright photo of a {}",
    "a good photo of the {}",
    "a photo of one {}",
    "a photo of my {}",
    "a photo of a cute {}",
    "a rendition of the {}",
    "a picture of a {}",
    "an image of the {}",
)
STYLE_TEMPLATES = (
    "a painting in the style of {}",
    "an illustration in the style of {}",
    "a rendering in the style of {}",
    "a picture in the style of {}",
    "a cropped painting in the style of {}",
    "a close-up painting in the style of {}",
    "a good painting in the style of {}",
    "a bright painting in the style of {}",
    "an artwork in the style of {}",
    "a digital painting in the style of {}",
    "a drawing in the style of {}",
    "art by {}",
)
TEMPLATES = {"object": OBJECT_TEMPLATES, "style": STYLE_TEMPLATES}


def load_images(folder) -> List[Image.Image]:
    """Every image file of `folder` (by suffix, name order) as RGB. Other files are ignored;
    an image file that does not decode, or a folder without images, is a UserError."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"image folder not found: {folder}")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise UserError(f"{folder} holds no images (expected {', '.join(IMAGE_SUFFIXES)} files)")
    images = []
    for path in paths:
        try:
            with Image.open(path) as image:
                images.append(image.convert("RGB"))
        except (UnidentifiedImageError, OSError) as err:
            raise UserError(f"{path} is not a readable image: {err}") from None
    return images


def random_square_crop(image: Image.Image, min_scale: float, generator: torch.Generator):
    """A square of side s·min(W, H), s uniform in [min_scale, 1], at a uniform position.
    min_scale = 1 keeps the largest square, placed uniformly along the longer side."""
    width, height = image.size
    u = torch.rand(3, generator=generator, dtype=torch.float64).tolist()
    side = round(min(width, height) * (min_scale + (1.0 - min_scale) * u[0]))
    left = round((width - side) * u[1])
    top = round((height - side) * u[2])
    return image.crop((left, top, left + side, top + side))


def make_example(image, size, min_crop_scale, flip_p, generator) -> torch.Tensor:
    """One augmented image (3, size, size) in [-1, 1]."""
    crop = random_square_crop(image, min_crop_scale, generator)
    x = TF.to_tensor(crop.resize((size, size), Image.BICUBIC)) * 2 - 1
    if torch.rand((), generator=generator).item() < flip_p:
        x = x.flip(-1)
    return x


def sample_batch(
    images: Sequence[Image.Image],
    templates: Sequence[str],
    token: str,
    batch_size: int,
    size: int,
    min_crop_scale: float,
    flip_p: float,
    generator: torch.Generator,
) -> Tuple[torch.Tensor, List[str]]:
    """Random images (B, 3, size, size) in [-1, 1] and their captions."""
    picks = torch.randint(len(images), (batch_size,), generator=generator).tolist()
    captions = torch.randint(len(templates), (batch_size,), generator=generator).tolist()
    pixels = torch.stack([make_example(images[i], size, min_crop_scale, flip_p, generator)
                          for i in picks])
    return pixels, [templates[j].format(token) for j in captions]

