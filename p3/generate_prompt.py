"""`python3 -m p3.generate_prompt "a <new1> in the style of <new2>" --ckpt sd-v1-4.ckpt
--out OUT`: a few images of free prompts with the learned tokens (report figures).

Writes OUT/prompt{i}_{n}.png and OUT/grid.png (one row per prompt). Every learned token of
--embeddings-dir can be used, several in one prompt.
"""
import argparse
import os
import re
import shutil
import tempfile

import torch
from torchvision.utils import make_grid, save_image

from .errors import UserError, run_cli
from .generate import (
    EMBEDDINGS_DIR,
    SAMPLERS,
    encode_prompts,
    generate_batch,
    load_embeddings,
    resolve_device,
    sample_seed,
)
from .model import CONFIGS, load_checkpoint
from .tokenizer import CLIPTokenizer


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python3 -m p3.generate_prompt",
                                description=__doc__.split("\n")[0])
    p.add_argument("prompts", nargs="+", help='prompts, e.g. "a <new1> in the style of <new2>"')
    p.add_argument("--ckpt", required=True, help="Stable Diffusion v1 checkpoint")
    p.add_argument("--out", required=True, help="output folder (new, or empty)")
    p.add_argument("--n", type=int, default=4, help="images per prompt")
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--sampler", choices=sorted(SAMPLERS), default="dpmpp2m")
    p.add_argument("--guidance", type=float, default=7.5)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--embeddings-dir", default=EMBEDDINGS_DIR)
    p.add_argument("--config", choices=sorted(CONFIGS), default="v1")
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    if args.n < 1 or args.steps < 1:
        raise UserError("--n and --steps must be at least 1")
    if os.path.isdir(args.out) and os.listdir(args.out):
        raise UserError(f"output folder {args.out} is not empty")
    return args


def main(argv=None):
    args = parse_args(argv)
    cfg = CONFIGS[args.config]()
    embeddings = load_embeddings(args.embeddings_dir, cfg.text.hidden_size)
    for prompt in args.prompts:
        unknown = [t for t in re.findall(r"<[^<>\s]+>", prompt) if t not in embeddings]
        if unknown:
            raise UserError(f"prompt {prompt!r} uses {unknown[0]}, which has no learned "
                            f"embedding in {args.embeddings_dir}")
    device = resolve_device(args.device)
    model = load_checkpoint(args.ckpt, cfg).to_inference(device)
    tokenizer = CLIPTokenizer(placeholders={t: len(v) for t, v in embeddings.items()})
    extra = torch.cat(list(embeddings.values())).to(device) if embeddings else None
    uncond = encode_prompts(model, tokenizer, [""], None, device)
    shape = (cfg.unet.in_channels, cfg.latent_size, cfg.latent_size)
    parent = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".generate_prompt-", dir=parent)
    try:
        rows = []
        for i, prompt in enumerate(args.prompts):
            context = encode_prompts(model, tokenizer, [prompt], extra, device)
            noise = torch.stack([
                torch.randn(shape, generator=torch.Generator().manual_seed(
                    sample_seed(args.seed, "prompt", i, n)))
                for n in range(args.n)
            ]).to(device)
            images = generate_batch(model, context.expand(args.n, -1, -1), uncond, noise,
                                    args.sampler, args.steps, args.guidance)
            for n, image in enumerate(images):
                save_image(image, os.path.join(staging, f"prompt{i}_{n}.png"))
            rows.append(images)
        save_image(make_grid(torch.cat(rows), nrow=args.n), os.path.join(staging, "grid.png"))
        if os.path.isdir(args.out):
            os.rmdir(args.out)
        os.replace(staging, args.out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(f"wrote {len(args.prompts) * args.n} images and grid.png to {args.out}")


if __name__ == "__main__":
    run_cli(main)
