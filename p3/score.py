"""`python3 -m p3.score --json input.json --src DIR --out OUT`: the course's P3 grading rule.

For every concept k and prompt i of input.json, the 25 images of OUT/k/i/ are scored with CLIP
ViT-B/32 (`openai/clip-vit-base-patch32`, from a local folder or the Hugging Face cache):
  image score = 100 x cosine(image, reference) averaged over the references in SRC/k/,
  text score  = CLIP's logits_per_image for prompt_4_clip_eval[i] (100 x cosine for ViT-B/32).
The 5 images with the highest image + 2.5 x text are kept; the prompt passes when their mean
image and mean text scores both reach its baseline. Exactly 25 images per folder are required.
``--json PATH`` also writes every prompt's scores and verdict (read by the report).
"""

import argparse
import json
from pathlib import Path
from typing import List, NamedTuple, Optional, Tuple

import torch
from PIL import Image, UnidentifiedImageError
from torch.nn.functional import normalize

from p3.errors import UserError, run_cli
from p3.generate import resolve_device
from p3.jsonout import check_writable, write_json

GRADER_CLIP = "openai/clip-vit-base-patch32"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
IMAGES_PER_PROMPT = 25
KEPT = 5
TEXT_WEIGHT = 2.5


class PromptScore(NamedTuple):
    concept: str
    prompt_index: int
    image: float
    text: float
    baseline: Tuple[float, float]

    @property
    def passed(self) -> bool:
        return self.image >= self.baseline[0] and self.text >= self.baseline[1]


def load_clip(name_or_path: str, device: torch.device):
    """(CLIPModel in eval mode on device, CLIPProcessor) from a folder or the local HF cache."""
    from transformers import CLIPModel, CLIPProcessor

    try:
        model = CLIPModel.from_pretrained(name_or_path, local_files_only=True)
        processor = CLIPProcessor.from_pretrained(name_or_path, local_files_only=True)
    except (OSError, ValueError):
        raise UserError(
            f"CLIP model {name_or_path!r} not found locally: download {GRADER_CLIP} into the "
            "Hugging Face cache (huggingface-cli download openai/clip-vit-base-patch32) or into a "
            "folder and pass it with --clip DIR"
        ) from None
    return model.eval().to(device), processor


def image_paths(folder: Path) -> List[Path]:
    """Every image file of a folder, in name order (the grader takes all of them)."""
    if not folder.is_dir():
        raise UserError(f"image folder not found: {folder}")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def open_rgb(path: Path) -> Image.Image:
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError):
        raise UserError(f"cannot read image {path}") from None


def read_images(folder: Path) -> List[Image.Image]:
    return [open_rgb(path) for path in image_paths(folder)]


def image_features(model, pixel_values: torch.Tensor) -> torch.Tensor:
    """CLIP's projected image embeddings (N, D), as `get_image_features` returns them in
    transformers 4.x (5.x returns an output object instead)."""
    return model.visual_projection(model.vision_model(pixel_values=pixel_values).pooler_output)


def text_features(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """CLIP's projected text embeddings (N, D)."""
    pooled = model.text_model(input_ids=input_ids, attention_mask=attention_mask).pooler_output
    return model.text_projection(pooled)


@torch.no_grad()
def clip_scores(
    model, processor, generated, references, text: str
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per generated image: (mean 100 x cosine to the references, CLIP text logit), each (N,)."""
    device = next(model.parameters()).device

    def features(images):
        pixels = processor(images=images, return_tensors="pt")["pixel_values"].to(device)
        return normalize(image_features(model, pixels), dim=-1)

    image_score = 100 * (features(generated) @ features(references).T).mean(dim=1)
    inputs = processor(text=[text], images=generated, return_tensors="pt", padding=True).to(device)
    text_score = model(**inputs).logits_per_image[:, 0]
    return image_score.cpu(), text_score.cpu()


def top_k_means(
    image_score: torch.Tensor, text_score: torch.Tensor, k: int = KEPT
) -> Tuple[float, float]:
    """Mean image and text score of the k images ranked best by image + 2.5 x text."""
    best = torch.topk(image_score + TEXT_WEIGHT * text_score, k).indices
    return image_score[best].mean().item(), text_score[best].mean().item()


def read_input_json(path: Path) -> dict:
    try:
        spec = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"input json not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(spec, dict) or not spec:
        raise UserError(f"{path} must map concept keys to their prompts")
    for key, concept in spec.items():
        missing = [f for f in ("prompt_4_clip_eval", "baseline") if f not in concept]
        if missing:
            raise UserError(f"{path}: concept {key!r} lacks {', '.join(missing)}")
        if len(concept["baseline"]) != len(concept["prompt_4_clip_eval"]):
            raise UserError(f"{path}: concept {key!r} needs one baseline per prompt_4_clip_eval")
    return spec


def score_outputs(spec: dict, src_dir: Path, out_dir: Path, model, processor) -> List[PromptScore]:
    results = []
    for key, concept in spec.items():
        references = read_images(src_dir / key)
        if not references:
            raise UserError(f"no reference images in {src_dir / key}")
        for i, text in enumerate(concept["prompt_4_clip_eval"]):
            generated = read_images(out_dir / key / str(i))
            if len(generated) != IMAGES_PER_PROMPT:
                raise UserError(
                    f"{out_dir / key / str(i)} holds {len(generated)} images; the grader needs "
                    f"exactly {IMAGES_PER_PROMPT}"
                )
            image, text_score = top_k_means(
                *clip_scores(model, processor, generated, references, text)
            )
            results.append(PromptScore(key, i, image, text_score, tuple(concept["baseline"][i])))
    return results


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python3 -m p3.score", description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, required=True, help="input.json")
    parser.add_argument("--src", type=Path, required=True, help="reference images: SRC/<concept>/")
    parser.add_argument(
        "--out", type=Path, required=True, help="generated images: OUT/<concept>/<i>/"
    )
    parser.add_argument(
        "--clip", default=GRADER_CLIP, help=f"CLIP folder or hub name ({GRADER_CLIP})"
    )
    parser.add_argument("--device", default="cpu", help="cpu (default, as the grader) or cuda")
    parser.add_argument("--json-out", default=None, metavar="PATH",
                        help="also write the scores as JSON (--json is input.json)")
    args = parser.parse_args(argv)
    if args.json_out:
        check_writable(args.json_out)
    spec = read_input_json(args.json)
    model, processor = load_clip(args.clip, resolve_device(args.device))
    results = score_outputs(spec, args.src, args.out, model, processor)
    for r in results:
        verdict = "PASS" if r.passed else "FAIL"
        print(
            f"concept {r.concept} prompt {r.prompt_index}: image {r.image:.2f} (baseline "
            f"{r.baseline[0]:g}), text {r.text:.2f} (baseline {r.baseline[1]:g}) {verdict}"
        )
    print(f"You have passed {sum(r.passed for r in results)}/{len(results)} cases")
    if args.json_out:
        write_json(args.json_out, {
            "tool": "p3.score", "input_json": str(args.json), "out_dir": str(args.out),
            "clip": args.clip, "passed": sum(r.passed for r in results), "cases": len(results),
            "prompts": [{"concept": r.concept, "prompt_index": r.prompt_index,
                         "prompt_4_clip_eval": spec[r.concept]["prompt_4_clip_eval"][
                             r.prompt_index],
                         "image": r.image, "text": r.text, "baseline": list(r.baseline),
                         "passed": r.passed} for r in results]})
        print(f"wrote {args.json_out}")


if __name__ == "__main__":
    run_cli(main)
