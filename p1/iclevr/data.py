"""iCLEVR training data in the lab's layout.

    <root>/train.json                {"CLEVR_train_001032_0.png": ["yellow sphere"], ...}
    <root>/iclevr/CLEVR_train_001032_0.png   any size, RGB or RGBA
    <root>/objects.json              optional; the shipped copy is used when absent

The condition of the model is the multi-hot vector over the 24 objects; all zeros is the
"no condition" input of classifier-free guidance (no real image has zero objects).
"""
import os
from typing import Tuple

import numpy as np
import torch

from p1.data import load_image
from p1.errors import UserError
from p1.iclevr.labels import OBJECTS_JSON, load_objects, multi_hot, read_train_labels

IMAGE_SIZE = 64


def objects_path_of(root: str) -> str:
    """root/objects.json if present, else the shipped copy."""
    candidate = os.path.join(root, "objects.json")
    return candidate if os.path.isfile(candidate) else OBJECTS_JSON


def load_iclevr(root: str, size: int = IMAGE_SIZE, limit: int = 0
                ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Images uint8 (N, 3, size, size) (resized with antialiasing) and multi-hot float
    conditions (N, 24) of every train.json entry; ``limit`` > 0 keeps the first entries."""
    if not os.path.isdir(root):
        raise UserError(f"data folder {root} does not exist (expected train.json and iclevr/: "
                        f"the lab's data, or stand-ins from python3 -m p1.iclevr.render {root})")
    objects = load_objects(objects_path_of(root))
    entries = read_train_labels(os.path.join(root, "train.json"), objects)
    if limit > 0:
        entries = entries[:limit]
    folder = os.path.join(root, "iclevr")
    if not os.path.isdir(folder):
        raise UserError(f"missing image folder {folder}")
    pixels = np.stack([load_image(os.path.join(folder, name), size) for name, _ in entries])
    images = torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()
    return images, multi_hot([labels for _, labels in entries], objects)
