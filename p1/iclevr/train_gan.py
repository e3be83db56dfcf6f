"""Train the conditional GAN of ``p1.iclevr.gan`` on iCLEVR (resumable).

    python3 -m p1.iclevr.train_gan --data iclevr_data --out runs/iclevr_gan [--steps 20000]

Writes into ``--out``: ``checkpoint.pt`` (both networks, the generator's EMA, both optimizers,
step; rewritten atomically every ``--ckpt-every`` steps; a re-run with the same ``--out``
resumes from it), ``gan.pt`` (the EMA generator with standing BatchNorm statistics and the
training seconds: what ``python3 -m p1.iclevr --model gan --ckpt`` loads), ``loss.csv``,
``loss_curve.png`` (the discriminator's and the generator's loss) and
``samples/step_NNNNNN.png`` (test.json's 32 sets).

One discriminator step and one generator step per iteration, on the same fakes; Adam with
β = (0, 0.9) and the two-timescale rates (Heusel et al. 2017). Batches, latents and flips come
from generators seeded by (seed, step), so a resumed run continues exactly as an
uninterrupted one would.
"""
import argparse
import copy
import csv
import os
import time

import torch
from PIL import Image
from torchvision.utils import save_image
from tqdm import tqdm

from p1.data import to_model_range
from p1.devices import check_device, default_device
from p1.errors import UserError, run_cli
from p1.figures import save_line_chart
from p1.iclevr.data import load_iclevr
from p1.iclevr.gan import (
    DISCRIMINATOR_DEFAULTS,
    GENERATOR_DEFAULTS,
    KIND,
    Discriminator,
    Generator,
    checkpoint_kind,
    discriminator_loss,
    export_state,
    generate,
    generator_loss,
    standing_statistics,
    teacher_loss,
)
from p1.iclevr.guide_classifier import load_iclevr_guide
from p1.iclevr.train import test_json_grid_conditions
from p1.model import count_parameters
from p1.train import atomic_save, ema_update

LOG_COLUMNS = ["step", "d_loss", "g_loss", "d_aux", "g_aux", "g_teacher", "images_per_s"]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="iclevr_data", help="folder with train.json and iclevr/")
    parser.add_argument("--out", default="runs/iclevr_gan",
                        help="run folder (resumed if it exists)")
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr-g", type=float, default=1e-4)
    parser.add_argument("--lr-d", type=float, default=4e-4)
    parser.add_argument("--aux-weight", type=float, default=1.0,
                        help="weight of the auxiliary multi-label loss (both networks)")
    parser.add_argument("--teacher", default=None,
                        help="frozen iCLEVR guide classifier (python3 -m "
                             "p1.iclevr.guide_classifier) whose BCE on the fakes is added to the "
                             "generator's loss; give it again when resuming")
    parser.add_argument("--teacher-weight", type=float, default=1.0)
    parser.add_argument("--ema-decay", type=float, default=0.999)
    parser.add_argument("--z-dim", type=int, default=GENERATOR_DEFAULTS["z_dim"])
    parser.add_argument("--g-channels", type=int, default=GENERATOR_DEFAULTS["channels"])
    parser.add_argument("--d-channels", type=int, default=DISCRIMINATOR_DEFAULTS["channels"])
    parser.add_argument("--image-size", type=int, default=GENERATOR_DEFAULTS["image_size"],
                        help="resolution the GAN works at (outputs are upsampled to 64)")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--ckpt-every", type=int, default=500)
    parser.add_argument("--sample-every", type=int, default=2000, help="0 = no sample grids")
    parser.add_argument("--standing-batches", type=int, default=16,
                        help="generated batches of 64 that set the exported BatchNorm statistics")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0 = torch's default)")
    parser.add_argument("--device", default=default_device())
    args = parser.parse_args(argv)
    for name in ("steps", "batch_size", "log_every", "ckpt_every", "standing_batches"):
        if getattr(args, name) <= 0:
            raise UserError(f"--{name.replace('_', '-')} must be positive")
    if (min(args.lr_g, args.lr_d) <= 0 or min(args.aux_weight, args.teacher_weight) < 0
            or not 0 <= args.ema_decay < 1):
        raise UserError("learning rates must be > 0, --aux-weight and --teacher-weight >= 0, "
                        "0 <= --ema-decay < 1")
    return args


def read_resume_state(path: str):
    """The training state in ``path``, or None; UserError for another model's run."""
    if not os.path.exists(path):
        return None
    try:
        state = torch.load(path, map_location="cpu")
    except Exception as err:
        raise UserError(f"cannot resume from {path}: {err}") from None
    kind = checkpoint_kind(state)
    if kind == "ddpm":
        raise UserError(f"{path} holds a DDPM run; give the GAN another --out")
    if kind != "gan" or "discriminator" not in state:
        raise UserError(f"cannot resume from {path}: not a p1.iclevr.train_gan checkpoint")
    return state


def write_loss_log(out_dir: str, rows, truncate_after: int = -1) -> None:
    """Append rows to loss.csv (first dropping rows past ``truncate_after`` when >= 0, as a
    resumed run trains those steps again) and redraw loss_curve.png."""
    path = os.path.join(out_dir, "loss.csv")
    logged = []
    if os.path.exists(path):
        with open(path) as handle:
            logged = list(csv.DictReader(handle))
    if truncate_after >= 0:
        logged = [row for row in logged if int(row["step"]) <= truncate_after]
    logged += [dict(zip(LOG_COLUMNS, row)) for row in rows]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, LOG_COLUMNS)
        writer.writeheader()
        writer.writerows(logged)
    if not logged:
        return
    steps = [int(row["step"]) for row in logged]
    charts = []
    for column, title in (("d_loss", "discriminator loss (hinge + auxiliary)"),
                          ("g_loss", "generator loss (-D + auxiliary)")):
        chart = os.path.join(out_dir, f".{column}.png")
        save_line_chart(steps, [float(row[column]) for row in logged], chart, title, "step")
        charts.append(Image.open(chart).convert("RGB"))
        os.remove(chart)
    combined = Image.new("RGB", (sum(c.width for c in charts), charts[0].height), "white")
    for index, chart in enumerate(charts):
        combined.paste(chart, (index * charts[0].width, 0))
    combined.save(os.path.join(out_dir, "loss_curve.png"))


def logged_training_seconds(out_dir: str, batch_size: int) -> float:
    """Seconds spent in training steps, from loss.csv: each row's steps × batch / images_per_s
    (sampling and checkpointing excluded; sums across resumed runs)."""
    path = os.path.join(out_dir, "loss.csv")
    seconds, previous = 0.0, 0
    with open(path) as handle:
        for row in csv.DictReader(handle):
            step = int(row["step"])
            seconds += (step - previous) * batch_size / max(float(row["images_per_s"]), 1e-9)
            previous = step
    return seconds


def frozen_generator(ema: Generator, conds: torch.Tensor, args) -> Generator:
    """A copy of the EMA generator in eval mode with standing BatchNorm statistics."""
    frozen = copy.deepcopy(ema)
    standing_statistics(frozen, conds, args.standing_batches, 64, args.seed)
    return frozen


def train(args: argparse.Namespace) -> None:
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = check_device(args.device)
    checkpoint_path = os.path.join(args.out, "checkpoint.pt")
    state = read_resume_state(checkpoint_path)
    teacher = load_iclevr_guide(args.teacher, device, None) if args.teacher else None
    images, conds = load_iclevr(args.data, size=args.image_size, limit=args.limit)
    x_all = to_model_range(images)
    if state is not None:
        g_config, d_config = state["generator_config"], state["discriminator_config"]
    else:
        g_config = {"z_dim": args.z_dim, "cond_dim": conds.shape[1], "channels": args.g_channels,
                    "image_size": args.image_size}
        d_config = {"cond_dim": conds.shape[1], "channels": args.d_channels}
    if g_config["image_size"] != x_all.shape[-1]:
        raise UserError(f"{checkpoint_path} works at {g_config['image_size']}x"
                        f"{g_config['image_size']}; resume with --image-size "
                        f"{g_config['image_size']}")
    torch.manual_seed(args.seed)
    try:
        generator, discriminator = Generator(**g_config), Discriminator(**d_config)
    except ValueError as err:
        raise UserError(f"bad GAN settings: {err}") from None
    generator, discriminator = generator.to(device), discriminator.to(device)
    ema = copy.deepcopy(generator).eval().requires_grad_(False)
    opt_g = torch.optim.Adam(generator.parameters(), lr=args.lr_g, betas=(0.0, 0.9))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=args.lr_d, betas=(0.0, 0.9))
    step = 0
    if state is not None:
        try:
            generator.load_state_dict(state["generator"])
            discriminator.load_state_dict(state["discriminator"])
            ema.load_state_dict(state["generator_ema"])
            opt_g.load_state_dict(state["opt_g"])
            opt_d.load_state_dict(state["opt_d"])
        except (KeyError, RuntimeError, ValueError) as err:
            raise UserError(f"{checkpoint_path} does not match this GAN: "
                            f"{str(err).splitlines()[0]}") from None
        step = state["step"]
    os.makedirs(os.path.join(args.out, "samples"), exist_ok=True)
    write_loss_log(args.out, [], truncate_after=step)
    print(f"{len(x_all)} images at {args.image_size}x{args.image_size}, generator "
          f"{count_parameters(generator):,} / discriminator {count_parameters(discriminator):,} "
          f"parameters, device {device}, " + (f"resuming at step {step}" if step else
                                              "from scratch"))

    def save_state(current_step: int) -> None:
        atomic_save({"kind": KIND, "generator_config": g_config, "discriminator_config": d_config,
                     "generator": generator.state_dict(),
                     "discriminator": discriminator.state_dict(),
                     "generator_ema": ema.state_dict(), "opt_g": opt_g.state_dict(),
                     "opt_d": opt_d.state_dict(), "step": current_step, "args": vars(args)},
                    checkpoint_path)
        exported = export_state(frozen_generator(ema, conds, args).cpu(), g_config, current_step)
        exported["train_seconds"] = logged_training_seconds(args.out, args.batch_size)
        atomic_save(exported, os.path.join(args.out, "gan.pt"))

    grid_conds, per_row = test_json_grid_conditions()
    progress = tqdm(total=args.steps, initial=step, dynamic_ncols=True)
    pending, window, window_start = [], [], time.time()
    generator.train()
    discriminator.train()
    while step < args.steps:
        rng = torch.Generator().manual_seed(args.seed * 1_000_003 + step)
        index = torch.randint(len(x_all), (args.batch_size,), generator=rng)
        flip = torch.rand(args.batch_size, generator=rng) < 0.5
        real = torch.where(flip[:, None, None, None], x_all[index].flip(-1), x_all[index])
        real, y_real = real.to(device), conds[index].to(device)
        y_fake = conds[torch.randint(len(x_all), (args.batch_size,), generator=rng)].to(device)
        z = torch.randn((args.batch_size, g_config["z_dim"]), generator=rng).to(device)

        fake = generator(z, y_fake)
        d_losses = discriminator_loss(discriminator, real, y_real, fake.detach(), y_fake,
                                      args.aux_weight)
        opt_d.zero_grad(set_to_none=True)
        d_losses["total"].backward()
        opt_d.step()
        g_losses = generator_loss(discriminator, fake, y_fake, args.aux_weight)
        taught = teacher_loss(teacher, fake, y_fake) if teacher is not None else torch.zeros(())
        opt_g.zero_grad(set_to_none=True)
        (g_losses["total"] + args.teacher_weight * taught).backward()
        opt_g.step()
        step += 1
        ema_update(ema, generator, min(args.ema_decay, (1 + step) / (10 + step)))
        window.append([d_losses["total"].item(), g_losses["total"].item(),
                       d_losses["auxiliary"].item(), g_losses["auxiliary"].item(), taught.item()])
        progress.update(1)
        if step % args.log_every == 0 or step == args.steps:
            seconds = time.time() - window_start
            means = [sum(column) / len(window) for column in zip(*window)]
            rate = len(window) * args.batch_size / max(seconds, 1e-9)
            progress.set_postfix(d=f"{means[0]:.3f}", g=f"{means[1]:.3f}", img_s=f"{rate:.0f}")
            pending.append([step] + [f"{m:.6f}" for m in means] + [f"{rate:.1f}"])
            window, window_start = [], time.time()
        if step % args.ckpt_every == 0 or step == args.steps:
            write_loss_log(args.out, pending)
            pending = []
            save_state(step)
        if args.sample_every and (step % args.sample_every == 0 or step == args.steps):
            grid = generate(frozen_generator(ema, conds, args), grid_conds,
                            list(range(len(grid_conds))))
            save_image(grid.float() / 255, os.path.join(args.out, "samples",
                                                        f"step_{step:06d}.png"), nrow=per_row)
            window_start = time.time()
    progress.close()
    print(f"done: {os.path.join(args.out, 'gan.pt')} (step {step})")


def main(argv=None) -> None:
    train(parse_args(argv))


if __name__ == "__main__":
    run_cli(main)
