"""Speed and quality figures for the README (prints tables; not a test).

    python3 -m p1.benchmark sampling [--ckpt p1/ddpm_digits.pt] [--images 100]
        seconds for 1000 images (extrapolated from --images) per sampler, steps, precision
    python3 -m p1.benchmark training [--batch-size 64] [--steps 5]
        training images/s of the default model: fp32, and bf16 autocast + channels_last
    python3 -m p1.benchmark quality --ckpt CKPT [--per-class 10] [--specs ddpm dpm++:20 ddim:50]
                                    [--reference ddim:1000] [--guide-classifier PATH]
                                    [--json report/results/p1/benchmark_quality.json]
        accuracy of the MNIST-M grader LeNet and the SVHN classifier per sampler spec, and the
        mean pixel difference to a reference sampler from the same noises
"""
import argparse
import platform
import time

import torch

from p1.data import DATASETS, NUM_DIGITS, digit_condition
from p1.devices import check_device, default_device
from p1.diffusion import linear_schedule, training_loss
from p1.errors import UserError, run_cli
from p1.generate import (
    DEFAULT_CHECKPOINT,
    DEFAULT_GUIDE,
    load_checkpoint,
    sample_images,
    sample_seed,
)
from p1.guide_classifier import label_guidance, load_guide_classifier
from p1.jsonout import check_writable, write_json
from p1.model import build_model, count_parameters
from p1.score import (
    DEFAULT_SVHN_CLASSIFIER,
    MNISTM_CLASSIFIER_PATHS,
    first_existing,
    load_mnistm_classifier,
    load_svhn_classifier,
)


def parse_spec(spec: str):
    """"dpm++:20:2.0:3" -> ("dpm++", 20, 2.0, 3.0): sampler, steps, classifier-free guidance,
    classifier guidance; all but the name are optional (None = the command's default)."""
    parts = spec.split(":")
    try:
        if len(parts) > 4:
            raise ValueError
        steps = int(parts[1]) if len(parts) > 1 else 20
        guidance = float(parts[2]) if len(parts) > 2 else None
        classifier_guidance = float(parts[3]) if len(parts) > 3 else 0.0
    except ValueError:
        raise UserError(f"bad sampler spec {spec!r}; use NAME[:STEPS[:GUIDANCE[:CG]]]") from None
    return parts[0], steps, guidance, classifier_guidance


def model_for_speed(args, device):
    if args.ckpt:
        model, schedule, _ = load_checkpoint(args.ckpt, device)
        return model, schedule
    return build_model({}).to(device).eval(), linear_schedule()


def bench_sampling(args, device) -> None:
    model, schedule = model_for_speed(args, device)
    print(f"model: {count_parameters(model):,} parameters, {torch.get_num_threads()} threads, "
          f"{device}; {args.images} images timed, CFG on")
    print("| sampler | model calls | precision | s / 1000 images |")
    print("|---|---|---|---|")
    cond = digit_condition([i % NUM_DIGITS for i in range(args.images)],
                           [i % len(DATASETS) for i in range(args.images)])
    for spec in args.specs:
        name, steps, _, _ = parse_spec(spec)
        for precision in args.precisions:
            start = time.time()
            sample_images(model, schedule, cond, list(range(args.images)), name, steps,
                          args.guidance, batch_size=args.images, precision=precision)
            seconds = (time.time() - start) * 1000 / args.images
            calls = schedule.num_timesteps if name == "ddpm" else steps
            print(f"| {name} | {calls} | {precision} | {seconds:.0f} |", flush=True)


def bench_training(args, device) -> None:
    schedule = linear_schedule()
    x = torch.rand(args.batch_size, 3, 28, 28) * 2 - 1
    cond = digit_condition([i % 10 for i in range(args.batch_size)], [0] * args.batch_size)
    print(f"{torch.get_num_threads()} threads, {device}, batch {args.batch_size}")
    print("| setting | images / s |")
    print("|---|---|")
    settings = [("fp32", False, None), ("bf16 autocast + channels_last", True, torch.bfloat16)]
    if device.type == "cuda":
        settings.append(("fp16 autocast + channels_last", True, torch.float16))
    for label, channels_last, dtype in settings:
        torch.manual_seed(0)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        model = build_model({}).to(device).to(memory_format=fmt)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        batch = x.to(device).contiguous(memory_format=fmt)
        times = []
        for _ in range(args.steps + 1):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.time()
            with torch.autocast(device.type, dtype=dtype or torch.bfloat16,
                                enabled=dtype is not None):
                loss = training_loss(model, schedule, batch, cond.to(device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.time() - start)
        median = sorted(times[1:])[len(times[1:]) // 2]
        print(f"| {label} | {args.batch_size / median:.0f} |", flush=True)


def bench_quality(args, device) -> None:
    model, schedule, checkpoint = load_checkpoint(args.ckpt or DEFAULT_CHECKPOINT, device)
    mnistm_path = args.mnistm_classifier or first_existing(MNISTM_CLASSIFIER_PATHS)
    svhn_path = args.svhn_classifier or first_existing([DEFAULT_SVHN_CLASSIFIER])
    if mnistm_path is None or svhn_path is None:
        raise UserError("quality needs --mnistm-classifier and --svhn-classifier")
    judges = [load_mnistm_classifier(mnistm_path, device), load_svhn_classifier(svhn_path,
                                                                                 device)]
    jobs = [(k, d, n) for k in range(len(DATASETS)) for d in range(NUM_DIGITS)
            for n in range(args.per_class)]
    cond = digit_condition([d for _, d, _ in jobs], [k for k, _, _ in jobs])
    seeds = [sample_seed(args.seed, k * 500 + d * 50 + n) for k, d, n in jobs]
    labels = torch.tensor([d for _, d, _ in jobs])
    print(f"checkpoint step {checkpoint.get('step')}, {args.per_class} images per digit and "
          f"dataset, seed {args.seed}")
    reference = None
    if args.reference:
        name, steps, guidance, _ = parse_spec(args.reference)
        reference = sample_images(model, schedule, cond, seeds, name, steps,
                                  args.guidance if guidance is None else guidance,
                                  batch_size=args.batch_size,
                                  model_chunk=args.model_chunk).float()
        print(f"reference for |Δ|: {args.reference} (same noises; mean absolute difference "
              "in 0-255 grey levels)")
    print("| sampler | model calls | guidance | classifier guidance | MNIST-M acc | SVHN acc "
          "| s / 1000 images | mean abs diff to reference |")
    print("|---|---|---|---|---|---|---|---|")
    guide, table = None, []
    for spec in args.specs:
        name, steps, guidance, classifier_guidance = parse_spec(spec)
        guidance = args.guidance if guidance is None else guidance
        extra_guidance = None
        if classifier_guidance > 0:
            guide = guide or load_guide_classifier(args.guide_classifier, device, schedule)
            extra_guidance = label_guidance(guide, schedule, classifier_guidance,
                                            args.model_chunk)
        start = time.time()
        images = sample_images(model, schedule, cond, seeds, name, steps, guidance,
                               batch_size=args.batch_size, model_chunk=args.model_chunk,
                               extra_guidance=extra_guidance)
        seconds = (time.time() - start) * 1000 / len(jobs)
        difference = ("-" if reference is None else
                      f"{(images.float() - reference).abs().mean().item():.2f}")
        x = images.float().to(device) / 127.5 - 1.0
        accuracies = []
        with torch.no_grad():
            for k, judge in enumerate(judges):
                rows = torch.tensor([j for j, job in enumerate(jobs) if job[0] == k])
                predicted = judge(x[rows]).argmax(1).cpu()
                accuracies.append((predicted == labels[rows]).float().mean().item())
        calls = schedule.num_timesteps if name == "ddpm" else steps
        print(f"| {name} | {calls} | {guidance} | {classifier_guidance} | {accuracies[0]:.3f} "
              f"| {accuracies[1]:.3f} | "
              f"{seconds:.0f} | {difference} |", flush=True)
        table.append({"spec": spec, "sampler": name, "model_calls": calls, "guidance": guidance,
                     "classifier_guidance": classifier_guidance, "mnistm_accuracy": accuracies[0],
                     "svhn_accuracy": accuracies[1], "seconds_per_1000_images": seconds,
                     "mean_abs_diff_to_reference": None if reference is None else
                     float(difference)})
    if args.json:
        write_json(args.json, {
            "tool": "p1.benchmark quality", "checkpoint": args.ckpt or DEFAULT_CHECKPOINT,
            "checkpoint_step": checkpoint.get("step"), "per_class": args.per_class,
            "images_per_spec": len(jobs), "seed": args.seed, "reference": args.reference,
            "judges": {"mnistm": mnistm_path, "svhn": svhn_path},
            "device": str(device), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(), "rows": table})
        print(f"wrote {args.json}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("sampling", "training", "quality"))
    parser.add_argument("--ckpt", default=None, help="checkpoint (sampling: default = a "
                        "fresh default-size model; quality: p1/ddpm_digits.pt)")
    parser.add_argument("--specs", nargs="+", default=["dpm++:20", "ddim:50"],
                        help="NAME[:STEPS[:GUIDANCE[:CG]]], e.g. ddpm dpm++:20 ddim:50:3 "
                             "dpm++:20:2:4 (CG = classifier guidance scale, quality only)")
    parser.add_argument("--guide-classifier", default=DEFAULT_GUIDE,
                        help="quality: noise-aware classifier for the CG field of a spec")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--reference", default=None,
                        help="quality: spec whose images the others are compared with, "
                             "e.g. ddim:1000 (the converged ODE solution)")
    parser.add_argument("--guidance", type=float, default=2.0)
    parser.add_argument("--images", type=int, default=100, help="sampling: images timed")
    parser.add_argument("--per-class", type=int, default=10, help="quality: per digit+dataset")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--model-chunk", type=int, default=100,
                        help="quality: rows per model call (2 x images per batch avoids padding)")
    parser.add_argument("--steps", type=int, default=5, help="training: steps timed")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mnistm-classifier", default=None)
    parser.add_argument("--svhn-classifier", default=None)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0 = default)")
    parser.add_argument("--json", default=None, metavar="PATH",
                        help="quality: also write the table as JSON")
    parser.add_argument("--device", default=default_device())
    args = parser.parse_args(argv)
    if args.json and args.what != "quality":
        raise UserError("--json is written by quality only")
    if args.json:
        check_writable(args.json)
    if min(args.images, args.per_class, args.batch_size, args.steps, args.model_chunk) < 1:
        raise UserError("--images, --per-class, --batch-size, --steps and --model-chunk must "
                        "be >= 1")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = check_device(args.device)
    {"sampling": bench_sampling, "training": bench_training,
     "quality": bench_quality}[args.what](args, device)


if __name__ == "__main__":
    run_cli(main)
