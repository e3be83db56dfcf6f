"""Train the stand-in SVHN judge (the grader's resnet34_svhn weights are not available offline).

    python3 -m p1.svhn_classifier --data hw2_data/digits --out p1/svhn_classifier.pt
                                  [--epochs 4] [--holdout 0.1]

A small CNN on 28x28 inputs normalised exactly as the grader does ([-1, 1]); trained on all
but the held-out share of ``DATA/svhn``, with random shifts of up to 2 pixels; its held-out
accuracy is printed and stored in the checkpoint.
"""
import argparse
import os
import time

import torch
import torch.nn.functional as F
from torch import nn

from p1.data import DATASETS, holdout_split, load_digits, to_model_range
from p1.devices import check_device, default_device
from p1.errors import UserError, run_cli


def build_classifier() -> nn.Module:
    """(B, 3, 28, 28) in [-1, 1] -> logits (B, 10); about 0.4M parameters."""
    def conv(in_ch, out_ch):
        return [nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.BatchNorm2d(out_ch), nn.ReLU()]

    return nn.Sequential(
        *conv(3, 32), *conv(32, 32), nn.MaxPool2d(2),
        *conv(32, 64), *conv(64, 64), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(0.3), nn.Linear(64 * 7 * 7, 128), nn.ReLU(),
        nn.Linear(128, 10),
    )


def random_shift(x: torch.Tensor, generator: torch.Generator, pad: int = 2) -> torch.Tensor:
    """Shift each image by up to ``pad`` pixels (edge padding, then a random crop)."""
    size = x.shape[-1]
    padded = F.pad(x, [pad] * 4, mode="replicate")
    offsets = torch.randint(0, 2 * pad + 1, (x.shape[0], 2), generator=generator)
    return torch.stack([p[:, dy:dy + size, dx:dx + size]
                        for p, (dy, dx) in zip(padded, offsets.tolist())])


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, device) -> float:
    model.eval()
    correct = 0
    for start in range(0, len(x), 512):
        logits = model(x[start:start + 512].to(device))
        correct += int((logits.argmax(1).cpu() == labels[start:start + 512]).sum())
    return correct / max(1, len(x))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="hw2_data/digits", help="folder holding svhn/")
    parser.add_argument("--out", default=os.path.join("p1", "svhn_classifier.pt"))
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--holdout", type=float, default=0.1, help="held-out share")
    parser.add_argument("--limit", type=int, default=0, help="first N images only (0 = all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0 = default)")
    parser.add_argument("--device", default=default_device())
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.batch_size < 1 or not 0 < args.holdout < 1:
        raise UserError("--epochs and --batch-size must be >= 1, --holdout in (0, 1)")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = check_device(args.device)

    images, conds = load_digits(args.data, datasets=[DATASETS[1]], limit=args.limit)
    x, labels = to_model_range(images), conds[:, :10].argmax(1)
    generator = torch.Generator().manual_seed(args.seed)
    torch.manual_seed(args.seed)
    test_idx, train_idx = holdout_split(len(x), args.holdout, generator)

    model = build_classifier().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    steps_per_epoch = -(-len(train_idx) // args.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, args.lr,
                                                    total_steps=args.epochs * steps_per_epoch)
    start = time.time()
    for epoch in range(args.epochs):
        model.train()
        shuffled = train_idx[torch.randperm(len(train_idx), generator=generator)]
        for i in range(steps_per_epoch):
            batch = shuffled[i * args.batch_size:(i + 1) * args.batch_size]
            inputs = random_shift(x[batch], generator).to(device)
            loss = F.cross_entropy(model(inputs), labels[batch].to(device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
        held_acc = accuracy(model, x[test_idx], labels[test_idx], device)
        print(f"epoch {epoch + 1}/{args.epochs}: loss {loss.item():.4f}, held-out accuracy "
              f"{held_acc:.4f} ({time.time() - start:.0f} s)")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    temporary = args.out + ".tmp"
    torch.save({"arch": "p1-svhn-cnn", "state_dict": model.cpu().state_dict(),
                "heldout_accuracy": held_acc, "heldout_images": len(test_idx),
                "train_images": len(train_idx), "epochs": args.epochs, "data": args.data},
               temporary)
    os.replace(temporary, args.out)
    print(f"wrote {args.out} (held-out accuracy {held_acc:.4f} on {len(test_idx)} images)")


if __name__ == "__main__":
    run_cli(main)
