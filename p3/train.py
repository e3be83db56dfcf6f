"""Textual inversion (Gal et al. 2022, arXiv 2208.01618) of one input.json token on SD v1.

    python3 -m p3.train --concept 0 --ckpt sd-v1-4.ckpt --out runs/new1 --init-word dog

Learns the vectors of one placeholder token of input.json (`<new1>` of concept "0" from the
images in SRC/0/, ...). Only those vectors are trained: every weight of the model, the whole
token-embedding table included, is frozen and never written to. The vectors enter the text
encoder as extra rows (`TextEncoder.forward(ids, extra_embeddings)`), so the table itself
stays bit-for-bit as loaded.

Loss: LDM noise prediction, E‖ε − ε_θ(√ᾱ_t z_0 + √(1−ᾱ_t) ε, t, c)‖² with z_0 a sample of
the VAE posterior × 0.18215, t uniform in 0…999 on the scaled-linear schedule.

OUT gets `learned_embeds.pt` (the latest vectors, in the format `hw2_3.sh` reads from
`p3/embeddings/`), `embeddings/stepNNNNNN.pt` every --save-every steps, `state.pt` (vectors,
optimizer, schedule and log, for --resume), `loss.csv`, `loss.png`, and
`validation/stepNNNNNN.png` grids.
"""
import argparse
import csv
import hashlib
import math
import os
import sys
import time
from typing import List, Tuple

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torchvision.utils import make_grid, save_image
from tqdm import tqdm

from .data import TEMPLATES, load_images, sample_batch
from .diffusion import LATENT_SCALE, N_TRAIN_STEPS, scaled_linear_alphas_cumprod
from .errors import UserError, run_cli
from .generate import generate_batch, read_input, resolve_device
from .model import CONFIGS, load_checkpoint
from .tokenizer import CLIPTokenizer

LR_SCHEDULES = ("constant", "linear", "cosine")


def step_seed(seed: int, step: int) -> int:
    """A 48-bit seed for one optimizer step: a resumed run draws what an unbroken run draws."""
    return int.from_bytes(hashlib.sha256(f"train/{seed}/{step}".encode()).digest()[:6], "little")


def check_placeholder(tokenizer: CLIPTokenizer, token: str):
    """The placeholder must not already be one token of the CLIP vocabulary: its learned
    vectors would then shadow a word the model knows."""
    ids = tokenizer.encode_text(token)
    if len(ids) == 1:
        raise UserError(f"placeholder {token!r} is already a single token of the CLIP vocabulary "
                        "(id {}); use a new string such as <new1>".format(ids[0]))


def initial_vectors(model, tokenizer: CLIPTokenizer, word: str, n_vectors: int) -> torch.Tensor:
    """(n_vectors, hidden) float32 copies of the embedding row of `word` (one CLIP token)."""
    ids = tokenizer.encode_text(word)
    if len(ids) != 1:
        raise UserError(f"--init-word {word!r} is {len(ids)} CLIP tokens; give a word that is a "
                        "single token (e.g. dog, painting, illustration)")
    row = model.text_encoder.text_model.embeddings.token_embedding.weight[ids[0]]
    return row.detach().float().cpu().repeat(n_vectors, 1)


def read_embedding(path, token: str, hidden_size: int) -> torch.Tensor:
    """The (n_vectors, hidden) vectors of an embedding file in the `hw2_3.sh` format."""
    if not os.path.isfile(path):
        raise UserError(f"embedding file not found: {path}")
    try:
        entry = torch.load(path, map_location="cpu")
    except Exception as err:  # noqa: BLE001 - any unreadable file is the same user error
        raise UserError(f"cannot read embedding file {path}: {err}") from None
    if not (isinstance(entry, dict) and torch.is_tensor(entry.get("embedding"))):
        raise UserError(f"{path}: expected {{'token': str, 'embedding': tensor}}")
    if entry.get("token") != token:
        raise UserError(f"{path} holds token {entry.get('token')!r}, not {token!r}")
    vectors = entry["embedding"]
    vectors = vectors[None] if vectors.dim() == 1 else vectors
    if vectors.dim() != 2 or vectors.shape[1] != hidden_size or not vectors.is_floating_point():
        raise UserError(f"{path}: embedding has shape {tuple(vectors.shape)}, expected "
                        f"(n_vectors, {hidden_size}) for this model")
    return vectors.float()


def atomic_save(obj, path):
    """torch.save to a temporary name, then rename: a reader never sees half a file."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def embedding_entry(token: str, vectors: torch.Tensor) -> dict:
    """The `hw2_3.sh` embedding format (p3/embeddings/README.md)."""
    return {"token": token, "embedding": vectors.detach().float().cpu().clone()}


def lr_factor(schedule: str, warmup: int, total: int):
    """Multiplier of the base learning rate after `step` optimizer steps: linear warm-up over
    `warmup` steps, then constant, linear decay to 0, or half-cosine decay to 0 at `total`."""

    def factor(step):
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        if schedule == "linear":
            return 1.0 - progress
        if schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0

    return factor


@torch.no_grad()
def encode_latents(vae, pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Images (B, 3, H, W) in [-1, 1] -> scaled posterior samples z_0 (B, 4, H/8, W/8), fp32."""
    device = next(vae.parameters()).device
    mean, std = vae.encode(pixels.to(device, torch.float32))
    eps = torch.randn(mean.shape, generator=generator).to(device)
    return (mean + std * eps) * LATENT_SCALE


def freeze(model, device, half):
    """Every weight frozen (eval mode, no gradients) on `device`; the UNet and the text
    encoder in fp16 when `half` (the backward pass runs through them in fp16), the VAE in fp32
    (it only encodes, under no_grad)."""
    model.eval().requires_grad_(False)
    dtype = torch.float16 if half else torch.float32
    model.unet.to(device, dtype)
    model.text_encoder.to(device, dtype)
    model.vae.to(device, torch.float32)
    return model


def denoising_loss(model, ids, vectors, latents, alphas_cumprod, generator) -> torch.Tensor:
    """Noise-prediction MSE at t ~ U{0, …, 999} (Ho et al. 2020, eq. 14), a float32 scalar.

    ids: (B, 77) with placeholder ids >= vocab_size; vectors: (n_vectors, hidden), trainable;
    latents: (B, 4, h, w) z_0.
    """
    device = latents.device
    t = torch.randint(N_TRAIN_STEPS, (latents.shape[0],), generator=generator)
    noise = torch.randn(latents.shape, generator=generator).to(device)
    a = alphas_cumprod[t].float().view(-1, 1, 1, 1).to(device)
    noisy = a.sqrt() * latents + (1 - a).sqrt() * noise
    context = model.text_encoder(ids, vectors)
    return F.mse_loss(model.unet(noisy, t.to(device), context).float(), noise)


@torch.no_grad()
def render_validation(model, tokenizer, vectors, prompts, n_images, steps, guidance, seed):
    """A grid (3, H', W') in [0, 1]: one row of `n_images` per prompt, DPM-Solver++(2M).
    Image n of every row starts from the same seeded noise at every checkpoint."""
    device = vectors.device
    encode = model.text_encoder
    uncond = encode(torch.tensor(tokenizer([""]), device=device))
    cfg = model.config
    shape = (cfg.unet.in_channels, cfg.latent_size, cfg.latent_size)
    noise = torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(seed + n))
                         for n in range(n_images)]).to(device)
    rows = []
    for prompt in prompts:
        context = encode(torch.tensor(tokenizer([prompt]), device=device), vectors)
        context = context.expand(n_images, -1, -1)
        rows.append(generate_batch(model, context, uncond, noise, "dpmpp2m", steps, guidance))
    return make_grid(torch.cat(rows), nrow=n_images, padding=2)


def moving_average(values: List[float], window: int) -> List[float]:
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v - (values[i - window] if i >= window else 0.0)
        out.append(total / min(i + 1, window))
    return out


def draw_loss_curve(log: List[Tuple[int, float, float]], path, title, size=(720, 400)):
    """PNG of the per-step loss (grey) and its moving average (blue) against the step."""
    width, height = size
    left, right, top, bottom = 70, 20, 30, 40
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    steps = [s for s, _, _ in log]
    losses = [loss for _, loss, _ in log]
    low, high = min(losses), max(losses)
    span_y = (high - low) or 1.0
    span_x = (steps[-1] - steps[0]) or 1

    def xy(step, loss):
        x = left + (step - steps[0]) / span_x * (width - left - right)
        y = top + (high - loss) / span_y * (height - top - bottom)
        return x, y

    draw.rectangle([left, top, width - right, height - bottom], outline="black")
    smooth = moving_average(losses, max(1, len(losses) // 20))
    for values, colour in ((losses, (190, 190, 190)), (smooth, (31, 119, 180))):
        points = [xy(s, v) for s, v in zip(steps, values)]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
    draw.text((left, 8), title, fill="black")
    draw.text((5, top), f"{high:.4f}", fill="black")
    draw.text((5, height - bottom - 10), f"{low:.4f}", fill="black")
    draw.text((left, height - bottom + 8), f"step {steps[0]}", fill="black")
    draw.text((width - right - 90, height - bottom + 8), f"step {steps[-1]}", fill="black")
    draw.text((width // 2 - 60, height - 20), "loss (grey), moving average (blue)", fill="black")
    tmp = f"{path}.tmp.png"
    image.save(tmp)
    os.replace(tmp, path)


def write_log(log, out_dir, token):
    tmp = os.path.join(out_dir, "loss.csv.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["step", "loss", "lr"])
        writer.writerows((s, f"{loss:.6f}", f"{lr:.6g}") for s, loss, lr in log)
    os.replace(tmp, os.path.join(out_dir, "loss.csv"))
    if log:
        draw_loss_curve(log, os.path.join(out_dir, "loss.png"), f"textual inversion {token}")


def grad_scaler(enabled):
    """Dynamic loss scaling for the fp16 backward pass (the vectors themselves stay fp32)."""
    if hasattr(torch, "amp") and hasattr(torch.amp, "GradScaler"):
        return torch.amp.GradScaler("cuda", enabled=enabled)
    return torch.cuda.amp.GradScaler(enabled=enabled)


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python3 -m p3.train", description=__doc__.split("\n")[0])
    io = p.add_argument_group("data and files")
    io.add_argument("--json", default="hw2_data/textual_inversion/input.json",
                    help="input.json naming the placeholder token of each concept")
    io.add_argument("--src", default="hw2_data/textual_inversion",
                    help="folder with one image folder per concept key (SRC/0/, SRC/1/)")
    io.add_argument("--concept", default="0", help="key of input.json to learn (default 0)")
    io.add_argument("--ckpt", required=True, help="Stable Diffusion v1 checkpoint")
    io.add_argument("--out", required=True, help="run folder (new, or with --resume)")
    io.add_argument("--resume", action="store_true", help="continue the run saved in OUT")
    io.add_argument("--init-embedding", default=None,
                    help="start from this embedding file (hw2_3.sh format) instead of a word")
    io.add_argument("--config", choices=sorted(CONFIGS), default="v1",
                    help="model size (tiny is for tests)")
    io.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda")
    ti = p.add_argument_group("textual inversion")
    ti.add_argument("--vectors", type=int, default=1, help="vectors per placeholder token")
    ti.add_argument("--init-word", default=None,
                    help="single CLIP token whose embedding starts every vector (e.g. dog)")
    ti.add_argument("--templates", choices=sorted(TEMPLATES), default="object",
                    help="caption templates: 'a photo of a {}' or 'a painting in the style of {}'")
    ti.add_argument("--min-crop-scale", type=float, default=0.8,
                    help="random square crops of this to 1 times the short side (1: no crop)")
    ti.add_argument("--flip-p", type=float, default=0.5, help="horizontal flip probability")
    opt = p.add_argument_group("optimisation")
    opt.add_argument("--max-steps", type=int, default=3000, help="optimizer steps in total")
    opt.add_argument("--batch-size", type=int, default=1, help="images per micro-batch")
    opt.add_argument("--grad-accum", type=int, default=4, help="micro-batches per step")
    opt.add_argument("--lr", type=float, default=5e-3, help="AdamW learning rate (not scaled)")
    opt.add_argument("--lr-schedule", choices=LR_SCHEDULES, default="constant")
    opt.add_argument("--warmup-steps", type=int, default=0)
    opt.add_argument("--weight-decay", type=float, default=0.0)
    opt.add_argument("--seed", type=int, default=0)
    opt.add_argument("--fp32", action="store_true",
                     help="keep the frozen UNet and text encoder in fp32 on a GPU (default fp16)")
    opt.add_argument("--gradient-checkpointing", action="store_true",
                     help="recompute UNet blocks in the backward pass (less memory)")
    log = p.add_argument_group("saving and validation")
    log.add_argument("--save-every", type=int, default=250, help="steps between saves")
    log.add_argument("--validate-every", type=int, default=500, help="0: no validation images")
    log.add_argument("--validation-images", type=int, default=4, help="images per prompt")
    log.add_argument("--validation-steps", type=int, default=25, help="DPM-Solver++ steps")
    log.add_argument("--guidance", type=float, default=7.5)
    args = p.parse_args(argv)
    positive = ("vectors", "max_steps", "batch_size", "grad_accum", "save_every",
                "validation_images", "validation_steps")
    for name in positive:
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1")
    if not 0 < args.min_crop_scale <= 1 or not 0 <= args.flip_p <= 1:
        raise UserError("--min-crop-scale must be in (0, 1] and --flip-p in [0, 1]")
    if args.init_word is None and args.init_embedding is None and not args.resume:
        raise UserError("give --init-word (e.g. dog), --init-embedding FILE or --resume")
    return args


def start_state(args, model, tokenizer, token, hidden_size):
    """(vectors, saved state or None): from OUT/state.pt with --resume, else a fresh start."""
    state_path = os.path.join(args.out, "state.pt")
    if args.resume:
        if not os.path.isfile(state_path):
            raise UserError(f"--resume: no saved run in {args.out} (state.pt not found)")
        state = torch.load(state_path, map_location="cpu")
        if state.get("token") != token:
            raise UserError(f"{state_path} trains {state.get('token')!r}, not {token!r}")
        vectors = state["embedding"]
        if vectors.shape[1] != hidden_size:
            raise UserError(f"{state_path}: embedding width {vectors.shape[1]}, expected "
                            f"{hidden_size} for this model")
        return vectors.float(), state
    if os.path.exists(state_path):
        raise UserError(f"{args.out} already holds a run; add --resume to continue it or give "
                        "a new --out")
    if args.init_embedding:
        return read_embedding(args.init_embedding, token, hidden_size), None
    return initial_vectors(model, tokenizer, args.init_word, args.vectors), None


def main(argv=None):
    args = parse_args(argv)
    cfg = CONFIGS[args.config]()
    concepts = {c.key: c for c in read_input(args.json)}
    if args.concept not in concepts:
        raise UserError(f"--concept {args.concept!r} is not a key of {args.json} "
                        f"(keys: {', '.join(concepts)})")
    concept = concepts[args.concept]
    token = concept.token
    base_tokenizer = CLIPTokenizer()
    check_placeholder(base_tokenizer, token)
    images = load_images(os.path.join(args.src, concept.key))
    device = resolve_device(args.device)

    model = load_checkpoint(args.ckpt, cfg)
    vectors, state = start_state(args, model, base_tokenizer, token, cfg.text.hidden_size)
    freeze(model, device, half=device.type == "cuda" and not args.fp32)
    model.unet.gradient_checkpointing = args.gradient_checkpointing
    tokenizer = CLIPTokenizer(placeholders={token: len(vectors)})
    vectors = torch.nn.Parameter(vectors.to(device))
    optimizer = torch.optim.AdamW([vectors], lr=args.lr, weight_decay=args.weight_decay)
    factor = lr_factor(args.lr_schedule, args.warmup_steps, args.max_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    scaler = grad_scaler(enabled=next(model.unet.parameters()).dtype == torch.float16)
    step, log = 0, []
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if scaler.is_enabled() and state["scaler"]:
            scaler.load_state_dict(state["scaler"])
        step, log = state["step"], list(state["log"])
    if step >= args.max_steps:
        raise UserError(f"the run in {args.out} is already at step {step} >= --max-steps "
                        f"{args.max_steps}")
    print(f"training {token} ({len(vectors)} vectors) on {len(images)} images of "
          f"{os.path.join(args.src, concept.key)}, steps {step + 1}..{args.max_steps}, "
          f"{args.batch_size} x {args.grad_accum} images per step, lr {args.lr}, {device}")
    os.makedirs(args.out, exist_ok=True)
    train(args, model, tokenizer, token, images, vectors, optimizer, scheduler, scaler,
          step, log, concept.prompts)


def train(args, model, tokenizer, token, images, vectors, optimizer, scheduler, scaler,
          step, log, prompts):
    device = vectors.device
    alphas_cumprod = scaled_linear_alphas_cumprod()
    templates = TEMPLATES[args.templates]
    size = model.config.image_size
    cuda = device.type == "cuda"
    train_seconds, first_step, peak_bytes = 0.0, step, 0
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    progress = tqdm(range(step, args.max_steps), initial=step, total=args.max_steps,
                    desc=token, file=sys.stdout)
    for step in progress:
        start = time.perf_counter()
        generator = torch.Generator().manual_seed(step_seed(args.seed, step))
        optimizer.zero_grad(set_to_none=True)
        step_loss = 0.0
        for _ in range(args.grad_accum):
            pixels, captions = sample_batch(images, templates, token, args.batch_size, size,
                                            args.min_crop_scale, args.flip_p, generator)
            latents = encode_latents(model.vae, pixels, generator)
            ids = torch.tensor(tokenizer(captions), device=device)
            loss = denoising_loss(model, ids, vectors, latents, alphas_cumprod, generator)
            scaler.scale(loss / args.grad_accum).backward()
            step_loss += loss.item() / args.grad_accum
        lr = optimizer.param_groups[0]["lr"]
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        train_seconds += time.perf_counter() - start  # loss.item() has synchronised the GPU
        done = step + 1
        log.append((done, step_loss, lr))
        progress.set_postfix(loss=f"{step_loss:.4f}", lr=f"{lr:.2e}")
        if done % args.save_every == 0 or done == args.max_steps:
            save_run(args, token, vectors, optimizer, scheduler, scaler, done, log)
            recent = [loss for _, loss, _ in log[-args.save_every:]]
            progress.write(f"step {done}: mean loss {sum(recent) / len(recent):.4f} over the "
                           f"last {len(recent)} steps, saved {args.out}")
        if args.validate_every and (done % args.validate_every == 0 or done == args.max_steps):
            if cuda:  # the training peak, not the sampler's
                peak_bytes = max(peak_bytes, torch.cuda.max_memory_allocated(device))
            grid = render_validation(model, tokenizer, vectors.detach(), prompts,
                                     args.validation_images, args.validation_steps,
                                     args.guidance, args.seed)
            path = os.path.join(args.out, "validation", f"step{done:06d}.png")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            save_image(grid, path)
            if cuda:
                torch.cuda.reset_peak_memory_stats(device)
    n_steps = args.max_steps - first_step
    report = (f"{n_steps} steps in {train_seconds:.1f} s ({n_steps / train_seconds:.2f} steps/s, "
              "saving and validation not counted)")
    if cuda:
        peak_bytes = max(peak_bytes, torch.cuda.max_memory_allocated(device))
        report += f", peak GPU memory while training {peak_bytes / 2**30:.2f} GiB"
    print(report)
    print(f"learned embedding: {os.path.join(args.out, 'learned_embeds.pt')} (copy it into "
          "p3/embeddings/ for hw2_3.sh)")


def save_run(args, token, vectors, optimizer, scheduler, scaler, step, log):
    """The embedding (hw2_3.sh format) as stepNNNNNN.pt and learned_embeds.pt, the resumable
    state, the loss log and its curve."""
    entry = embedding_entry(token, vectors)
    atomic_save(entry, os.path.join(args.out, "embeddings", f"step{step:06d}.pt"))
    atomic_save(entry, os.path.join(args.out, "learned_embeds.pt"))
    state = {
        "token": token, "embedding": entry["embedding"], "step": step, "log": log,
        "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(), "args": vars(args),
    }
    atomic_save(state, os.path.join(args.out, "state.pt"))
    write_log(log, args.out, token)


if __name__ == "__main__":
    run_cli(main)
