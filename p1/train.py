"""Train the conditional DDPM on the digits (one model for MNIST-M and SVHN).

    python3 -m p1.train --data hw2_data/digits --out runs/p1 [--steps 30000] [--batch-size 128]
    torchrun --nproc_per_node 4 -m p1.train ...      # DistributedDataParallel, one process a GPU

The training loop (``train``) takes any ``TrainingSet``; Lab 6 plugs in iCLEVR from its side
(``python3 -m p1.iclevr.train``). Writes into ``--out``: ``checkpoint.pt`` (model, EMA,
optimizer, step, RNG; rewritten atomically every ``--ckpt-every`` steps, and a re-run with the
same ``--out`` resumes from it), ``ema.pt`` (EMA weights + config: what ``hw2_1.sh --ckpt``
loads), ``loss.csv``, ``loss_curve.png`` and ``samples/step_NNNNNN.png`` (row d is digit d,
MNIST-M then SVHN).

Batches and noise are drawn from generators seeded by (seed, epoch) and (seed, step, rank),
so a resumed run continues exactly as an uninterrupted one would.
"""
import argparse
import copy
import csv
import math
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torchvision.utils import save_image
from tqdm import tqdm

from p1.data import DATASETS, NUM_DIGITS, digit_condition, load_digits, to_model_range
from p1.devices import check_device, default_device
from p1.diffusion import drop_condition, make_schedule, training_loss
from p1.errors import UserError, run_cli
from p1.figures import save_line_chart
from p1.generate import load_checkpoint, sample_images
from p1.model import build_model, count_parameters


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """ema ← decay · ema + (1 − decay) · model, parameter by parameter."""
    for ema_param, param in zip(ema.parameters(), model.parameters()):
        ema_param.lerp_(param.detach(), 1.0 - decay)
    for ema_buffer, buffer in zip(ema.buffers(), model.buffers()):
        ema_buffer.copy_(buffer)


def learning_rate(step: int, base: float, warmup: int, total: int) -> float:
    """Linear warm-up, then cosine decay to 10 % of ``base`` at ``total`` steps."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (0.1 + 0.45 * (1 + math.cos(math.pi * progress)))


def batch_indices(step: int, batch_size: int, num_items: int, seed: int, rank: int,
                  world: int) -> torch.Tensor:
    """This rank's share of the global batch of ``step``: epochs are seeded permutations."""
    per_epoch = max(1, num_items // batch_size)
    epoch, position = divmod(step, per_epoch)
    order = torch.randperm(num_items, generator=torch.Generator().manual_seed(seed * 7919 + epoch))
    return order[position * batch_size:(position + 1) * batch_size][rank::world]


def atomic_save(obj, path: str) -> None:
    """torch.save to a temporary file, then rename: a kill never leaves a half-written file."""
    temporary = path + ".tmp"
    torch.save(obj, temporary)
    os.replace(temporary, path)


def inference_state(ema: torch.nn.Module, model_config: dict, schedule_config: dict,
                    step: int, cond_layout: str) -> dict:
    return {"ema": ema.state_dict(), "model_config": model_config,
            "schedule_config": schedule_config, "step": step, "cond_layout": cond_layout}


def digit_grid_conditions(per_digit: int = 4):
    """(conditions (80, 12), images per row): row d holds ``per_digit`` MNIST-M then
    ``per_digit`` SVHN samples of digit d."""
    jobs = [(d, k) for d in range(NUM_DIGITS) for k in range(len(DATASETS))
            for _ in range(per_digit)]
    return digit_condition([d for d, _ in jobs], [k for _, k in jobs]), per_digit * 2


@dataclass
class TrainingSet:
    """What differs between the datasets: images uint8 (N, 3, H, W), conditions (N, D), the
    model and schedule defaults, and the conditions of the sample grids."""
    images: torch.Tensor
    conds: torch.Tensor
    model_config: dict
    schedule_config: dict
    cond_layout: str
    grid_conditions: Callable


def digit_training_set(args) -> TrainingSet:
    images, conds = load_digits(args.data, limit=args.limit)
    config = {"image_size": 28, "patch_size": 1, "channel_mults": (1, 2, 2)}
    return TrainingSet(images, conds, config, {"kind": "linear"}, "digit10+dataset2",
                       digit_grid_conditions)


def sample_grid(ema: torch.nn.Module, schedule, path: str, grid_conditions: Callable,
                steps: int = 20) -> None:
    """The grid's conditions sampled with DPM-Solver++ and guidance 2, one seed each."""
    cond, per_row = grid_conditions()
    images = sample_images(ema, schedule, cond, list(range(len(cond))), "dpm++", steps, 2.0,
                           batch_size=len(cond))
    save_image(images.float() / 255.0, path, nrow=per_row, padding=1)


def truncate_loss_log(out_dir: str, step: int) -> None:
    """On resume, drop log rows past the checkpoint's step (they will be trained again)."""
    path = os.path.join(out_dir, "loss.csv")
    if os.path.exists(path):
        with open(path) as handle:
            lines = handle.readlines()
        kept = lines[:1] + [line for line in lines[1:] if int(line.split(",")[0]) <= step]
        with open(path, "w") as handle:
            handle.writelines(kept)


def write_loss_log(out_dir: str, rows) -> None:
    path = os.path.join(out_dir, "loss.csv")
    new_file = not os.path.exists(path)
    with open(path, "a", newline="") as handle:
        writer = csv.writer(handle)
        if new_file:
            writer.writerow(["step", "loss", "lr", "images_per_s"])
        writer.writerows(rows)
    with open(path) as handle:
        logged = list(csv.DictReader(handle))
    save_line_chart([int(r["step"]) for r in logged], [float(r["loss"]) for r in logged],
                    os.path.join(out_dir, "loss_curve.png"),
                    "training loss (MSE on the noise eps), log scale", "step")


def setup_distributed(device_arg: str):
    """(rank, world size, device). Under torchrun, even with one process, joins the process
    group (NCCL on GPU, gloo on CPU) and uses GPU LOCAL_RANK."""
    if "LOCAL_RANK" not in os.environ:
        return 0, 1, check_device(device_arg)
    device = check_device(device_arg)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size(), device


def autocast_for(device: torch.device, amp: str):
    if amp == "off":
        return nullcontext()
    if amp == "fp16" and device.type != "cuda":
        raise UserError("--amp fp16 needs a GPU; use --amp bf16 or off on the CPU")
    return torch.autocast(device.type, dtype=torch.float16 if amp == "fp16" else torch.bfloat16)


def parse_args(argv=None, description=None, data="hw2_data/digits",
               out="runs/p1"):
    """The training options; ``data`` and ``out`` are the dataset's default folders."""
    parser = argparse.ArgumentParser(description=description or __doc__.split("\n\n")[0])
    parser.add_argument("--data", default=data, help=f"data folder (default {data})")
    parser.add_argument("--out", default=out, help="run folder (resumed if it exists)")
    parser.add_argument("--steps", type=int, default=30000, help="total optimizer steps")
    parser.add_argument("--init", default=None, metavar="EMA_PT",
                        help="start a new run from these weights (an ema.pt or shipped "
                             "checkpoint: model and EMA; fresh optimizer and learning-rate "
                             "cycle); ignored when --out holds a run to resume")
    parser.add_argument("--batch-size", type=int, default=128, help="global batch size")
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--ema-decay", type=float, default=0.999)
    parser.add_argument("--min-snr-gamma", type=float, default=0.0,
                        help="Min-SNR-γ loss weighting (0 = the plain DDPM loss; 5 is usual)")
    parser.add_argument("--cond-drop", type=float, default=0.1,
                        help="probability of training a sample without its condition (CFG)")
    parser.add_argument("--base-channels", type=int, default=32)
    parser.add_argument("--channel-mults", type=int, nargs="+", default=None,
                        help="channel multiplier per level (default: the dataset's)")
    parser.add_argument("--patch-size", type=int, default=None,
                        help="pixels folded into channels (default: the dataset's)")
    parser.add_argument("--blocks-per-level", type=int, default=1)
    parser.add_argument("--attention-levels", type=int, nargs="*", default=[2])
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--timesteps", type=int, default=1000)
    parser.add_argument("--schedule", choices=("linear", "cosine"), default=None,
                        help="noise schedule (default: the dataset's)")
    parser.add_argument("--limit", type=int, default=0,
                        help="use only the first N images of each dataset (0 = all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--amp", choices=("auto", "off", "bf16", "fp16"), default="auto",
                        help="autocast: auto = fp16 on GPU, off on CPU")
    parser.add_argument("--channels-last", action="store_true",
                        help="channels_last memory format (faster on recent CPUs and GPUs)")
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--ckpt-every", type=int, default=500)
    parser.add_argument("--sample-every", type=int, default=2000, help="0 = never")
    parser.add_argument("--sample-steps", type=int, default=20,
                        help="DPM-Solver++ steps of the sample grids")
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads for torch (0 = its default; 1 is faster on a busy CPU)")
    parser.add_argument("--device", default=default_device())
    args = parser.parse_args(argv)
    for name in ("steps", "batch_size", "log_every", "ckpt_every", "timesteps"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1")
    if args.min_snr_gamma < 0:
        raise UserError("--min-snr-gamma must be >= 0")
    if not 0.0 <= args.cond_drop < 1.0:
        raise UserError("--cond-drop must be in [0, 1)")
    return args


def read_initial_weights(path: Optional[str], cond_layout: str) -> Optional[dict]:
    """The checkpoint ``--init`` names (an ``ema.pt``: EMA weights and configs, checked by
    ``load_checkpoint``), or None without one; UserError for a file that is not one or was
    trained on another condition layout."""
    if path is None:
        return None
    _, _, initial = load_checkpoint(path, torch.device("cpu"), "--init takes an ema.pt")
    if initial.get("cond_layout") != cond_layout:
        raise UserError(f"--init: {path} was trained on {initial.get('cond_layout')}, not "
                        f"{cond_layout}")
    return initial


def train(args, load_training_set: Callable[[argparse.Namespace], TrainingSet]) -> None:
    """The whole run (resumed when ``--out`` holds a checkpoint) on the dataset that
    ``load_training_set(args)`` returns."""
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    rank, world, device = setup_distributed(args.device)
    if args.batch_size % world:
        raise UserError(f"--batch-size {args.batch_size} is not divisible by {world} processes")
    amp = args.amp if args.amp != "auto" else ("fp16" if device.type == "cuda" else "off")
    checkpoint_path = os.path.join(args.out, "checkpoint.pt")

    data = load_training_set(args)
    model_config = dict(data.model_config, image_channels=3, cond_dim=data.conds.shape[1],
                        base_channels=args.base_channels,
                        blocks_per_level=args.blocks_per_level,
                        attention_levels=tuple(args.attention_levels), dropout=args.dropout)
    if args.channel_mults is not None:
        model_config["channel_mults"] = tuple(args.channel_mults)
    if args.patch_size is not None:
        model_config["patch_size"] = args.patch_size
    schedule_config = dict(data.schedule_config, num_timesteps=args.timesteps)
    if args.schedule is not None:
        schedule_config["kind"] = args.schedule
    state = None
    if os.path.exists(checkpoint_path):
        try:
            state = torch.load(checkpoint_path, map_location="cpu")
        except Exception as err:
            raise UserError(f"cannot resume from {checkpoint_path}: {err}") from None
        if not isinstance(state, dict) or "model_config" not in state:
            kind = state.get("kind", "another model's") if isinstance(state, dict) else "no"
            raise UserError(f"{checkpoint_path} holds {kind} run, not a DDPM's; give the DDPM "
                            "another --out")
        model_config, schedule_config = state["model_config"], state["schedule_config"]
    initial = read_initial_weights(args.init, data.cond_layout) if state is None else None
    if initial is not None:
        model_config, schedule_config = initial["model_config"], initial["schedule_config"]

    x_all, conds = to_model_range(data.images), data.conds
    schedule = make_schedule(schedule_config)
    torch.manual_seed(args.seed)
    try:
        model = build_model(model_config).to(device)
    except ValueError as err:
        raise UserError(f"bad model settings: {err}") from None
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    scaler_class = getattr(getattr(torch, "amp", None), "GradScaler", torch.cuda.amp.GradScaler)
    scaler = scaler_class(enabled=amp == "fp16" and device.type == "cuda")
    step = 0
    # the exported ema.pt counts the steps of the run --init started from too
    steps_before = initial.get("step", 0) if initial is not None else (
        state.get("steps_before", 0) if state is not None else 0)
    if initial is not None:
        model.load_state_dict(initial["ema"])
        ema.load_state_dict(initial["ema"])
    if state is not None:
        try:
            model.load_state_dict(state["model"])
            ema.load_state_dict(state["ema"])
            optimizer.load_state_dict(state["optimizer"])
            scaler.load_state_dict(state["scaler"])
        except (KeyError, RuntimeError, ValueError) as err:
            raise UserError(f"{checkpoint_path} does not match this model: "
                            f"{str(err).splitlines()[0]}") from None
        step = state["step"]
        torch.set_rng_state(state["rng"]["torch"])
        if device.type == "cuda" and state["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state(state["rng"]["cuda"], device)
    net = DistributedDataParallel(model) if dist.is_initialized() else model

    if rank == 0:
        os.makedirs(os.path.join(args.out, "samples"), exist_ok=True)
        truncate_loss_log(args.out, step)
        print(f"{len(x_all)} images, {count_parameters(model):,} parameters, device {device}, "
              f"{world} process(es), amp {amp}, " + (f"resuming at step {step}" if step else
                                                      "from scratch"))

    def save_state(current_step: int) -> None:
        rng = {"torch": torch.get_rng_state(),
               "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}
        atomic_save({"model": model.state_dict(), "ema": ema.state_dict(),
                     "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                     "step": current_step, "steps_before": steps_before, "rng": rng,
                     "model_config": model_config,
                     "schedule_config": schedule_config, "args": vars(args)}, checkpoint_path)
        atomic_save(inference_state(ema, model_config, schedule_config, steps_before + current_step,
                                    data.cond_layout), os.path.join(args.out, "ema.pt"))

    progress = tqdm(total=args.steps, initial=step, disable=rank != 0, dynamic_ncols=True)
    pending, window_loss, window_start = [], [], time.time()
    model.train()
    while step < args.steps:
        lr = learning_rate(step, args.lr, args.warmup, args.steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        index = batch_indices(step, args.batch_size, len(x_all), args.seed, rank, world)
        generator = torch.Generator().manual_seed((args.seed * 1_000_003 + step) * 64 + rank)
        x0 = x_all[index].to(device).contiguous(memory_format=memory_format)
        cond = drop_condition(conds[index], args.cond_drop, generator).to(device)
        with autocast_for(device, amp):
            loss = training_loss(net, schedule, x0, cond, generator, args.min_snr_gamma)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(optimizer)
        scaler.update()
        step += 1
        ema_update(ema, model, min(args.ema_decay, (1 + step) / (10 + step)))
        window_loss.append(loss.item())
        progress.update(1)
        if rank != 0:
            continue
        if step % args.log_every == 0 or step == args.steps:
            seconds = time.time() - window_start
            mean_loss = sum(window_loss) / len(window_loss)
            rate = len(window_loss) * args.batch_size / max(seconds, 1e-9)
            progress.set_postfix(loss=f"{mean_loss:.4f}", img_s=f"{rate:.0f}")
            pending.append([step, f"{mean_loss:.6f}", f"{lr:.3e}", f"{rate:.1f}"])
            window_loss, window_start = [], time.time()
        if step % args.ckpt_every == 0 or step == args.steps:
            save_state(step)
            write_loss_log(args.out, pending)
            pending = []
        if args.sample_every and (step % args.sample_every == 0 or step == args.steps):
            sample_grid(ema, schedule, os.path.join(args.out, "samples", f"step_{step:06d}.png"),
                        data.grid_conditions, min(args.sample_steps, schedule.num_timesteps))
            window_start = time.time()
    progress.close()
    if dist.is_initialized():
        dist.destroy_process_group()
    if rank == 0:
        print(f"done: {os.path.join(args.out, 'ema.pt')} (step {step})")


def main(argv=None) -> None:
    train(parse_args(argv), digit_training_set)


if __name__ == "__main__":
    run_cli(main)
