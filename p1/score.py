"""Score generated digits the way the homework's ``digit_classifier.py`` does.

    python3 -m p1.score OUT [--mnistm-classifier Classifier.pth] [--svhn-classifier PATH]
    python3 -m p1.score --data hw2_data/digits ...      # the same classifiers on training data
    python3 -m p1.score OUT --json report/results/p1/score.json   # also the results as JSON

Every entry of ``OUT/mnistm`` and ``OUT/svhn`` is read, its label is the first character of
its name, and images go through PIL RGB -> Resize((28, 28)) -> ToTensor -> Normalize(0.5, 0.5)
as in the grader. MNIST-M is judged by the grader's LeNet (``Classifier.pth``, whose tensors
were saved on cuda:0 and are loaded here with ``map_location``). The grader's SVHN judge
(timm ``resnet34_svhn``) is not available offline; SVHN is judged by the classifier given with
``--svhn-classifier`` (default: the stand-in ``p1/svhn_classifier.pt`` when present).
"""
import argparse
import os
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from p1.data import DATASETS, read_label_csv
from p1.devices import check_device, default_device
from p1.errors import UserError, run_cli
from p1.jsonout import check_writable, write_json

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
MNISTM_CLASSIFIER_PATHS = (
    "Classifier.pth",
    os.path.join(REPO, "Classifier.pth"),
    os.path.join(REPO, "hw2_data", "digits", "Classifier.pth"),
    os.path.join(REPO, "..", "shared", "data", "hw2", "digits", "Classifier.pth"),
)
DEFAULT_SVHN_CLASSIFIER = os.path.join(HERE, "svhn_classifier.pt")
TITLES = {"mnistm": "MNIST-M", "svhn": "SVHN"}


class MnistmClassifier(nn.Module):
    """The grader's LeNet (grading.md §2); attribute names match ``Classifier.pth``."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 4 * 4, 128)
        self.fc2 = nn.Linear(128, 64)
        self.fc3 = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, 28, 28) in [-1, 1] -> logits (B, 10)."""
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc3(F.relu(self.fc2(x)))


def _read_state(path: str, what: str) -> dict:
    if not os.path.isfile(path):
        raise UserError(f"no {what} at {path}")
    try:
        state = torch.load(path, map_location="cpu")
    except Exception as err:  # many exception types for a corrupt file
        raise UserError(f"cannot read {what} {path}: {err}") from None
    if not isinstance(state, dict):
        raise UserError(f"{path} is not a {what} checkpoint (not a dict)")
    return state


def load_mnistm_classifier(path: str, device: torch.device) -> nn.Module:
    """The grader LeNet from ``Classifier.pth`` ({"state_dict", "optimizer"}) or a state_dict."""
    state = _read_state(path, "MNIST-M classifier")
    model = MnistmClassifier()
    try:
        model.load_state_dict(state.get("state_dict", state))
    except RuntimeError as err:
        raise UserError(f"{path} does not match the grader LeNet: "
                        f"{str(err).strip().splitlines()[0]}") from None
    return model.to(device).eval()


def load_svhn_classifier(path: str, device: torch.device) -> nn.Module:
    """The stand-in SVHN classifier written by ``p1.svhn_classifier``."""
    from p1.svhn_classifier import build_classifier

    state = _read_state(path, "SVHN classifier")
    if "state_dict" not in state or state.get("arch") != "p1-svhn-cnn":
        raise UserError(f"{path} is not a p1.svhn_classifier checkpoint")
    model = build_classifier()
    try:
        model.load_state_dict(state["state_dict"])
    except RuntimeError as err:
        raise UserError(f"{path} does not match the SVHN classifier: "
                        f"{str(err).strip().splitlines()[0]}") from None
    return model.to(device).eval()


def grader_tensor(path: str) -> torch.Tensor:
    """One image as the grader sees it: (3, 28, 28) in [-1, 1]."""
    try:
        with Image.open(path) as image:
            image = image.convert("RGB").resize((28, 28), Image.BILINEAR)
            pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    except OSError as err:
        raise UserError(f"cannot decode image {path}: {err}") from None
    return pixels.reshape(28, 28, 3).permute(2, 0, 1).float() / 127.5 - 1.0


def folder_items(folder: str) -> List[Tuple[str, int]]:
    """(path, label) for every entry, label = int(first character), as the grader reads."""
    if not os.path.isdir(folder):
        raise UserError(f"missing folder {folder}")
    items = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if not os.path.isfile(path) or not name[:1].isdigit():
            raise UserError(f"{path}: the grader reads every entry and takes the label from "
                            "the first character; this one would break it")
        items.append((path, int(name[0])))
    if not items:
        raise UserError(f"{folder} is empty")
    return items


@torch.no_grad()
def count_correct(classifier: nn.Module, items: List[Tuple[str, int]], device: torch.device,
                  batch_size: int = 256) -> int:
    correct = 0
    for start in range(0, len(items), batch_size):
        batch = items[start:start + batch_size]
        x = torch.stack([grader_tensor(path) for path, _ in batch]).to(device)
        labels = torch.tensor([label for _, label in batch], device=device)
        correct += int((classifier(x).argmax(1) == labels).sum())
    return correct


def first_existing(paths) -> Optional[str]:
    return next((path for path in paths if os.path.isfile(path)), None)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", nargs="?", help="folder with mnistm/ and svhn/ to score")
    parser.add_argument("--data", help="score a training layout (hw2_data/digits) instead")
    parser.add_argument("--limit", type=int, default=0, help="with --data: first N per dataset")
    parser.add_argument("--mnistm-classifier", default=None,
                        help="grader Classifier.pth (default: first found of ./Classifier.pth, "
                             "hw2_data/digits/Classifier.pth, ../shared/data/hw2/digits/)")
    parser.add_argument("--svhn-classifier", default=None,
                        help="stand-in SVHN classifier (default: p1/svhn_classifier.pt)")
    parser.add_argument("--json", default=None, metavar="PATH",
                        help="also write the accuracies, counts and judges as JSON")
    parser.add_argument("--device", default=default_device())
    args = parser.parse_args(argv)
    if (args.out_dir is None) == (args.data is None):
        raise UserError("give either an output folder or --data, not both")
    if args.json:
        check_writable(args.json)
    device = check_device(args.device)

    mnistm_path = args.mnistm_classifier or first_existing(MNISTM_CLASSIFIER_PATHS)
    if mnistm_path is None:
        raise UserError("no Classifier.pth found; pass --mnistm-classifier PATH")
    svhn_path = args.svhn_classifier or first_existing([DEFAULT_SVHN_CLASSIFIER])
    classifiers = {"mnistm": load_mnistm_classifier(mnistm_path, device)}
    if svhn_path is not None:
        classifiers["svhn"] = load_svhn_classifier(svhn_path, device)

    accuracies, results = [], {}
    judges = {"mnistm": f"grader LeNet ({os.path.basename(mnistm_path)})",
              "svhn": f"stand-in SVHN CNN ({os.path.basename(svhn_path or '')})"}
    for dataset in DATASETS:
        if dataset not in classifiers:
            print(f"{TITLES[dataset]} acc = skipped (no classifier; train one with "
                  "`python3 -m p1.svhn_classifier`)")
            continue
        if args.data:
            folder = os.path.join(args.data, dataset)
            rows = read_label_csv(os.path.join(folder, "train.csv"))
            rows = rows[:args.limit] if args.limit > 0 else rows
            items = [(os.path.join(folder, "data", name), label) for name, label in rows]
        else:
            items = folder_items(os.path.join(args.out_dir, dataset))
        correct = count_correct(classifiers[dataset], items, device)
        accuracies.append(correct / len(items))
        results[dataset] = {"accuracy": correct / len(items), "correct": correct,
                            "total": len(items), "judge": judges[dataset]}
        print(f"{TITLES[dataset]} acc = {correct / len(items):.4f} "
              f"(correct/total = {correct}/{len(items)})")
    mean = sum(accuracies) / len(accuracies)
    print(f"acc = {mean:.4f}")
    if args.json:
        write_json(args.json, {"tool": "p1.score", "scored": args.out_dir or args.data,
                               "datasets": results, "mean_accuracy": mean,
                               "device": str(device)})
        print(f"wrote {args.json}")


if __name__ == "__main__":
    run_cli(main)
