"""The homework's digit data and the condition vectors of the digit model.

Layout (``hw2_data/digits``)::

    <root>/mnistm/train.csv   header "image_name,label", rows like "00002.png,4"
    <root>/mnistm/data/00002.png   28x28 RGB
    <root>/svhn/...           same

One model serves both datasets. Its condition is a 12-vector: a one-hot digit (10) then a
one-hot dataset (2); the all-zeros vector means "no condition" (classifier-free guidance).
"""
import csv
import os
from typing import List, Sequence, Tuple

import numpy as np
import torch
from PIL import Image

from p1.errors import UserError

DATASETS = ("mnistm", "svhn")
NUM_DIGITS = 10
COND_DIM = NUM_DIGITS + len(DATASETS)
IMAGE_SIZE = 28


def digit_condition(digits: Sequence[int], datasets: Sequence[int]) -> torch.Tensor:
    """Condition vectors (B, 12) for digits 0..9 and dataset indices into DATASETS."""
    digits = torch.as_tensor(digits, dtype=torch.long)
    datasets = torch.as_tensor(datasets, dtype=torch.long)
    cond = torch.zeros(digits.shape[0], COND_DIM)
    rows = torch.arange(digits.shape[0])
    cond[rows, digits] = 1.0
    cond[rows, NUM_DIGITS + datasets] = 1.0
    return cond


def read_label_csv(path: str) -> List[Tuple[str, int]]:
    """Rows (image_name, label) of a train.csv; raises UserError naming the first bad line."""
    if not os.path.isfile(path):
        raise UserError(f"missing label file {path}")
    rows = []
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or [h.strip() for h in header] != ["image_name", "label"]:
            raise UserError(f"{path}: the first line must be 'image_name,label', got {header}")
        for line_number, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != 2 or not row[1].strip().isdigit() or int(row[1]) >= NUM_DIGITS:
                raise UserError(f"{path}:{line_number}: expected 'name.png,<digit 0-9>', "
                                f"got {','.join(row)!r}")
            rows.append((row[0].strip(), int(row[1])))
    if not rows:
        raise UserError(f"{path} lists no images")
    return rows


def load_image(path: str, size: int = IMAGE_SIZE) -> np.ndarray:
    """An image as uint8 (size, size, 3) RGB; resized if it is another size."""
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            if image.size != (size, size):
                image = image.resize((size, size), Image.BILINEAR)
            return np.asarray(image, dtype=np.uint8)
    except FileNotFoundError:
        raise UserError(f"missing image {path}") from None
    except OSError as err:
        raise UserError(f"cannot decode image {path}: {err}") from None


def load_digits(root: str, datasets: Sequence[str] = DATASETS,
                limit: int = 0) -> Tuple[torch.Tensor, torch.Tensor]:
    """All images of ``root/<dataset>`` as uint8 (N, 3, 28, 28) and conditions (N, 12).
    ``limit`` > 0 keeps the first ``limit`` rows of each csv (for quick runs)."""
    if not os.path.isdir(root):
        raise UserError(f"data folder {root} does not exist (expected mnistm/ and svhn/ with "
                        "train.csv: the course's hw2_data/digits, or stand-ins from "
                        f"python3 -m p1.standin {root})")
    images, conds = [], []
    for name in datasets:
        if name not in DATASETS:
            raise UserError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
        folder = os.path.join(root, name)
        rows = read_label_csv(os.path.join(folder, "train.csv"))
        if limit > 0:
            rows = rows[:limit]
        pixels = np.stack([load_image(os.path.join(folder, "data", file)) for file, _ in rows])
        images.append(torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous())
        labels = [label for _, label in rows]
        conds.append(digit_condition(labels, [DATASETS.index(name)] * len(rows)))
    return torch.cat(images), torch.cat(conds)


def to_model_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1]."""
    return images.float() / 127.5 - 1.0


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255], rounded."""
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def holdout_split(count: int, share: float, generator: torch.Generator
                  ) -> Tuple[torch.Tensor, torch.Tensor]:
    """(held-out indices, training indices) of ``count`` items: a random ``share`` of them
    (at least one) held out, drawn from ``generator``; UserError if none would be left."""
    order = torch.randperm(count, generator=generator)
    held = max(1, int(count * share))
    if count - held < 1:
        raise UserError(f"only {count} images: too few to hold some out")
    return order[:held], order[held:]
