"""`bash hw2_3.sh input.json OUT model.ckpt`: 25 images per prompt with learned tokens.

For every concept key k and prompt index i of input.json, writes
OUT/k/i/source{k}_prompt{i}_{n}.png, n = 0..24. Learned token embeddings are read from
`p3/embeddings/*.pt`, each `{"token": "<new1>", "embedding": (n_vectors, 768) tensor}`.
A concept token with no learned embedding is replaced by the words of its `src_image` field
(the initialisation textual inversion starts from: a zero-shot baseline, not the concept).
Every image has its own seeded noise, so it does not depend on the batch size. Without
`--steps`, the step count is planned from a timed first batch to fit `--time-budget`.
"""
import argparse
import glob
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Dict, List, Optional

import torch
from torchvision.utils import save_image
from tqdm import tqdm

from .diffusion import (
    LATENT_SCALE,
    classifier_free_guidance,
    ddim_timesteps,
    sample_ddim,
    sample_dpmpp_2m,
    scaled_linear_alphas_cumprod,
)
from .errors import UserError, run_cli
from .model import CONFIGS, load_checkpoint
from .tokenizer import CLIPTokenizer

IMAGES_PER_PROMPT = 25
EMBEDDINGS_DIR = os.path.join(os.path.dirname(__file__), "embeddings")
SAMPLERS = {"dpmpp2m": sample_dpmpp_2m, "ddim": sample_ddim}
DECODE_CHUNK = 4


@dataclass
class Concept:
    key: str
    token: str
    prompts: List[str]
    src_words: Optional[str] = None


@dataclass
class Sample:
    key: str
    prompt_index: int
    n: int
    context_index: int

    @property
    def relative_path(self):
        name = f"source{self.key}_prompt{self.prompt_index}_{self.n}.png"
        return os.path.join(self.key, str(self.prompt_index), name)


def read_input(path) -> List[Concept]:
    """input.json -> concepts, in file order. Needs `token_name` and a list `prompt` per key."""
    if not os.path.isfile(path):
        raise UserError(f"input json not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (ValueError, UnicodeDecodeError) as err:
        raise UserError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(data, dict) or not data:
        raise UserError(f"{path}: expected a non-empty object of concepts {{\"0\": {{...}}, ...}}")
    concepts = []
    for key, entry in data.items():
        where = f"{path}: concept {key!r}"
        if not key or key in (".", "..") or "/" in key or "\\" in key:
            raise UserError(f"{where}: the key is used as a folder name and cannot be {key!r}")
        if not isinstance(entry, dict):
            raise UserError(f"{where}: expected an object with 'token_name' and 'prompt'")
        for field_name in ("token_name", "prompt"):
            if field_name not in entry:
                raise UserError(f"{where}: missing key {field_name!r}")
        token, prompts = entry["token_name"], entry["prompt"]
        if not isinstance(token, str) or not token.strip():
            raise UserError(f"{where}: 'token_name' must be a non-empty string")
        if (not isinstance(prompts, list) or not prompts
                or not all(isinstance(p, str) and p.strip() for p in prompts)):
            raise UserError(f"{where}: 'prompt' must be a non-empty list of non-empty strings")
        src_words = entry.get("src_image")
        if "src_image" in entry and (not isinstance(src_words, str) or not src_words.strip()):
            raise UserError(f"{where}: 'src_image' must be a non-empty string (the words "
                            "standing in for the token until it is learned)")
        concepts.append(Concept(key, token, prompts, src_words))
    return concepts


def load_embeddings(directory, hidden_size) -> Dict[str, torch.Tensor]:
    """token -> (n_vectors, hidden_size) float32 tensor, from every `*.pt` in `directory`."""
    embeddings = {}
    for path in sorted(glob.glob(os.path.join(directory, "*.pt"))):
        try:
            entry = torch.load(path, map_location="cpu")
        except Exception as err:  # noqa: BLE001 - any unreadable file is the same user error
            raise UserError(f"cannot read embedding file {path}: {err}") from None
        if not (isinstance(entry, dict) and isinstance(entry.get("token"), str)
                and torch.is_tensor(entry.get("embedding"))):
            raise UserError(f"{path}: expected {{'token': str, 'embedding': tensor}}")
        token, vectors = entry["token"], entry["embedding"]
        if vectors.dim() == 1:
            vectors = vectors[None]
        if vectors.dim() != 2 or vectors.shape[1] != hidden_size or not vectors.is_floating_point():
            raise UserError(f"{path}: embedding for {token} has shape {tuple(vectors.shape)}, "
                            f"expected (n_vectors, {hidden_size})")
        if token in embeddings:
            raise UserError(f"{path}: a second embedding for token {token}")
        embeddings[token] = vectors.float()
    return embeddings


def fallback_words(concepts: List[Concept], embeddings) -> Dict[str, str]:
    """token -> its concept's `src_image` words, for each concept token with no learned
    embedding (a learned embedding always wins)."""
    return {c.token: c.src_words.strip() for c in concepts
            if c.token not in embeddings and c.src_words is not None}


def substitute_words(prompt, words: Dict[str, str]):
    """The prompt with every fallback token replaced by its words, longest token first."""
    for token in sorted(words, key=len, reverse=True):
        prompt = prompt.replace(token, words[token])
    return prompt


def check_tokens(concepts: List[Concept], embeddings, words, directory):
    """Every placeholder token a prompt uses needs a learned embedding or fallback words."""
    tokens = {c.token for c in concepts} | set(embeddings)
    for concept in concepts:
        for i, prompt in enumerate(concept.prompts):
            for token in sorted(tokens):
                if token in prompt and token not in embeddings and token not in words:
                    raise UserError(
                        f"prompt {i} of concept {concept.key!r} uses token {token}, which has no "
                        f"learned embedding in {directory} (expected a *.pt file holding "
                        f"{{'token': {token!r}, 'embedding': (n_vectors, hidden) tensor}}) and "
                        "no 'src_image' words in input.json to stand in for it"
                    )


def warn_fallbacks(concepts: List[Concept], words, directory):
    """One warning line per token that generates from its `src_image` words."""
    for concept in concepts:
        if concept.token in words:
            print(f"warning: no learned embedding for {concept.token} in {directory}; using "
                  f"its src_image words {words[concept.token]!r} instead (a zero-shot baseline, "
                  f"not the trained concept). To learn it: python3 -m p3.train --concept "
                  f"{concept.key} --init-word WORD --ckpt sd-v1-4.ckpt --out runs/{concept.key}"
                  f", then copy runs/{concept.key}/learned_embeds.pt into {directory}",
                  file=sys.stderr)


def check_output_dir(out_dir):
    """OUT may be missing or hold empty folders; any file in it is an error."""
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise UserError(f"output path {out_dir} exists and is not a folder")
    for root, _, files in os.walk(out_dir):
        if files:
            example = os.path.relpath(os.path.join(root, files[0]), out_dir)
            raise UserError(f"output folder {out_dir} already has files in it (e.g. {example}); "
                            "give an empty or new folder")


def resolve_device(name):
    """Device for --device NAME: "auto" is cuda when available, else cpu with a warning; cuda
    without a GPU is an error. cuDNN is made deterministic so a re-run writes the same bytes."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
        if name == "cpu":
            print("warning: no CUDA GPU found; running on the CPU, this will be very slow "
                  "(minutes per 512x512 image)",
                  file=sys.stderr)
    elif name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name} asked for, but torch sees no CUDA GPU")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name}: not a device (use auto, cpu, cuda or cuda:N)") from None
    torch.backends.cudnn.deterministic = True
    return device


def sample_seed(seed, key, prompt_index, n):
    """A 48-bit seed from (seed, concept, prompt, image index), independent of batching."""
    digest = hashlib.sha256(f"{seed}/{key}/{prompt_index}/{n}".encode()).digest()
    return int.from_bytes(digest[:6], "little")


def initial_noise(samples: List[Sample], shape, seed):
    """x_T (B, *shape) float32 on the CPU, one torch.Generator per sample."""
    return torch.stack([
        torch.randn(shape, generator=torch.Generator().manual_seed(
            sample_seed(seed, s.key, s.prompt_index, s.n)))
        for s in samples
    ])


def n_model_calls(sampler, steps):
    return len(ddim_timesteps(steps)) if sampler == "ddim" else steps


@torch.no_grad()
def encode_prompts(model, tokenizer, prompts, extra_embeddings, device):
    """Prompts -> contexts (P, 77, hidden) in the text encoder's dtype."""
    ids = torch.tensor(tokenizer(prompts), device=device)
    return model.text_encoder(ids, extra_embeddings)


@torch.no_grad()
def generate_batch(model, contexts, uncond, noise, sampler, steps, guidance):
    """Noise (B, 4, h, w) + contexts (B, 77, D) -> images (B, 3, H, W) in [0, 1] on the CPU."""
    alphas_cumprod = scaled_linear_alphas_cumprod()
    eps_fn = classifier_free_guidance(model.unet, contexts, uncond.expand_as(contexts), guidance)
    latents = SAMPLERS[sampler](eps_fn, noise, alphas_cumprod, steps).float() / LATENT_SCALE
    # Decode a few at a time: fp32 activations at 512×512 are ~1 GB per image per layer.
    images = torch.cat([model.vae.decode(z) for z in latents.split(DECODE_CHUNK)])
    return ((images + 1) / 2).clamp(0, 1).cpu()


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def time_batch(model, contexts, uncond, noise, device, guidance):
    """Seconds for one guided UNet call and one VAE decode at this batch size (after warm-up)."""
    eps_fn = classifier_free_guidance(model.unet, contexts, uncond.expand_as(contexts), guidance)
    t = torch.full((noise.shape[0],), 999.0, device=device)
    eps_fn(noise, t)
    synchronize(device)
    start = time.perf_counter()
    eps_fn(noise, t)
    synchronize(device)
    unet_s = time.perf_counter() - start
    torch.cat([model.vae.decode(z) for z in noise.float().split(DECODE_CHUNK)])
    synchronize(device)
    decode_s = time.perf_counter() - start - unet_s
    return unet_s, decode_s


def plan_steps(seconds_left, n_batches, unet_s, decode_s, sampler, max_steps, min_steps):
    """Largest step count <= max_steps whose estimated time fits `seconds_left`."""
    per_batch = seconds_left / n_batches - decode_s
    steps = max_steps
    while steps > min_steps and n_model_calls(sampler, steps) * unet_s > per_batch:
        steps -= 1
    return steps


def parse_args(argv):
    p = argparse.ArgumentParser(prog="hw2_3.sh", description=__doc__.split("\n")[0])
    p.add_argument("input_json", help="input.json with concepts, token names and prompts")
    p.add_argument("out_dir", help="output folder (new, or empty)")
    p.add_argument("checkpoint", help="Stable Diffusion v1 checkpoint (sd-v1-4.ckpt)")
    p.add_argument("--device", default="auto", help="auto (default: cuda if available), cpu, cuda")
    p.add_argument("--steps", type=int, default=None, help="sampler steps (default: planned)")
    p.add_argument("--max-steps", type=int, default=50, help="upper bound for planned steps")
    p.add_argument("--min-steps", type=int, default=10, help="lower bound for planned steps")
    p.add_argument("--batch-size", type=int, default=None, help="default: 8 on GPU, 1 on CPU")
    p.add_argument("--sampler", choices=sorted(SAMPLERS), default="dpmpp2m")
    p.add_argument("--guidance", type=float, default=7.5, help="classifier-free guidance scale")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--time-budget", type=float, default=840.0,
                   help="seconds for the whole run, model loading included")
    p.add_argument("--embeddings-dir", default=EMBEDDINGS_DIR)
    p.add_argument("--config", choices=sorted(CONFIGS), default="v1",
                   help="model size (tiny is for tests)")
    args = p.parse_args(argv)
    for name in ("steps", "max_steps", "min_steps", "batch_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    return args


def publish(staging, out_dir):
    """Move the finished OUT/k/i folders from `staging` into `out_dir` (empty folders merge)."""
    os.makedirs(out_dir, exist_ok=True)
    for key in sorted(os.listdir(staging)):
        os.makedirs(os.path.join(out_dir, key), exist_ok=True)
        for prompt_dir in sorted(os.listdir(os.path.join(staging, key))):
            target = os.path.join(out_dir, key, prompt_dir)
            if os.path.isdir(target):
                shutil.rmtree(target)
            shutil.move(os.path.join(staging, key, prompt_dir), target)


def choose_steps(args, model, first_batch, uncond, n_batches, start):
    """--steps if given, else the most steps (<= --max-steps) that fit the rest of the budget,
    timed on the first batch."""
    if args.steps is not None:
        return args.steps
    noise, contexts = first_batch
    device = noise.device
    unet_s, decode_s = time_batch(model, contexts, uncond, noise, device, args.guidance)
    seconds_left = args.time_budget - (time.perf_counter() - start)
    steps = plan_steps(seconds_left, n_batches, unet_s, decode_s, args.sampler,
                       args.max_steps, args.min_steps)
    estimate = n_batches * (n_model_calls(args.sampler, steps) * unet_s + decode_s)
    print(f"measured at batch {len(noise)}: {unet_s:.3f} s per guided UNet call, "
          f"{decode_s:.3f} s per VAE decode; estimate {estimate:.0f} s for {steps} steps, "
          f"{seconds_left:.0f} s left of the budget")
    if estimate > seconds_left:
        print(f"warning: even {steps} steps may not fit the {args.time_budget:.0f} s budget",
              file=sys.stderr)
    return steps


def main(argv=None):
    start = time.perf_counter()
    args = parse_args(argv)
    cfg = CONFIGS[args.config]()
    concepts = read_input(args.input_json)
    embeddings = load_embeddings(args.embeddings_dir, cfg.text.hidden_size)
    words = fallback_words(concepts, embeddings)
    check_tokens(concepts, embeddings, words, args.embeddings_dir)
    check_output_dir(args.out_dir)
    device = resolve_device(args.device)
    warn_fallbacks(concepts, words, args.embeddings_dir)
    batch_size = args.batch_size or (8 if device.type == "cuda" else 1)

    model = load_checkpoint(args.checkpoint, cfg).to_inference(device)
    print(f"loaded {args.checkpoint} in {time.perf_counter() - start:.1f} s on {device}")
    tokenizer = CLIPTokenizer(placeholders={t: len(v) for t, v in embeddings.items()})
    extra = torch.cat(list(embeddings.values())).to(device) if embeddings else None
    jobs = [(c.key, i, substitute_words(prompt, words))
            for c in concepts for i, prompt in enumerate(c.prompts)]
    contexts = encode_prompts(model, tokenizer, [p for _, _, p in jobs], extra, device)
    uncond = encode_prompts(model, tokenizer, [""], None, device)

    samples = [Sample(key, i, n, j) for j, (key, i, _) in enumerate(jobs)
               for n in range(IMAGES_PER_PROMPT)]
    batches = [samples[i : i + batch_size] for i in range(0, len(samples), batch_size)]
    shape = (cfg.unet.in_channels, cfg.latent_size, cfg.latent_size)

    def batch_inputs(batch):
        noise = initial_noise(batch, shape, args.seed).to(device)
        return noise, contexts[[s.context_index for s in batch]]

    steps = choose_steps(args, model, batch_inputs(batches[0]), uncond, len(batches), start)
    print(f"plan: {len(samples)} images ({len(jobs)} prompts x {IMAGES_PER_PROMPT}) in "
          f"{len(batches)} batches of <= {batch_size}, {args.sampler} {steps} steps, "
          f"guidance {args.guidance}, seed {args.seed}")

    parent = os.path.dirname(os.path.abspath(args.out_dir))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".hw2_3-", dir=parent)
    try:
        for batch in tqdm(batches, desc="batches", file=sys.stdout):
            noise, batch_contexts = batch_inputs(batch)
            images = generate_batch(model, batch_contexts, uncond, noise, args.sampler, steps,
                                    args.guidance)
            for sample, image in zip(batch, images):
                path = os.path.join(staging, sample.relative_path)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                save_image(image, path)
        publish(staging, args.out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(f"wrote {len(samples)} images to {args.out_dir} in "
          f"{time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    run_cli(main)
