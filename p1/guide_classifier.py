"""A noise-aware digit classifier p(digit | x_t, t) for classifier guidance (Dhariwal & Nichol
2021), trained on the diffusion model's own training images:

    python3 -m p1.guide_classifier --data hw2_data/digits --out p1/guide_classifier.pt

Each training image is noised to a random timestep of the diffusion schedule (q(x_t | x_0)),
so the classifier's gradient ∇_{x_t} log p(y | x_t) is meaningful along the whole sampling
path. It is a different network from the judges (``p1.score``): it never sees the grader's
classifier or the stand-in SVHN judge, so guided accuracy measured by those stays honest.
"""
import argparse
import os
import time
from typing import Callable, Dict, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from p1.data import NUM_DIGITS, load_digits, to_model_range
from p1.diffusion import EpsFn, Schedule, make_schedule, noisy_classifier_guided, q_sample
from p1.errors import UserError, run_cli

ARCH = "p1-noisy-digit-cnn"
DEFAULT_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "guide_classifier.pt")


class NoisyDigitClassifier(nn.Module):
    """(x_t (B, 3, 28, 28) in model range, t (B,) timesteps) -> digit logits (B, 10).
    The timestep enters as a fifth input plane holding t / T next to the image."""

    def __init__(self, num_timesteps: int = 1000, width: int = 32):
        super().__init__()
        self.num_timesteps = num_timesteps

        def conv(in_ch, out_ch):
            return [nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.GroupNorm(8, out_ch), nn.SiLU()]

        self.net = nn.Sequential(
            *conv(4, width), *conv(width, width), nn.AvgPool2d(2),
            *conv(width, 2 * width), *conv(2 * width, 2 * width), nn.AvgPool2d(2),
            *conv(2 * width, 2 * width), nn.Flatten(), nn.Linear(2 * width * 7 * 7, 128),
            nn.SiLU(), nn.Linear(128, 10),
        )

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        plane = (t.to(x.dtype) / self.num_timesteps)[:, None, None, None]
        return self.net(torch.cat([x, plane.expand(-1, 1, *x.shape[2:])], dim=1))


def guidance_gradient(classifier: nn.Module, digits: torch.Tensor
                      ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """g(x_t, t) = ∇_{x_t} log p(digit | x_t, t) for the (B,) target digits, in float32."""
    def gradient(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            x = x.detach().float().requires_grad_(True)
            log_probs = F.log_softmax(classifier(x, t).float(), dim=1)
            chosen = log_probs[torch.arange(len(x)), digits.to(x.device)].sum()
            return torch.autograd.grad(chosen, x)[0]

    return gradient


def digit_guidance(classifier: nn.Module, schedule: Schedule, scale: float
                   ) -> Callable[[EpsFn, torch.Tensor], EpsFn]:
    """``extra_guidance`` for ``p1.generate.sample_images``: wraps a batch's predictor with
    classifier guidance towards the digits of its (B, 12) conditions."""
    def wrap(eps_fn: EpsFn, cond: torch.Tensor) -> EpsFn:
        digits = cond[:, :NUM_DIGITS].argmax(1)
        return noisy_classifier_guided(eps_fn, schedule, guidance_gradient(classifier, digits),
                                       scale)

    return wrap


def load_guide_classifier(path: str, device: torch.device) -> NoisyDigitClassifier:
    """The classifier written by ``main``, in eval mode; UserError if the file is not one."""
    if not os.path.isfile(path):
        raise UserError(f"no guide classifier at {path} (train one: python3 -m "
                        "p1.guide_classifier)")
    try:
        state = torch.load(path, map_location="cpu")
    except Exception as err:  # torch raises many types for a corrupt file
        raise UserError(f"cannot read guide classifier {path}: {err}") from None
    if not isinstance(state, dict) or state.get("arch") != ARCH:
        raise UserError(f"{path} is not a p1.guide_classifier checkpoint")
    model = NoisyDigitClassifier(state["num_timesteps"], state["width"])
    model.load_state_dict(state["state_dict"])
    return model.to(device).eval().requires_grad_(False)


@torch.no_grad()
def noisy_accuracy(model: nn.Module, schedule, x0: torch.Tensor, labels: torch.Tensor,
                   timesteps: Sequence[int], device, seed: int = 1) -> Dict[int, float]:
    """Accuracy on x0 (N, 3, 28, 28) noised to each of ``timesteps``: {t: accuracy}."""
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(x0.shape, generator=generator)
    result = {}
    for step in timesteps:
        t = torch.full((len(x0),), step, dtype=torch.long)
        correct = 0
        for start in range(0, len(x0), 512):
            part = slice(start, start + 512)
            x_t = q_sample(schedule, x0[part], t[part], noise[part])
            correct += int((model(x_t.to(device), t[part].to(device)).argmax(1).cpu()
                            == labels[part]).sum())
        result[step] = correct / max(1, len(x0))
    return result


def main(argv=None) -> None:
    from p1.generate import check_device, default_device  # p1.generate imports this module

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="hw2_data/digits", help="folder holding mnistm/, svhn/")
    parser.add_argument("--out", default=DEFAULT_PATH)
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--timesteps", type=int, default=1000,
                        help="T of the diffusion model's linear schedule")
    parser.add_argument("--holdout", type=float, default=0.05, help="held-out share")
    parser.add_argument("--limit", type=int, default=0, help="first N images per dataset")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0 = default)")
    parser.add_argument("--device", default=default_device())
    args = parser.parse_args(argv)
    if args.steps < 1 or args.batch_size < 1 or not 0 < args.holdout < 1:
        raise UserError("--steps and --batch-size must be >= 1, --holdout in (0, 1)")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = check_device(args.device)

    images, conds = load_digits(args.data, limit=args.limit)
    x, labels = to_model_range(images), conds[:, :10].argmax(1)
    schedule = make_schedule({"kind": "linear", "num_timesteps": args.timesteps})
    generator = torch.Generator().manual_seed(args.seed)
    torch.manual_seed(args.seed)
    order = torch.randperm(len(x), generator=generator)
    held = max(1, int(len(x) * args.holdout))
    if len(x) - held < 1:
        raise UserError(f"only {len(x)} images: too few to hold some out")
    test_idx, train_idx = order[:held], order[held:]

    model = NoisyDigitClassifier(args.timesteps, args.width).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, args.lr, total_steps=args.steps)
    start = time.time()
    model.train()
    for step in range(1, args.steps + 1):
        batch = train_idx[torch.randint(0, len(train_idx), (args.batch_size,),
                                        generator=generator)]
        t = torch.randint(0, args.timesteps, (args.batch_size,), generator=generator)
        noise = torch.randn((args.batch_size, *x.shape[1:]), generator=generator)
        x_t = q_sample(schedule, x[batch], t, noise)
        loss = F.cross_entropy(model(x_t.to(device), t.to(device)), labels[batch].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if step % 500 == 0 or step == args.steps:
            print(f"step {step}/{args.steps}: loss {loss.item():.4f} "
                  f"({time.time() - start:.0f} s)", flush=True)
    timesteps = [args.timesteps * fifth // 5 for fifth in range(5)]
    held_acc = noisy_accuracy(model, schedule, x[test_idx], labels[test_idx], timesteps, device)
    print("held-out accuracy by timestep: " + ", ".join(f"t={t}: {a:.3f}"
                                                         for t, a in held_acc.items()))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    temporary = args.out + ".tmp"
    torch.save({"arch": ARCH, "state_dict": model.cpu().state_dict(), "width": args.width,
                "num_timesteps": args.timesteps, "heldout_accuracy": held_acc,
                "heldout_images": held, "train_images": len(train_idx), "steps": args.steps,
                "data": args.data}, temporary)
    os.replace(temporary, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    run_cli(main)
