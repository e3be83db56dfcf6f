"""Lab 6 results: images, grids, accuracy and the denoising process of an iCLEVR DDPM or GAN.

    python3 -m p1.iclevr OUT [--model ddpm] [--ckpt p1/iclevr/ddpm_iclevr.pt]
                         [--evaluator checkpoint.pth]
                         [--tests test.json new_test.json] [--classifier-guidance 0]
                         [--guide-classifier PATH] [--sampler dpm++] [--steps 50]
                         [--guidance 4.0] [--seed 0] [--cross-check PATH]

writes, for each test file NAME.json (default: the lab's test.json and new_test.json)::

    OUT/NAME/0.png ... 31.png     one image per condition set, named by its position
    OUT/NAME_grid.png             the images, 8 a row (torchvision make_grid)
    OUT/denoise.png               ["red sphere", "cyan cylinder", "cyan cube"]: noisy -> clean
                                  (the DDPM only)
    OUT/accuracy.json             the lab's accuracy of each file (all images in one call)

and prints one accuracy line per file. The evaluator is the lab's ResNet18 (``checkpoint.pth``,
taken from the working folder when ``--evaluator`` is not given) or a stand-in in the same
format; with none, everything but accuracy.json is written and one line says so.
``--model gan`` generates with the conditional GAN of ``p1.iclevr.gan`` instead (default
checkpoint ``p1/iclevr/gan_iclevr.pt``): one latent per image, no sampler options.

``--classifier-guidance S`` > 0 adds a classifier's gradient to the classifier-free guidance:
the evaluator's own, judged on the clean-image estimate (``p1.diffusion.classifier_guided``),
or, with ``--guide-classifier``, that of a separate noise-aware classifier
(``p1.iclevr.guide_classifier``), so that the evaluator only judges and is not also the thing
the images were steered to please. ``--cross-check PATH`` also scores the images with a second
judge: another evaluator in the lab's format (e.g. a stand-in trained with another seed) or
such a noise-aware classifier at t = 0. It shows how much of a score under evaluator guidance
the images earn and how much is the guidance pleasing the judge it follows.
"""
import argparse
import json
import os
import shutil
import tempfile
import time
from typing import Callable, Dict, List, Optional, Tuple

import torch
from PIL import Image
from torchvision.utils import make_grid, save_image

from p1.data import to_model_range
from p1.devices import check_device
from p1.diffusion import Schedule, classifier_guided
from p1.errors import UserError, run_cli
from p1.generate import (
    add_sampling_arguments,
    load_checkpoint,
    move_into_place,
    sample_images,
    validate_sampling_arguments,
)
from p1.guide_classifier import label_guidance, noisy_accuracy
from p1.iclevr.evaluator import load_evaluator
from p1.iclevr.gan import checkpoint_kind, generate, load_generator
from p1.iclevr.guide_classifier import lab_accuracy, load_iclevr_guide
from p1.iclevr.labels import (
    NUM_OBJECTS,
    OBJECTS_JSON,
    TEST_JSONS,
    load_objects,
    multi_hot,
    read_condition_sets,
)

DENOISE_SET = ["red sphere", "cyan cylinder", "cyan cube"]
HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CHECKPOINTS = {"ddpm": os.path.join(HERE, "ddpm_iclevr.pt"),
                       "gan": os.path.join(HERE, "gan_iclevr.pt")}
SHIPPED_GUIDE = os.path.join(HERE, "guide_iclevr.pt")  # p1.iclevr.guide_classifier, width 64
HOW_TO_GET = {"ddpm": "train one with `python3 -m p1.iclevr.train --data iclevr_data --out "
                      "runs/iclevr` and pass --ckpt runs/iclevr/ema.pt",
              "gan": "train one with `python3 -m p1.iclevr.train_gan --data iclevr_data --out "
                     "runs/iclevr_gan` and pass --ckpt runs/iclevr_gan/gan.pt"}
LAB_EVALUATOR = "checkpoint.pth"
NO_EVALUATOR = ("accuracy skipped: no evaluator (pass --evaluator with the lab's checkpoint.pth, "
                "or make a stand-in: python3 -m p1.iclevr.render iclevr_data && python3 -m "
                "p1.iclevr.train_evaluator --data iclevr_data --out "
                "runs/iclevr_evaluator/checkpoint.pth)")
DENOISE_FRAMES = 10
PER_ROW = 8
DEFAULTS = {"steps": 50, "guidance": 4.0}


def sample_seeds(seed: int, file_index: int, count: int) -> List[int]:
    """One generator seed per image: distinct for every (seed, file, position)."""
    return [(seed * 1_000_003 + file_index) * 1000 + i for i in range(count)]


def denoising_frames(model, schedule, cond: torch.Tensor, seed: int, args,
                     extra_guidance) -> torch.Tensor:
    """uint8 (DENOISE_FRAMES, 3, H, W): x_T, the intermediate states x_t nearest to evenly
    spaced timesteps t (the sampler's own steps crowd the noisy end), the image."""
    states = []

    def keep(_, t_next, x):
        states.append((t_next, x[0].clone()))

    final = sample_images(model, schedule, cond, [seed], args.sampler, args.steps, args.guidance,
                          1, args.precision, args.model_chunk, callback=keep,
                          extra_guidance=extra_guidance)
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn((3, model.image_size, model.image_size), generator=generator)
    intermediate = states[:-1]
    targets = torch.linspace(schedule.num_timesteps - 1, 0, DENOISE_FRAMES).tolist()[1:-1]
    frames = [noise] + [min(intermediate, key=lambda state: abs(state[0] - target))[1]
                        for target in targets]
    uint8 = [((f.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8) for f in frames]
    return torch.stack(uint8 + [final[0]])


Judge = Callable[[torch.Tensor, torch.Tensor], float]


def load_second_judge(path: str, device: torch.device, schedule: Optional[Schedule]) -> Judge:
    """``--cross-check``: (images in [-1, 1] (N, 3, 64, 64), multi-hot (N, 24)) -> the lab's
    accuracy, from a checkpoint in the lab's format (``{"model": ...}``: a second evaluator)
    or else a noise-aware iCLEVR guide classifier for the DDPM's ``schedule``, which judges
    at t = 0 (not for the GAN, which has no schedule: ``schedule`` None)."""
    try:
        holds_lab_model = "model" in torch.load(path, map_location="cpu")
    except Exception:  # not readable as a lab checkpoint: the guide loader names the problem
        holds_lab_model = False
    if holds_lab_model:
        judge = load_evaluator(path, device)
        return lambda images, cond: judge.eval(images.to(device), cond.to(device))
    if schedule is None:
        raise UserError(f"{path} is not an evaluator in the lab's format; with --model gan, "
                        "--cross-check takes a second evaluator")
    guide = load_iclevr_guide(path, device, schedule)
    return lambda images, cond: noisy_accuracy(guide, schedule, images, cond, [0], device,
                                               lab_accuracy)[0]


def write_results(out_dir: str, results: Dict[str, torch.Tensor], denoise: Optional[torch.Tensor],
                  accuracy: Optional[Dict[str, dict]]) -> None:
    """Write every output into a staging folder, then move each into place (denoise.png and
    accuracy.json only when there is a denoising row and an accuracy)."""
    os.makedirs(out_dir, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".iclevr-", dir=out_dir)
    try:
        names = []
        for name, images in results.items():
            os.makedirs(os.path.join(staging, name))
            for index, image in enumerate(images):
                Image.fromarray(image.permute(1, 2, 0).numpy()).save(
                    os.path.join(staging, name, f"{index}.png"))
            save_image(make_grid(images.float() / 255, nrow=PER_ROW),
                       os.path.join(staging, f"{name}_grid.png"))
            names += [name, f"{name}_grid.png"]
        if denoise is not None:
            save_image(make_grid(denoise.float() / 255, nrow=len(denoise)),
                       os.path.join(staging, "denoise.png"))
            names.append("denoise.png")
        if accuracy is not None:
            with open(os.path.join(staging, "accuracy.json"), "w") as handle:
                json.dump(accuracy, handle, indent=2)
            names.append("accuracy.json")
        move_into_place(staging, out_dir, names)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def ddpm_generator(args, device: torch.device, evaluator) -> Tuple[Callable, Callable, Schedule]:
    """(images(cond, seeds) -> uint8 (N, 3, 64, 64), denoise(cond, seed) -> frames, schedule)
    of the DDPM checkpoint, with the guidance the options ask for."""
    model, schedule, _ = load_checkpoint(args.ckpt, device, HOW_TO_GET["ddpm"])
    validate_sampling_arguments(args, schedule.num_timesteps)
    if model.cond_dim != NUM_OBJECTS:
        raise UserError(f"{args.ckpt} is not an iCLEVR model (condition size {model.cond_dim}, "
                        f"expected {NUM_OBJECTS})")
    extra_guidance = None
    if args.classifier_guidance > 0 and args.guide_classifier:
        guide = load_iclevr_guide(args.guide_classifier, device, schedule)
        extra_guidance = label_guidance(guide, schedule, args.classifier_guidance,
                                        args.model_chunk)
    elif args.classifier_guidance > 0:
        def extra_guidance(eps_fn, cond):
            return classifier_guided(eps_fn, schedule, evaluator.guidance_gradient(cond),
                                     args.classifier_guidance)

    def images(cond, seeds):
        return sample_images(model, schedule, cond, seeds, args.sampler, args.steps,
                             args.guidance, args.batch_size, args.precision, args.model_chunk,
                             extra_guidance=extra_guidance)

    def denoise(cond, seed):
        return denoising_frames(model, schedule, cond, seed, args, extra_guidance)

    return images, denoise, schedule


def gan_generator(args, device: torch.device) -> Callable:
    """images(cond, seeds) -> uint8 (N, 3, 64, 64) of the GAN checkpoint."""
    if args.classifier_guidance > 0 or args.guide_classifier:
        raise UserError("classifier guidance steers the DDPM's sampler: it does not apply to "
                        "--model gan")
    generator, _ = load_generator(args.ckpt, device, HOW_TO_GET["gan"])
    if generator.cond_dim != NUM_OBJECTS:
        raise UserError(f"{args.ckpt} is not an iCLEVR GAN (condition size "
                        f"{generator.cond_dim}, expected {NUM_OBJECTS})")
    return lambda cond, seeds: generate(generator, cond, seeds, args.batch_size)


def check_model_kind(path: str, model: str) -> None:
    """A GAN file given as a DDPM (or the reverse) named in one line."""
    if not os.path.isfile(path):
        return  # the loader names what is missing and how to get it
    try:
        kind = checkpoint_kind(torch.load(path, map_location="cpu"))
    except Exception:  # unreadable: the loader names the problem
        return
    if kind in DEFAULT_CHECKPOINTS and kind != model:
        raise UserError(f"{path} is a {kind.upper()} checkpoint: pass --model {kind}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", help="output folder")
    add_sampling_arguments(parser)
    parser.set_defaults(ckpt=None, **DEFAULTS)
    parser.add_argument("--model", choices=sorted(DEFAULT_CHECKPOINTS), default="ddpm",
                        help="the DDPM (default) or the conditional GAN; --ckpt defaults to "
                             "the shipped p1/iclevr/{ddpm,gan}_iclevr.pt")
    parser.add_argument("--evaluator", default=None,
                        help="the lab's evaluator weights (dict with key 'model') or a stand-in "
                             f"(default: ./{LAB_EVALUATOR} when present, else no accuracy)")
    parser.add_argument("--tests", nargs="+", default=[TEST_JSONS["test"], TEST_JSONS["new_test"]],
                        help="test.json-style files (default: the lab's test and new_test)")
    parser.add_argument("--objects", default=OBJECTS_JSON, help="objects.json")
    parser.add_argument("--classifier-guidance", type=float, default=0.0,
                        help="scale of the classifier gradient (0 = off; DDPM only)")
    parser.add_argument("--guide-classifier", default=None,
                        help="noise-aware classifier that guides instead of the evaluator "
                             "(the shipped p1/iclevr/guide_iclevr.pt, or python3 -m "
                             "p1.iclevr.guide_classifier)")
    parser.add_argument("--cross-check", default=None, metavar="JUDGE",
                        help="also score the images with a second judge: an evaluator in the "
                             "lab's format or a noise-aware guide classifier (at t = 0)")
    args = parser.parse_args(argv)
    if args.ckpt is None:
        args.ckpt = DEFAULT_CHECKPOINTS[args.model]
    validate_sampling_arguments(args)
    if args.classifier_guidance < 0:
        raise UserError("--classifier-guidance must be >= 0")
    objects = load_objects(args.objects)
    stems = [os.path.splitext(os.path.basename(path))[0] for path in args.tests]
    if len(set(stems)) != len(stems):
        raise UserError(f"two test files share a name: {', '.join(stems)}")
    label_sets = {stem: read_condition_sets(path, objects) for stem, path in zip(stems, args.tests)}
    if args.evaluator is None and os.path.isfile(LAB_EVALUATOR):
        args.evaluator = LAB_EVALUATOR
    if (args.model == "ddpm" and args.evaluator is None and args.classifier_guidance > 0
            and not args.guide_classifier):
        raise UserError("--classifier-guidance without --guide-classifier is guidance from the "
                        "evaluator: pass --evaluator")
    if args.evaluator is None and args.cross_check:
        raise UserError("--cross-check compares with the evaluator's score: pass --evaluator")
    check_model_kind(args.ckpt, args.model)
    device = check_device(args.device)
    evaluator = load_evaluator(args.evaluator, device) if args.evaluator else None
    if args.model == "gan":
        make_images, make_denoise, schedule = gan_generator(args, device), None, None
    else:
        make_images, make_denoise, schedule = ddpm_generator(args, device, evaluator)
    second_judge = (load_second_judge(args.cross_check, device, schedule)
                    if args.cross_check else None)

    results, accuracy = {}, {}
    for file_index, (stem, sets) in enumerate(label_sets.items()):
        start = time.time()
        cond = multi_hot(sets, objects)
        images = make_images(cond, sample_seeds(args.seed, file_index, len(sets)))
        results[stem] = images
        seconds = time.time() - start
        if evaluator is None:
            print(f"{stem}: {len(sets)} images ({seconds:.1f} s)")
            continue
        score = evaluator.eval(to_model_range(images).to(device), cond.to(device))
        accuracy[stem] = {"accuracy": score, "images": len(sets),
                          "labels": int(cond.sum().item()), "seconds": seconds}
        line = f"{stem}: accuracy {score:.4f} ({len(sets)} images, {seconds:.1f} s)"
        if second_judge is not None:
            accuracy[stem]["cross_check"] = second_judge(to_model_range(images), cond)
            line += f", cross-check {accuracy[stem]['cross_check']:.4f}"
        print(line)
    denoise = None
    if make_denoise is not None:
        denoise = make_denoise(multi_hot([DENOISE_SET], objects),
                               sample_seeds(args.seed, len(label_sets), 1)[0])
    keys = ["model", "seed", "ckpt", "evaluator", "cross_check"]
    if args.model == "ddpm":
        keys[1:1] = ["sampler", "steps", "guidance", "classifier_guidance", "guide_classifier"]
    settings = {key: getattr(args, key) for key in keys}
    outputs = "grids" + (", denoise.png" if denoise is not None else "")
    if evaluator is None:
        write_results(args.out_dir, results, denoise, None)
        print(NO_EVALUATOR)
        print(f"wrote {', '.join(results)}, {outputs} to {args.out_dir}")
        return
    write_results(args.out_dir, results, denoise, dict(accuracy, settings=settings))
    print(f"wrote {', '.join(results)}, {outputs} and accuracy.json to {args.out_dir}")


if __name__ == "__main__":
    run_cli(main)
