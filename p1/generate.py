"""``bash hw2_1.sh OUT``: 500 MNIST-M and 500 SVHN digits for the grader.

    python3 -m p1.generate OUT [--ckpt p1/ddpm_digits.pt] [--sampler dpm++] [--steps 20]
                               [--guidance 4.0] [--classifier-guidance 5.0] [--seed 0]
                               [--batch-size 250] [--device cpu]

writes exactly ``OUT/mnistm/{d}_{001..050}.png`` and ``OUT/svhn/{d}_{001..050}.png``
(the grader takes the label from the first character). Image k has its own noise seed
(seed, k), so it is byte-identical on re-runs and does not depend on the batch size.
"""
import argparse
import os
import re
import shutil
import tempfile
import time
from contextlib import nullcontext
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from PIL import Image

from p1.data import COND_DIM, DATASETS, NUM_DIGITS, digit_condition, to_uint8
from p1.devices import check_device, default_device
from p1.diffusion import (
    SAMPLERS,
    EpsFn,
    Schedule,
    fixed_shape,
    guided,
    initial_noise,
    make_schedule,
    sample,
)
from p1.errors import UserError, run_cli
from p1.guide_classifier import DEFAULT_PATH as DEFAULT_GUIDE
from p1.guide_classifier import label_guidance, load_guide_classifier
from p1.model import build_model

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CHECKPOINT = os.path.join(HERE, "ddpm_digits.pt")
OUTPUT_NAME = re.compile(r"^[0-9]_[0-9]{3}\.png$")
DEFAULTS = {"sampler": "dpm++", "steps": 20, "guidance": 4.0, "classifier_guidance": 5.0,
            "seed": 0}
HOW_TO_GET = ("train one with `python3 -m p1.train --data hw2_data/digits --out runs/p1` "
              "and pass --ckpt runs/p1/ema.pt (or copy that file to p1/ddpm_digits.pt)")


def load_checkpoint(path: str, device: torch.device, how_to_get: str = HOW_TO_GET
                    ) -> Tuple[torch.nn.Module, Schedule, Dict]:
    """(EMA model in eval mode on device, schedule, checkpoint dict) from a p1 checkpoint:
    either the full training state (``checkpoint.pt``) or the EMA-only export (``ema.pt``).
    ``how_to_get`` ends the error message when there is no file at ``path``."""
    if not os.path.isfile(path):
        raise UserError(f"no checkpoint at {path}; {how_to_get}")
    try:
        checkpoint = torch.load(path, map_location="cpu")
    except Exception as err:  # torch raises many types for a corrupt file
        raise UserError(f"cannot read checkpoint {path}: {err}") from None
    keys = ("ema", "model_config", "schedule_config")
    if not isinstance(checkpoint, dict) or any(key not in checkpoint for key in keys):
        raise UserError(f"{path} is not a p1 checkpoint (expected keys {', '.join(keys)})")
    try:
        model = build_model(checkpoint["model_config"])
        model.load_state_dict(checkpoint["ema"])
        schedule = make_schedule(checkpoint["schedule_config"])
    except (RuntimeError, TypeError, ValueError) as err:
        first_line = str(err).strip().splitlines()[0]
        raise UserError(f"checkpoint {path} does not match the model: {first_line}") from None
    return model.to(device).eval(), schedule, checkpoint


def precision_context(device: torch.device, precision: str):
    """Autocast context for "bf16" (CPU or GPU) or "fp16" (GPU); "fp32" runs plainly."""
    if precision == "fp32":
        return nullcontext()
    if precision == "fp16" and device.type != "cuda":
        raise UserError("fp16 needs a CUDA device; use bf16 or fp32 on the CPU")
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16"
                          else torch.float16)


MODEL_CHUNK = 100


@torch.no_grad()
def sample_images(model: torch.nn.Module, schedule: Schedule, cond: torch.Tensor,
                  seeds: Sequence[int], sampler: str = "dpm++", steps: int = 20,
                  guidance: float = 2.0, batch_size: int = 250, precision: str = "fp32",
                  model_chunk: int = MODEL_CHUNK,
                  callback: Optional[Callable[[int, int, torch.Tensor], None]] = None,
                  extra_guidance: Optional[Callable[[EpsFn, torch.Tensor], EpsFn]] = None
                  ) -> torch.Tensor:
    """uint8 images (N, C, H, W) for conditions cond (N, D), one noise seed per image;
    ``batch_size`` images are denoised together (memory), the model always runs on
    ``model_chunk`` rows. ``callback(first_index, t_next, x)`` sees every batch state.
    ``extra_guidance(eps_fn, batch_cond)`` may wrap the classifier-free-guided predictor
    (e.g. with ``classifier_guided``)."""
    device = next(model.parameters()).device
    channels = model.image_channels
    size = model.image_size
    null_cond = torch.zeros(cond.shape[1], device=device)
    images = []
    for start in range(0, len(seeds), batch_size):
        batch_seeds = seeds[start:start + batch_size]
        generators = [torch.Generator().manual_seed(int(seed)) for seed in batch_seeds]
        x = initial_noise(generators, (channels, size, size)).to(device)
        batch_cond = cond[start:start + len(batch_seeds)].to(device)

        def model_fn(x_in, t, c):
            with precision_context(device, precision):
                return model(x_in, t, c).float()

        eps_fn = guided(fixed_shape(model_fn, model_chunk), batch_cond, null_cond, guidance)
        if extra_guidance is not None:
            eps_fn = extra_guidance(eps_fn, batch_cond)
        step_callback = None if callback is None else (
            lambda t_next, state, first=start: callback(first, t_next, state))
        x = sample(sampler, eps_fn, x, schedule, steps, generators, callback=step_callback)
        images.append(to_uint8(x).cpu())
    return torch.cat(images)


def sample_seed(seed: int, index: int) -> int:
    """Seed of image ``index``'s generator: distinct for every (seed, index) pair."""
    return seed * 1_000_003 + index


def grader_jobs(per_class: int) -> List[Tuple[str, int, int]]:
    """(dataset, digit, number 1..per_class) of every output image, in index order."""
    return [(dataset, digit, number) for dataset in DATASETS for digit in range(NUM_DIGITS)
            for number in range(1, per_class + 1)]


def check_output_folder(out_dir: str) -> None:
    """UserError if OUT/mnistm or OUT/svhn holds anything this script would not write."""
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise UserError(f"{out_dir} exists and is not a folder")
    for dataset in DATASETS:
        folder = os.path.join(out_dir, dataset)
        if os.path.exists(folder) and not os.path.isdir(folder):
            raise UserError(f"{folder} exists and is not a folder")
        if os.path.isdir(folder):
            strangers = sorted(name for name in os.listdir(folder)
                               if not OUTPUT_NAME.match(name)
                               or not os.path.isfile(os.path.join(folder, name)))
            if strangers:
                raise UserError(f"{folder} holds files this script did not write (e.g. "
                                f"{strangers[0]}); the grader reads every file there, so empty "
                                "it or choose another folder")


def write_outputs(out_dir: str, images: torch.Tensor, jobs: Sequence[Tuple[str, int, int]]
                  ) -> None:
    """Write the PNGs into a staging folder, then swap OUT/{mnistm,svhn} in at once."""
    os.makedirs(out_dir, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".p1-generate-", dir=out_dir)
    try:
        for dataset in DATASETS:
            os.makedirs(os.path.join(staging, dataset))
        for image, (dataset, digit, number) in zip(images, jobs):
            path = os.path.join(staging, dataset, f"{digit}_{number:03d}.png")
            Image.fromarray(image.permute(1, 2, 0).numpy()).save(path)
        move_into_place(staging, out_dir, DATASETS)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def move_into_place(staging: str, out_dir: str, names: Sequence[str]) -> None:
    """Replace ``out_dir/name`` by ``staging/name`` for each name (a folder is replaced whole)."""
    for name in names:
        target = os.path.join(out_dir, name)
        if os.path.isdir(target):
            shutil.rmtree(target)
        os.replace(os.path.join(staging, name), target)


def add_sampling_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by the scripts that sample from a checkpoint."""
    parser.add_argument("--ckpt", default=DEFAULT_CHECKPOINT,
                        help="p1 checkpoint (default: the one shipped for the task)")
    parser.add_argument("--sampler", choices=SAMPLERS, default=DEFAULTS["sampler"],
                        help="dpm++ = DPM-Solver++(2M), ddim, ddpm = ancestral, all T steps")
    parser.add_argument("--steps", type=int, default=DEFAULTS["steps"],
                        help="model evaluations for dpm++/ddim (ignored by ddpm)")
    parser.add_argument("--guidance", type=float, default=DEFAULTS["guidance"],
                        help="classifier-free guidance scale s (1 = none)")
    parser.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    parser.add_argument("--batch-size", type=int, default=250,
                        help="images denoised together (memory only: images do not change); "
                             "a multiple of model-chunk / 2 wastes no padded rows")
    parser.add_argument("--model-chunk", type=int, default=MODEL_CHUNK,
                        help="rows per model call; outputs are bit-identical between runs "
                             "with the same value")
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32",
                        help="autocast dtype of the model (fp16 on CUDA only)")
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads for torch (0 = its default)")
    parser.add_argument("--device", default=default_device())


def add_guide_arguments(parser: argparse.ArgumentParser) -> None:
    """Classifier guidance for the digit models (``p1.guide_classifier``)."""
    parser.add_argument("--classifier-guidance", type=float,
                        default=DEFAULTS["classifier_guidance"],
                        help="scale of the guide classifier's gradient (0 = off)")
    parser.add_argument("--guide-classifier", default=DEFAULT_GUIDE,
                        help="noise-aware digit classifier (default: p1/guide_classifier.pt)")


def load_digit_guidance(args, schedule: Schedule, device: torch.device
                        ) -> Optional[Callable[[EpsFn, torch.Tensor], EpsFn]]:
    """``extra_guidance`` for ``sample_images`` from the guide options, None when off."""
    if args.classifier_guidance < 0:
        raise UserError("--classifier-guidance must be >= 0")
    if args.classifier_guidance == 0:
        return None
    classifier = load_guide_classifier(args.guide_classifier, device, schedule)
    return label_guidance(classifier, schedule, args.classifier_guidance, args.model_chunk)


def validate_sampling_arguments(args, num_timesteps: Optional[int] = None) -> None:
    """Range checks; with num_timesteps (known once the checkpoint is read) also --steps."""
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.batch_size < 1 or args.model_chunk < 1:
        raise UserError("--batch-size and --model-chunk must be >= 1")
    if args.steps < 1 or (num_timesteps is not None and args.steps > num_timesteps):
        raise UserError(f"--steps must be in 1..{num_timesteps or 'T'}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", help="output folder; gets mnistm/ and svhn/")
    add_sampling_arguments(parser)
    parser.add_argument("--per-class", type=int, default=50,
                        help="images per digit and dataset (the grader expects 50)")
    add_guide_arguments(parser)
    args = parser.parse_args(argv)
    if not 1 <= args.per_class <= 999:
        raise UserError("--per-class must be in 1..999")
    validate_sampling_arguments(args)
    check_output_folder(args.out_dir)
    device = check_device(args.device)
    model, schedule, _ = load_checkpoint(args.ckpt, device)
    validate_sampling_arguments(args, schedule.num_timesteps)
    if model.cond_dim != COND_DIM:
        raise UserError(f"{args.ckpt} is not a digit model (condition size {model.cond_dim}, "
                        f"expected {COND_DIM})")

    extra_guidance = load_digit_guidance(args, schedule, device)
    start = time.time()
    jobs = grader_jobs(args.per_class)
    cond = digit_condition([digit for _, digit, _ in jobs],
                           [DATASETS.index(dataset) for dataset, _, _ in jobs])
    seeds = [sample_seed(args.seed, index) for index in range(len(jobs))]
    images = sample_images(model, schedule, cond, seeds, args.sampler, args.steps,
                           args.guidance, args.batch_size, args.precision, args.model_chunk,
                           extra_guidance=extra_guidance)
    write_outputs(args.out_dir, images, jobs)
    print(f"wrote {len(jobs)} images to {args.out_dir}/{{{','.join(DATASETS)}}} in "
          f"{time.time() - start:.1f} s ({args.sampler}, {args.steps} steps, guidance "
          f"{args.guidance}, classifier guidance {args.classifier_guidance}, {args.precision}, "
          f"{device})")


if __name__ == "__main__":
    run_cli(main)
