"""The noise-aware guide classifier of ``p1.guide_classifier`` for iCLEVR (Lab 6):

    python3 -m p1.iclevr.guide_classifier --data iclevr_data --out runs/iclevr_guide.pt

24 independent sigmoids on x_t and t (the set of objects), trained on the renders noised along
the cosine schedule of the iCLEVR DDPM; held-out accuracy by the lab's top-k rule.
"""
from typing import Optional

import torch

from p1.data import to_model_range
from p1.diffusion import Schedule
from p1.errors import UserError, run_cli
from p1.guide_classifier import (
    GuideTask,
    NoisyClassifier,
    load_guide_classifier,
    parse_args,
    train_guide_classifier,
)
from p1.iclevr.data import load_iclevr
from p1.iclevr.evaluator import accuracy
from p1.iclevr.labels import NUM_OBJECTS
from p1.iclevr.train import MODEL_CONFIG


def load_iclevr_targets(data: str, limit: int):
    """(images in model range (N, 3, 64, 64), multi-hot objects (N, 24))."""
    images, conds = load_iclevr(data, limit=limit)
    return to_model_range(images), conds


def lab_accuracy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """The lab's top-k accuracy (k = number of true objects) of the sigmoids."""
    return accuracy(torch.sigmoid(logits), targets)


ICLEVR = GuideTask("iclevr", NUM_OBJECTS, True, MODEL_CONFIG["image_size"],
                   MODEL_CONFIG["patch_size"], "cosine", load_iclevr_targets, lab_accuracy)


def load_iclevr_guide(path: str, device: torch.device,
                      schedule: Optional[Schedule]) -> NoisyClassifier:
    """A noise-aware iCLEVR classifier from ``p1.guide_classifier`` (frozen, eval mode), trained
    for ``schedule`` (None: any, for use at t = 0); UserError for any other file."""
    guide = load_guide_classifier(path, device, schedule)
    if not guide.multi_label or guide.num_labels != NUM_OBJECTS:
        raise UserError(f"{path} is not an iCLEVR guide classifier (train one with "
                        "python3 -m p1.iclevr.guide_classifier)")
    return guide


def main(argv=None) -> None:
    args = parse_args(argv, description=__doc__.split("\n\n")[0], data="iclevr_data",
                      out="runs/iclevr_guide.pt")
    train_guide_classifier(args, ICLEVR)


if __name__ == "__main__":
    run_cli(main)
