"""Tiny synthetic data and models for the Problem 1 tests (nothing is read from ../shared)."""
import os

import numpy as np
import torch
from PIL import Image

from p1.model import build_model

TINY_MODEL = {"base_channels": 8, "channel_mults": (1, 2), "blocks_per_level": 1,
              "attention_levels": (1,), "dropout": 0.0}
TINY_SCHEDULE = {"kind": "linear", "num_timesteps": 20}


def write_digit_layout(root, per_dataset=12, seed=0):
    """hw2_data/digits-style folders with random 28x28 images; returns root."""
    rng = np.random.default_rng(seed)
    for dataset in ("mnistm", "svhn"):
        os.makedirs(os.path.join(root, dataset, "data"))
        with open(os.path.join(root, dataset, "train.csv"), "w") as handle:
            handle.write("image_name,label\n")
            for i in range(per_dataset):
                name = f"{i:05d}.png"
                pixels = rng.integers(0, 256, (28, 28, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(os.path.join(root, dataset, "data", name))
                handle.write(f"{name},{i % 10}\n")
    return str(root)


def save_tiny_checkpoint(path, seed=0, **overrides):
    torch.manual_seed(seed)
    config = dict(TINY_MODEL, **overrides)
    model = build_model(config)
    torch.save({"ema": model.state_dict(), "model_config": config,
                "schedule_config": TINY_SCHEDULE, "step": 0}, path)
    return str(path)



def save_tiny_guide_classifier(path, num_timesteps=20, seed=0, kind="linear", num_labels=10,
                               image_size=28, patch_size=1):
    """A random p1.guide_classifier checkpoint (by default for the tiny digit schedule)."""
    from p1.guide_classifier import ARCH, NoisyClassifier

    torch.manual_seed(seed)
    config = {"num_timesteps": num_timesteps, "num_labels": num_labels,
              "image_size": image_size, "width": 8, "patch_size": patch_size}
    torch.save({"arch": ARCH, "state_dict": NoisyClassifier(**config).state_dict(),
                "config": config, "multi_label": num_labels != 10,
                "schedule_config": {"kind": kind, "num_timesteps": num_timesteps}}, path)
    return str(path)
