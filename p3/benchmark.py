"""Speed and memory of the SD v1 engine: seconds per image by batch size and step count.

    python -m p3.benchmark                      # v1 at 512×512 on the GPU (random weights)
    python -m p3.benchmark --config tiny --device cpu

Times one full `generate_batch` (guided sampler + fp32 VAE decode) per (batch, steps) after
a warm-up batch; weights are random (speed does not depend on them) unless --checkpoint.
"""
import argparse
import time

import torch

from .errors import run_cli
from .generate import SAMPLERS, generate_batch, synchronize
from .model import CONFIGS, StableDiffusion, load_checkpoint


def int_list(text):
    return [int(v) for v in text.split(",")]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--config", choices=sorted(CONFIGS), default="v1")
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--batch-sizes", type=int_list, default=[1, 4, 8])
    p.add_argument("--steps", type=int_list, default=[10, 25, 50])
    p.add_argument("--sampler", choices=sorted(SAMPLERS), default="dpmpp2m")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (torch default)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cfg = CONFIGS[args.config]()
    start = time.perf_counter()
    if args.checkpoint:
        model = load_checkpoint(args.checkpoint, cfg)
    else:
        model = StableDiffusion(cfg)
    model.to_inference(device)
    print(f"# {args.config} model ready in {time.perf_counter() - start:.1f} s on {device} "
          f"(torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
          + (f", {torch.cuda.get_device_name(device)})" if device.type == "cuda" else ")"))
    dtype = next(model.unet.parameters()).dtype
    print(f"# UNet/text encoder {dtype}, VAE float32, {cfg.image_size}x{cfg.image_size} images, "
          f"{args.sampler}, classifier-free guidance (2B UNet batch)")
    print("| batch | steps | s/batch | s/image | s/step | peak GPU memory (GiB) |")
    print("|---|---|---|---|---|---|")
    latent = (cfg.unet.in_channels, cfg.latent_size, cfg.latent_size)
    text_len, text_dim = cfg.text.max_positions, cfg.text.hidden_size
    for batch in args.batch_sizes:
        noise = torch.randn(batch, *latent, device=device)
        contexts = torch.randn(batch, text_len, text_dim, device=device, dtype=dtype)
        uncond = torch.randn(1, text_len, text_dim, device=device, dtype=dtype)
        generate_batch(model, contexts, uncond, noise, args.sampler, 2, 7.5)  # warm-up
        for steps in args.steps:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            synchronize(device)
            t0 = time.perf_counter()
            generate_batch(model, contexts, uncond, noise, args.sampler, steps, 7.5)
            synchronize(device)
            seconds = time.perf_counter() - t0
            peak = (f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f}"
                    if device.type == "cuda" else "n/a (CPU)")
            print(f"| {batch} | {steps} | {seconds:.3f} | {seconds / batch:.4f} | "
                  f"{seconds / steps:.4f} | {peak} |")


if __name__ == "__main__":
    run_cli(main)
