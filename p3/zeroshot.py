"""`python3 -m p3.zeroshot VAL_DIR id2label.json`: CLIP zero-shot classification (report study).

Every image `{class_id}_{image_id}.png` of VAL_DIR is assigned the label whose prompt
"A photo of {label}." has the highest CLIP similarity. Prints the accuracy and writes a figure
of 5 successes and 5 failures with their predicted and true labels; ``--json PATH`` also writes
the accuracy and those ten cases (read by the report).
"""

import argparse
import json
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Sequence

import torch
from PIL import Image, ImageDraw, ImageFont
from torch.nn.functional import normalize

from p3.errors import UserError, run_cli
from p3.generate import resolve_device
from p3.jsonout import check_writable, write_json
from p3.score import GRADER_CLIP, image_features, image_paths, load_clip, open_rgb, text_features

CELL = 224


class Prediction(NamedTuple):
    path: Path
    true: int
    predicted: int


def read_labels(path: Path) -> Dict[int, str]:
    try:
        labels = {int(k): str(v) for k, v in json.loads(path.read_text()).items()}
    except FileNotFoundError:
        raise UserError(f"label file not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError, AttributeError):
        raise UserError(f"{path} must be a JSON object of class id -> label") from None
    if not labels:
        raise UserError(f"{path} holds no labels")
    return labels


def true_class(path: Path, labels: Dict[int, str]) -> int:
    """The class id of `{class_id}_{image_id}.png`."""
    head = path.name.split("_")[0]
    if not head.isdigit() or int(head) not in labels:
        raise UserError(
            f"{path.name}: expected a name {{class_id}}_{{image_id}}.png with a known class id"
        )
    return int(head)


@torch.no_grad()
def classify(
    model, processor, images: Sequence[Image.Image], prompts: Sequence[str], batch_size: int
) -> torch.Tensor:
    """Index of the prompt most similar to each image under CLIP, (N,)."""
    device = next(model.parameters()).device
    tokens = processor(text=list(prompts), return_tensors="pt", padding=True).to(device)
    prompt_embeddings = normalize(
        text_features(model, tokens["input_ids"], tokens["attention_mask"]), dim=-1
    )
    predictions = []
    for start in range(0, len(images), batch_size):
        pixels = processor(images=list(images[start : start + batch_size]), return_tensors="pt")[
            "pixel_values"
        ]
        image_embeddings = normalize(image_features(model, pixels.to(device)), dim=-1)
        predictions.append((image_embeddings @ prompt_embeddings.T).argmax(dim=1).cpu())
    return torch.cat(predictions)


def examples_figure(rows: Sequence[Sequence[Prediction]], labels: Dict[int, str]) -> Image.Image:
    """One row of images per list (e.g. successes, failures), captioned with both labels."""
    font = ImageFont.load_default()
    caption = 28
    columns = max(1, *map(len, rows))
    figure = Image.new("RGB", (columns * CELL, len(rows) * (CELL + caption)), "white")
    draw = ImageDraw.Draw(figure)
    for row, examples in enumerate(rows):
        for column, example in enumerate(examples):
            x, y = column * CELL, row * (CELL + caption)
            figure.paste(open_rgb(example.path).resize((CELL, CELL)), (x, y))
            colour = "darkgreen" if example.true == example.predicted else "darkred"
            draw.text(
                (x + 4, y + CELL + 2),
                f"predicted: {labels[example.predicted]}",
                fill=colour,
                font=font,
            )
            draw.text(
                (x + 4, y + CELL + 14), f"true: {labels[example.true]}", fill="black", font=font
            )
    return figure


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python3 -m p3.zeroshot", description=__doc__.split("\n")[0]
    )
    parser.add_argument("val_dir", type=Path, help="folder of {class_id}_{image_id}.png")
    parser.add_argument("labels", type=Path, help="id2label.json")
    parser.add_argument(
        "--clip", default=GRADER_CLIP, help=f"CLIP folder or hub name ({GRADER_CLIP})"
    )
    parser.add_argument("--template", default="A photo of {label}.", help="prompt per label")
    parser.add_argument("--figure", type=Path, default=Path("report/figures/p3_zeroshot.png"))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the results")
    args = parser.parse_args(argv)
    if args.json:
        check_writable(args.json)

    labels = read_labels(args.labels)
    paths = image_paths(args.val_dir)
    if not paths:
        raise UserError(f"no images in {args.val_dir}")
    truth = [true_class(path, labels) for path in paths]
    images = [open_rgb(path) for path in paths]
    model, processor = load_clip(args.clip, resolve_device(args.device))
    ids = sorted(labels)
    best = classify(
        model,
        processor,
        images,
        [args.template.format(label=labels[i]) for i in ids],
        args.batch_size,
    )
    results = [Prediction(path, t, ids[b]) for path, t, b in zip(paths, truth, best.tolist())]
    correct = [r for r in results if r.true == r.predicted]
    print(f"zero-shot accuracy: {len(correct) / len(results):.4f} ({len(correct)}/{len(results)})")

    wrong = [r for r in results if r.true != r.predicted]
    figure = examples_figure([correct[:5], wrong[:5]], labels)
    args.figure.parent.mkdir(parents=True, exist_ok=True)
    figure.save(args.figure)
    print(f"wrote {args.figure} (top row: successes, bottom row: failures)")
    if args.json:
        def cases(rows):
            return [{"image": r.path.name, "true": labels[r.true],
                     "predicted": labels[r.predicted]} for r in rows[:5]]

        write_json(args.json, {
            "tool": "p3.zeroshot", "val_dir": str(args.val_dir), "clip": args.clip,
            "template": args.template, "accuracy": len(correct) / len(results),
            "correct": len(correct), "total": len(results), "classes": len(labels),
            "figure": str(args.figure), "successes": cases(correct), "failures": cases(wrong)})
        print(f"wrote {args.json}")


if __name__ == "__main__":
    run_cli(main)
