"""A noise-aware classifier p(y | x_t, t) for classifier guidance (Dhariwal & Nichol 2021),
trained on the diffusion model's own training images:

    python3 -m p1.guide_classifier --data hw2_data/digits --out p1/guide_classifier.pt
    python3 -m p1.iclevr.guide_classifier --data iclevr_data --out runs/iclevr_guide.pt  # Lab 6

Each training image is noised to a random timestep of the diffusion schedule (q(x_t | x_0)),
so the gradient ∇_{x_t} log p(y | x_t) is meaningful along the whole sampling path. For the
digits y is the digit (softmax over 10); for iCLEVR it is the set of objects (24 independent
sigmoids). It is a different network from the judges (the grader's LeNet, the stand-in SVHN
classifier, the lab's ResNet18 evaluator) and never sees them, so the accuracy they measure on
guided samples stays honest.
"""
import argparse
import os
import time
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from p1.data import NUM_DIGITS, holdout_split, load_digits, to_model_range
from p1.devices import check_device, default_device
from p1.diffusion import (
    EpsFn,
    Schedule,
    fixed_shape,
    make_schedule,
    noisy_classifier_guided,
    q_sample,
)
from p1.errors import UserError, run_cli

ARCH = "p1-noisy-classifier"
DEFAULT_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "guide_classifier.pt")


def top1_accuracy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Share of rows whose highest logit is the target class (N,)."""
    return (logits.argmax(1) == targets).float().mean().item()


@dataclass
class GuideTask:
    """What the classifier of one dataset needs: its labels, the image and schedule settings
    of that dataset's diffusion model (see p1.train), its images and its accuracy rule."""
    name: str
    num_labels: int
    multi_label: bool  # sigmoids over a label set instead of a softmax
    image_size: int
    patch_size: int
    schedule: str
    load: Callable[[str, int], Tuple[torch.Tensor, torch.Tensor]]  # (data, limit) -> x, y
    score: Callable[[torch.Tensor, torch.Tensor], float]  # (logits, targets) -> accuracy


def load_digit_targets(data: str, limit: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """(images in model range (N, 3, 28, 28), digits (N,))."""
    images, conds = load_digits(data, limit=limit)
    return to_model_range(images), conds[:, :NUM_DIGITS].argmax(1)


DIGITS = GuideTask("digits", NUM_DIGITS, False, 28, 1, "linear", load_digit_targets,
                   top1_accuracy)


class NoisyClassifier(nn.Module):
    """(x_t (B, 3, S, S) in model range, t (B,) timesteps) -> logits (B, num_labels).

    The timestep enters as one more input plane holding t / T. ``patch_size`` p folds p x p
    pixel patches into channels first (as the iCLEVR UNet does); average pools then halve the
    side down to at most 8 (28 -> 14 -> 7, 64/2 = 32 -> 16 -> 8) before a two-layer head."""

    def __init__(self, num_timesteps: int = 1000, num_labels: int = NUM_DIGITS,
                 image_size: int = 28, width: int = 32, patch_size: int = 1,
                 multi_label: bool = False):
        super().__init__()
        self.num_timesteps = num_timesteps
        self.num_labels = num_labels
        self.multi_label = multi_label  # sigmoids over a label set instead of a softmax
        self.patch_size = patch_size

        def conv(in_ch, out_ch):
            return [nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.GroupNorm(8, out_ch), nn.SiLU()]

        side = image_size // patch_size
        layers = conv(3 * patch_size ** 2 + 1, width) + conv(width, width)
        channels = width
        while side > 8:
            side //= 2
            layers.append(nn.AvgPool2d(2))
            layers += conv(channels, 2 * width)
            channels = 2 * width
            if side > 8:
                layers += conv(channels, channels)
        self.net = nn.Sequential(*layers, nn.Flatten(), nn.Linear(channels * side * side, 128),
                                 nn.SiLU(), nn.Linear(128, num_labels))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.patch_size > 1:
            x = F.pixel_unshuffle(x, self.patch_size)
        plane = (t.to(x.dtype) / self.num_timesteps)[:, None, None, None]
        return self.net(torch.cat([x, plane.expand(-1, 1, *x.shape[2:])], dim=1))


def log_likelihood(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(B,) log p(y | x): targets (B,) class indices (softmax) or (B, L) multi-hot (sigmoids,
    Σ_c y_c log p_c + (1 − y_c) log(1 − p_c), from the logits for finite gradients)."""
    if targets.dim() == 1:
        return F.log_softmax(logits, dim=1)[torch.arange(len(logits)), targets]
    targets = targets.to(logits.dtype)
    return (targets * F.logsigmoid(logits) + (1 - targets) * F.logsigmoid(-logits)).sum(1)


def guidance_gradient(classifier: nn.Module, targets: torch.Tensor, chunk: int = 0
                      ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """g(x_t, t) = ∇_{x_t} log p(targets | x_t, t), float32; targets as in log_likelihood.
    ``chunk`` > 0 runs the classifier on chunks of exactly that many rows (``fixed_shape``),
    so that a row's gradient, like the model's output, does not depend on the batch size."""
    def rows_gradient(x: torch.Tensor, t: torch.Tensor, rows_targets: torch.Tensor
                      ) -> torch.Tensor:
        with torch.enable_grad():
            x = x.detach().float().requires_grad_(True)
            chosen = log_likelihood(classifier(x, t).float(), rows_targets.to(x.device)).sum()
            return torch.autograd.grad(chosen, x)[0]

    run = fixed_shape(rows_gradient, chunk) if chunk > 0 else rows_gradient
    return lambda x, t: run(x, t, targets)


def label_guidance(classifier: "NoisyClassifier", schedule: Schedule, scale: float,
                   chunk: int = 0) -> Callable[[EpsFn, torch.Tensor], EpsFn]:
    """``extra_guidance`` for ``p1.generate.sample_images``: wraps a batch's predictor with
    classifier guidance towards its conditions (B, D): the digit of a digit condition, the
    object set of a multi-hot one. ``chunk`` as in guidance_gradient."""
    def wrap(eps_fn: EpsFn, cond: torch.Tensor) -> EpsFn:
        targets = cond if classifier.multi_label else cond[:, :classifier.num_labels].argmax(1)
        return noisy_classifier_guided(eps_fn, schedule,
                                       guidance_gradient(classifier, targets, chunk), scale)

    return wrap


def load_guide_classifier(path: str, device: torch.device,
                          schedule: Optional[Schedule]) -> NoisyClassifier:
    """The classifier written by ``main``, frozen in eval mode. UserError if the file is not
    one, or if it was trained for another noise schedule than ``schedule`` (None: no check,
    for a caller that uses it on clean images only, at t = 0)."""
    if not os.path.isfile(path):
        raise UserError(f"no guide classifier at {path} (train one: python3 -m "
                        "p1.guide_classifier)")
    try:
        state = torch.load(path, map_location="cpu")
    except Exception as err:  # torch raises many types for a corrupt file
        raise UserError(f"cannot read guide classifier {path}: {err}") from None
    if not isinstance(state, dict) or state.get("arch") != ARCH:
        raise UserError(f"{path} is not a p1.guide_classifier checkpoint")
    trained_for = make_schedule(state["schedule_config"]).alphas_cumprod
    if schedule is not None and (len(trained_for) != len(schedule.alphas_cumprod)
                                 or not torch.allclose(trained_for, schedule.alphas_cumprod)):
        raise UserError(f"{path} was trained for another noise schedule "
                        f"({state['schedule_config']}) than the diffusion model's; train one "
                        "for it (python3 -m p1.guide_classifier) or turn classifier guidance "
                        "off (--classifier-guidance 0)")
    model = NoisyClassifier(**state["config"], multi_label=state["multi_label"])
    model.load_state_dict(state["state_dict"])
    return model.to(device).eval().requires_grad_(False)


@torch.no_grad()
def noisy_accuracy(model: nn.Module, schedule: Schedule, x0: torch.Tensor,
                   targets: torch.Tensor, timesteps: Sequence[int], device,
                   score: Callable[[torch.Tensor, torch.Tensor], float] = top1_accuracy,
                   seed: int = 1) -> Dict[int, float]:
    """{t: score(logits, targets)} on x0 (N, 3, S, S) noised to each t (top-1 by default)."""
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(x0.shape, generator=generator)
    result = {}
    for step in timesteps:
        t = torch.full((len(x0),), step, dtype=torch.long)
        logits = torch.cat([model(q_sample(schedule, x0[i:i + 256], t[i:i + 256],
                                           noise[i:i + 256]).to(device),
                                  t[i:i + 256].to(device)).float().cpu()
                            for i in range(0, len(x0), 256)])
        result[step] = score(logits, targets)
    return result


def parse_args(argv=None, description=None, data="hw2_data/digits",
               out=DEFAULT_PATH):
    """The training options; ``data`` and ``out`` are the dataset's default paths."""
    parser = argparse.ArgumentParser(description=description or __doc__.split("\n\n")[0])
    parser.add_argument("--data", default=data, help=f"training images (default {data})")
    parser.add_argument("--out", default=out, help=f"classifier file (default {out})")
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--timesteps", type=int, default=1000,
                        help="T of the diffusion model's schedule")
    parser.add_argument("--holdout", type=float, default=0.05, help="held-out share")
    parser.add_argument("--limit", type=int, default=0, help="first N images per dataset")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bf16", action="store_true",
                        help="bfloat16 autocast for the training passes (weights stay float32)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0 = default)")
    parser.add_argument("--device", default=default_device())
    args = parser.parse_args(argv)
    if min(args.steps, args.batch_size, args.timesteps) < 1 or not 0 < args.holdout < 1:
        raise UserError("--steps, --batch-size and --timesteps must be >= 1, --holdout in "
                        "(0, 1)")
    return args


def train_guide_classifier(args, task: GuideTask) -> None:
    """Train on ``task``'s images noised along its schedule; save to ``args.out``."""
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = check_device(args.device)
    out = args.out
    x, targets = task.load(args.data, args.limit)
    schedule_config = {"kind": task.schedule, "num_timesteps": args.timesteps}
    schedule = make_schedule(schedule_config)
    generator = torch.Generator().manual_seed(args.seed)
    torch.manual_seed(args.seed)
    test_idx, train_idx = holdout_split(len(x), args.holdout, generator)

    config = {"num_timesteps": args.timesteps, "num_labels": task.num_labels,
              "image_size": task.image_size, "width": args.width, "patch_size": task.patch_size}
    model = NoisyClassifier(**config, multi_label=task.multi_label).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, args.lr, total_steps=args.steps)
    start = time.time()
    model.train()
    for step in range(1, args.steps + 1):
        batch = train_idx[torch.randint(0, len(train_idx), (args.batch_size,),
                                        generator=generator)]
        t = torch.randint(0, args.timesteps, (args.batch_size,), generator=generator)
        noise = torch.randn((args.batch_size, *x.shape[1:]), generator=generator)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
            logits = model(q_sample(schedule, x[batch], t, noise).to(device), t.to(device))
        loss = -log_likelihood(logits.float(), targets[batch].to(device)).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if step % 500 == 0 or step == args.steps:
            print(f"step {step}/{args.steps}: loss {loss.item():.4f} "
                  f"({time.time() - start:.0f} s)", flush=True)
    timesteps = [args.timesteps * fifth // 5 for fifth in range(5)]
    held_acc = noisy_accuracy(model, schedule, x[test_idx], targets[test_idx], timesteps, device,
                              task.score)
    print("held-out accuracy by timestep: " + ", ".join(f"t={t}: {a:.3f}"
                                                         for t, a in held_acc.items()))
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    temporary = out + ".tmp"
    torch.save({"arch": ARCH, "state_dict": model.cpu().state_dict(), "config": config,
                "multi_label": task.multi_label, "schedule_config": schedule_config,
                "dataset": task.name, "heldout_accuracy": held_acc,
                "heldout_images": len(test_idx), "train_images": len(train_idx),
                "steps": args.steps, "seconds": round(time.time() - start)}, temporary)
    os.replace(temporary, out)
    print(f"wrote {out}")


def main(argv=None) -> None:
    train_guide_classifier(parse_args(argv), DIGITS)


if __name__ == "__main__":
    run_cli(main)
