"""``build --make``: run the figure and result commands whose inputs are present.

Each command is the one a pending box prints (``report.items``), with the course paths
replaced by the ones given on the command line. Problem 1 always runs (its checkpoints ship
with the repository); Problem 2 needs UNet.pt and the noises; Problem 3 needs sd-v1-4.ckpt,
learned embeddings and the CLIP ViT-B/32 weights; Lab 6 needs an evaluator for the accuracies
(its grids and denoising row are made without one). A failing command is reported and the
build goes on: its items stay pending.
"""
import glob
import os
import subprocess
import sys
import time
from typing import List, Optional, Tuple

from report import items as catalog
from report.build import REPO


def first_file(*paths: Optional[str]) -> Optional[str]:
    return next((p for p in paths if p and os.path.isfile(p)), None)


def localise(command: str, args, unet: Optional[str], sd: Optional[str],
             have_noise: bool) -> str:
    """The command with the course's default paths replaced by the given ones; an optional
    ``[hw2_data/face/noise]`` argument is kept only when the noises are there."""
    command = command.replace(" [hw2_data/face/noise]",
                              " hw2_data/face/noise" if have_noise else "")
    replacements = [("hw2_data/face/UNet.pt", unet or ""), ("sd-v1-4.ckpt", sd or ""),
                    ("CLIP_DIR", args.clip or ""), ("checkpoint.pth", args.evaluator or ""),
                    ("hw2_data/", args.data.rstrip("/") + "/")]
    for old, new in replacements:
        if new:
            command = command.replace(old, new)
    return command


def plan(args) -> List[Tuple[str, str, Optional[str]]]:
    """(part, command, reason it is skipped or None)."""
    data = args.data
    unet = first_file(args.unet, os.path.join(data, "face", "UNet.pt"), "UNet.pt")
    noise = os.path.join(data, "face", "noise")
    have_noise = bool(glob.glob(os.path.join(noise, "*.pt")))
    sd = first_file(args.sd_ckpt, "sd-v1-4.ckpt",
                    "stable-diffusion/models/ldm/stable-diffusion-v1/model.ckpt")
    clip = args.clip if args.clip and os.path.isdir(args.clip) else None
    embeddings = all(os.path.isfile(os.path.join("p3", "embeddings", f"new{i}.pt"))
                     for i in (1, 2))
    evaluator = first_file(args.evaluator, catalog.LAB6_EVALUATOR)
    args.evaluator = evaluator
    steps = [("p1", catalog.P1_SCORE, None), ("p1", catalog.P1_FIGURES, None),
             ("p1", catalog.P1_QUALITY, None)]
    p2_missing = None if unet and have_noise else f"needs UNet.pt and {noise}/*.pt"
    steps += [("p2", catalog.P2_ETA, p2_missing), ("p2", catalog.P2_INTERP, p2_missing),
              ("p2", catalog.P2_NORMS, None)]
    gt = os.path.join(data, "face", "GT")
    steps.append(("p2", catalog.P2_MSE, p2_missing or (None if os.path.isdir(gt) else
                                                 f"needs {gt}")))
    zeroshot = os.path.join(data, "clip_zeroshot", "val")
    steps.append(("p3", catalog.P3_ZEROSHOT, None if clip and os.path.isdir(zeroshot) else
                  f"needs --clip DIR (CLIP ViT-B/32) and {zeroshot}"))
    sd_missing = None if sd and embeddings else ("needs sd-v1-4.ckpt and p3/embeddings/"
                                                 "new1.pt, new2.pt (python3 -m p3.train)")
    steps.append(("p3", catalog.P3_MULTI_CMD, sd_missing))
    steps.append(("p3", catalog.P3_SCORE, sd_missing or (None if clip else "needs --clip DIR")))
    if evaluator:
        steps.append(("lab6", catalog.LAB6_DDPM, None))
        steps += [("lab6", catalog.LAB6.format(name=name, extra=extra), None)
                  for name, extra, _ in catalog.LAB6_ABLATIONS]
    else:
        steps.append(("lab6", "python3 -m p1.iclevr report/results/lab6/ddpm --guidance 4"
                      + catalog.LAB6_GUIDE, None))
        steps += [("lab6", catalog.LAB6.format(name=name, extra=extra),
                   "needs an evaluator (--evaluator PATH or ./checkpoint.pth)")
                  for name, extra, _ in catalog.LAB6_ABLATIONS]
    return [(part, localise(command, args, unet, sd, have_noise), reason)
            for part, command, reason in steps]


def make(args) -> None:
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = REPO + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    steps = plan(args)
    failed = 0
    for index, (part, command, reason) in enumerate(steps, 1):
        head = f"make [{index}/{len(steps)}] {part}:"
        if reason:
            print(f"{head} skipped ({reason}): {command}", flush=True)
            continue
        print(f"{head} {command}", flush=True)
        start = time.time()
        code = subprocess.call(["bash", "-c", "set -eo pipefail; " + command], cwd=REPO,
                               env=env)
        if code:
            failed += 1
            print(f"{head} failed (exit {code}); its items stay pending", flush=True)
        else:
            print(f"{head} done in {time.time() - start:.0f} s", flush=True)
    print(f"make: {sum(r is None for _, _, r in steps) - failed} ran, {failed} failed, "
          f"{sum(r is not None for _, _, r in steps)} skipped", flush=True)
