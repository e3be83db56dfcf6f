"""Train the stand-in iCLEVR evaluator (the lab's checkpoint.pth is not available offline).

    python3 -m p1.iclevr.train_evaluator --data iclevr_data
        --out runs/iclevr_evaluator/checkpoint.pth [--epochs 4] [--batch-size 64] [--lr 1e-3]
        [--held-out 0.1] [--seed 0] [--threads 1] [--device cpu] [--bf16] [--init CKPT]

The lab's network (ResNet18, head Linear(512, 24) + Sigmoid) trained from scratch on the
images of DATA/train.json (rendered by the stand-in renderer, or the real ones), inputs in
[-1, 1] as the lab's, BCE on the 24 independent outputs, AdamW with a cosine learning rate,
random horizontal flips and brightness changes (both keep the labels: colours are labels, so
hues are never touched). A seeded share of the images is held out and scored with the lab's
accuracy after each epoch. The checkpoint is in the lab's format (``{"model": state dict}``),
so ``p1.iclevr.evaluator.load_evaluator`` reads it; the report goes to ``OUT.json``.
"""
import argparse
import json
import math
import os
import time
from typing import Callable, Dict, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from p1.data import to_model_range
from p1.devices import check_device, default_device
from p1.errors import UserError, run_cli
from p1.iclevr.data import load_iclevr
from p1.iclevr.evaluator import (
    NUM_CLASSES,
    build_resnet18_evaluator,
    count_hits,
    load_evaluator,
    resnet18_logits,
    save_lab_checkpoint,
)


def augment(x: torch.Tensor, generator: torch.Generator, brightness: float = 0.1) -> torch.Tensor:
    """Random horizontal flip and brightness scale in [1 - b, 1 + b] per image, x in [-1, 1].

    Scaling all three channels by one factor keeps every hue (the object colours are labels).
    """
    n = x.shape[0]
    flip = torch.rand(n, generator=generator) < 0.5
    x = torch.where(flip.view(n, 1, 1, 1).to(x.device), x.flip(-1), x)
    scale = 1 + brightness * (2 * torch.rand(n, 1, 1, 1, generator=generator) - 1)
    return (((x + 1) / 2) * scale.to(x.device)).clamp(0, 1) * 2 - 1


@torch.no_grad()
def held_out_hits(network: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                  device: torch.device, batch_size: int = 256) -> Tuple[int, int]:
    """The lab's (hits, true labels) of uint8 images (N, 3, 64, 64) in eval mode."""
    network.eval()
    hits = total = 0
    for start in range(0, len(images), batch_size):
        probs = network(to_model_range(images[start:start + batch_size]).to(device))
        batch_hits, batch_total = count_hits(probs, labels[start:start + batch_size])
        hits, total = hits + batch_hits, total + batch_total
    return hits, total


def split(n: int, held_out: float, generator: torch.Generator
          ) -> Tuple[torch.Tensor, torch.Tensor]:
    """(train indices, held-out indices): a seeded permutation, the first share held out."""
    held = max(1, int(round(n * held_out)))
    if n - held < 1:
        raise UserError(f"only {n} images: too few to hold {held_out:g} of them out")
    order = torch.randperm(n, generator=generator)
    return order[held:], order[:held]


def train_evaluator(images: torch.Tensor, labels: torch.Tensor, epochs: int = 4,
                    batch_size: int = 64, lr: float = 1e-3, held_out: float = 0.1,
                    seed: int = 0, device: Union[str, torch.device] = "cpu",
                    bf16: bool = False, initial_state: Optional[Dict] = None,
                    log: Callable[[str], None] = print) -> Tuple[nn.Module, Dict]:
    """Train the lab's ResNet18 on uint8 images (N, 3, 64, 64) with multi-hot labels (N, 24).

    ``bf16`` runs the training forward passes under bfloat16 autocast (weights stay float32;
    about 2.7x faster on a CPU with AVX512-BF16 under torch 2, much slower under torch 1.11).
    ``initial_state`` (a state dict of the same network) continues from earlier weights: a
    further cosine cycle (a warm restart) instead of training from scratch.

    Returns (network on the CPU, report): the report holds the held-out accuracy (the lab's
    micro accuracy), the split sizes, the per-epoch history, seconds (all, and training steps
    only) and training images/s.
    """
    if images.dim() != 4 or images.shape[1] != 3 or labels.shape != (len(images), NUM_CLASSES):
        raise UserError(f"expected images (N, 3, H, W) and labels (N, {NUM_CLASSES}), got "
                        f"{tuple(images.shape)} and {tuple(labels.shape)}")
    device = torch.device(device)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    train_idx, held_idx = split(len(images), held_out, generator)
    labels = labels.float()
    network = build_resnet18_evaluator()
    if initial_state is not None:
        network.load_state_dict(initial_state)
    network = network.to(device)
    optimizer = torch.optim.AdamW(network.parameters(), lr=lr, weight_decay=1e-4)
    # the last incomplete batch is dropped: a batch of one breaks BatchNorm on small inputs
    steps_per_epoch = max(1, len(train_idx) // batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * steps_per_epoch)
    history = []
    start = time.time()
    train_seconds = 0.0
    for epoch in range(epochs):
        epoch_start = time.time()
        network.train()
        shuffled = train_idx[torch.randperm(len(train_idx), generator=generator)]
        loss_sum, seen = 0.0, 0
        for i in range(steps_per_epoch):
            batch = shuffled[i * batch_size:(i + 1) * batch_size]
            x = augment(to_model_range(images[batch]), generator).to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                logits = resnet18_logits(network, x)
            loss = F.binary_cross_entropy_with_logits(logits.float(), labels[batch].to(device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            loss_sum, seen = loss_sum + loss.item() * len(batch), seen + len(batch)
        train_seconds += time.time() - epoch_start
        hits, total = held_out_hits(network, images[held_idx], labels[held_idx], device)
        history.append({"epoch": epoch + 1, "train_loss": loss_sum / seen,
                        "held_out_accuracy": hits / total, "held_out_hits": hits,
                        "seconds": time.time() - start})
        log(f"epoch {epoch + 1}/{epochs}: train loss {history[-1]['train_loss']:.4f}, held-out "
            f"accuracy {hits / total:.4f} ({hits}/{total}), {time.time() - start:.0f} s")
    seconds = time.time() - start
    report = {"held_out_accuracy": history[-1]["held_out_accuracy"],
              "held_out_hits": history[-1]["held_out_hits"], "held_out_labels": total,
              "train_images": len(train_idx), "held_out_images": len(held_idx),
              "epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed,
              "device": str(device), "bf16": bf16, "seconds": seconds,
              "train_seconds": train_seconds,
              "images_per_second": epochs * seen / train_seconds, "history": history}
    return network.cpu().eval(), report


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="iclevr_data",
                        help="folder holding train.json and iclevr/<file>.png")
    parser.add_argument("--out", default=os.path.join("runs", "iclevr_evaluator",
                                                      "checkpoint.pth"))
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--held-out", type=float, default=0.1, help="held-out share")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0 = default)")
    parser.add_argument("--device", default=default_device())
    parser.add_argument("--bf16", action="store_true",
                        help="bfloat16 autocast for training (fast on torch 2 with AVX512-BF16 "
                             "or a recent GPU)")
    parser.add_argument("--init", help="lab-format checkpoint to continue from (a further "
                                       "cosine cycle); keep its --seed and --held-out so the "
                                       "held-out images stay unseen")
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.batch_size < 1:
        raise UserError("--epochs and --batch-size must be >= 1")
    if not (args.lr > 0 and math.isfinite(args.lr)):
        raise UserError(f"--lr must be a positive number, not {args.lr}")
    if not 0 < args.held_out < 1:
        raise UserError(f"--held-out must be in (0, 1), not {args.held_out}")
    if args.threads < 0:
        raise UserError("--threads must be >= 0")
    if not os.path.isdir(args.data):
        raise UserError(f"no data folder {args.data}")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = check_device(args.device)
    initial_state = None
    if args.init is not None:
        initial_state = load_evaluator(args.init, "cpu").resnet18.state_dict()
    images, labels = load_iclevr(args.data)
    network, report = train_evaluator(images, labels, args.epochs, args.batch_size, args.lr,
                                      args.held_out, args.seed, device, args.bf16, initial_state)
    report.update(data=args.data, init=args.init)
    save_lab_checkpoint(network, args.out)
    temporary = args.out + ".json.tmp"
    with open(temporary, "w") as file:
        json.dump(report, file, indent=2)
    os.replace(temporary, args.out + ".json")
    print(f"wrote {args.out} (held-out accuracy {report['held_out_accuracy']:.4f} on "
          f"{report['held_out_images']} images, {report['images_per_second']:.1f} images/s)")


if __name__ == "__main__":
    run_cli(main)
