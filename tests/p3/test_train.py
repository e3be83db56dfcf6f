"""Textual-inversion training on a tiny random Stable Diffusion written by the test."""
import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from p3 import generate, train
from p3.data import OBJECT_TEMPLATES, load_images, random_square_crop, sample_batch
from p3.diffusion import scaled_linear_alphas_cumprod
from p3.errors import UserError
from p3.model import StableDiffusion, load_checkpoint, tiny_config
from p3.tokenizer import CLIPTokenizer
from p3.unet import UNetModel

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
INPUT = {
    "0": {"token_name": "<new1>", "prompt": ["A <new1> on a hilltop."]},
    "1": {"token_name": "<new2>", "prompt": ["Paris in the style of <new2>."]},
}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny CompVis-layout checkpoint, input.json and 3 small RGB images per concept."""
    root = tmp_path_factory.mktemp("p3_train")
    torch.manual_seed(0)
    torch.save({"state_dict": StableDiffusion(tiny_config()).state_dict()}, str(root / "tiny.ckpt"))
    (root / "input.json").write_text(json.dumps(INPUT))
    rng = np.random.default_rng(0)
    for key in INPUT:
        (root / "src" / key).mkdir(parents=True)
        for i in range(3):
            pixels = rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(str(root / "src" / key / f"{i:02d}.png"))
    return root


def train_argv(files, out, *extra, json_path=None, src=None):
    return ["--json", json_path or str(files / "input.json"), "--src", src or str(files / "src"),
            "--ckpt", str(files / "tiny.ckpt"), "--out", str(out), "--config", "tiny",
            "--device", "cpu", "--concept", "0", "--init-word", "dog", "--vectors", "2",
            "--batch-size", "2", "--grad-accum", "2", "--validate-every", "0", *extra]


def test_only_the_new_vectors_train_and_the_loss_falls_on_a_fixed_batch(files):
    model = load_checkpoint(str(files / "tiny.ckpt"), tiny_config())
    model.eval().requires_grad_(False)
    frozen = {k: v.clone() for k, v in model.state_dict().items()}
    tokenizer = CLIPTokenizer(placeholders={"<new1>": 2})
    vectors = torch.nn.Parameter(train.initial_vectors(model, CLIPTokenizer(), "dog", 2))
    dog_row = model.text_encoder.text_model.embeddings.token_embedding.weight[1929]
    assert torch.equal(vectors[0], dog_row) and torch.equal(vectors[1], dog_row)
    optimizer = torch.optim.AdamW([vectors], lr=0.5, weight_decay=0.01)
    images = load_images(files / "src" / "0")
    pixels, captions = sample_batch(images, OBJECT_TEMPLATES, "<new1>", 4, 16, 0.8, 0.5,
                                    torch.Generator().manual_seed(0))
    ids = torch.tensor(tokenizer(captions))
    assert ids.max().item() == 49409 and (ids >= 49408).sum().item() == 8
    alphas_cumprod = scaled_linear_alphas_cumprod()

    def fixed_batch_loss():
        generator = torch.Generator().manual_seed(1)  # same latents, t and noise every time
        latents = train.encode_latents(model.vae, pixels, generator)
        return train.denoising_loss(model, ids, vectors, latents, alphas_cumprod, generator)

    losses = []
    for _ in range(8):
        optimizer.zero_grad()
        loss = fixed_batch_loss()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    # A random model's output depends little on the context, so the loss falls slowly: but it
    # must fall at every step on a fixed batch.
    assert all(b < a for a, b in zip(losses, losses[1:])), losses
    assert losses[-1] < losses[0] - 1e-3, losses
    assert all(p.grad is None for p in model.parameters())
    assert not torch.equal(vectors[0], dog_row)
    for key, value in model.state_dict().items():
        assert torch.equal(value, frozen[key]), f"{key} changed"


def test_fp16_frozen_model_gives_fp32_gradients_to_the_vectors(files):
    model = train.freeze(load_checkpoint(str(files / "tiny.ckpt"), tiny_config()), "cpu", True)
    assert model.unet.time_embed[0].weight.dtype == torch.float16
    assert model.vae.encoder.conv_in.weight.dtype == torch.float32
    vectors = torch.nn.Parameter(train.initial_vectors(model, CLIPTokenizer(), "dog", 1))
    ids = torch.tensor(CLIPTokenizer(placeholders={"<new1>": 1})(["a photo of a <new1>"] * 2))
    generator = torch.Generator().manual_seed(0)
    latents = train.encode_latents(model.vae, torch.zeros(2, 3, 16, 16), generator)
    try:
        loss = train.denoising_loss(model, ids, vectors, latents, scaled_linear_alphas_cumprod(),
                                    generator)
        loss.backward()
    except RuntimeError as err:  # torch 1.11 has no fp16 CPU kernels for some layers
        pytest.skip(f"no fp16 CPU kernels: {err}")
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert vectors.grad.dtype == torch.float32 and vectors.grad.abs().max() > 0


@pytest.mark.filterwarnings("ignore:User provided device_type:UserWarning")  # torch 1.11, CPU
def test_gradient_checkpointing_gives_the_same_gradient_with_frozen_weights():
    torch.manual_seed(0)
    unet = UNetModel(tiny_config().unet).requires_grad_(False)
    x, t = torch.randn(2, 4, 8, 8), torch.tensor([10, 900])
    context = torch.randn(2, 5, 32, requires_grad=True)
    grads = []
    for checkpointing in (False, True):
        unet.gradient_checkpointing = checkpointing
        context.grad = None
        unet(x, t, context).square().mean().backward()
        grads.append(context.grad.clone())
    assert grads[0].abs().max() > 0
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-7)


@pytest.mark.filterwarnings("ignore:User provided device_type:UserWarning")  # torch 1.11, CPU
def test_run_saves_embeddings_that_hw2_3_reads_and_resume_continues(files, tmp_path, capsys):
    whole, split = tmp_path / "whole", tmp_path / "split"
    train.main(train_argv(files, whole, "--max-steps", "4", "--save-every", "2",
                          "--validate-every", "2", "--validation-images", "2",
                          "--validation-steps", "2"))
    assert "4 steps in" in capsys.readouterr().out
    assert sorted(os.listdir(whole / "embeddings")) == ["step000002.pt", "step000004.pt"]
    assert sorted(os.listdir(whole / "validation")) == ["step000002.png", "step000004.png"]
    assert Image.open(whole / "validation" / "step000004.png").size == (2 * 18 + 2, 18 + 2)
    assert Image.open(whole / "loss.png").size == (720, 400)
    with open(whole / "loss.csv") as f:
        assert [row["step"] for row in csv.DictReader(f)] == ["1", "2", "3", "4"]

    reader_dir = tmp_path / "p3_embeddings"
    reader_dir.mkdir()
    shutil.copy(str(whole / "learned_embeds.pt"), str(reader_dir / "new1.pt"))
    learned = generate.load_embeddings(str(reader_dir), 32)["<new1>"]
    assert learned.shape == (2, 32) and learned.dtype == torch.float32
    assert set(torch.load(str(reader_dir / "new1.pt"))) == {"token", "embedding"}

    train.main(train_argv(files, split, "--max-steps", "2", "--save-every", "2"))
    train.main(train_argv(files, split, "--max-steps", "4", "--save-every", "2", "--resume",
                          "--gradient-checkpointing"))
    assert "steps 3..4" in capsys.readouterr().out
    resumed = torch.load(str(split / "learned_embeds.pt"))["embedding"]
    torch.testing.assert_close(resumed, learned, rtol=0, atol=1e-6)
    assert torch.load(str(split / "state.pt"))["step"] == 4
    with open(split / "loss.csv") as f:
        assert [row["step"] for row in csv.DictReader(f)] == ["1", "2", "3", "4"]


def test_init_embedding_starts_from_a_saved_file(files, tmp_path):
    start = tmp_path / "start.pt"
    torch.save({"token": "<new1>", "embedding": torch.randn(3, 32)}, str(start))
    train.main(train_argv(files, tmp_path / "run", "--max-steps", "1", "--lr", "0",
                          "--init-embedding", str(start)))
    learned = torch.load(str(tmp_path / "run" / "learned_embeds.pt"))["embedding"]
    assert torch.equal(learned, torch.load(str(start))["embedding"])


def write(path, content):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    return str(path)


def test_bad_image_folders(files, tmp_path):
    (tmp_path / "empty" / "0").mkdir(parents=True)
    write(tmp_path / "text" / "0" / "notes.txt", "not an image")
    write(tmp_path / "broken" / "0" / "00.png", b"\x89PNG but not really")
    cases = [("empty", "holds no images"), ("text", "holds no images"),
             ("broken", "is not a readable image"), ("missing", "image folder not found")]
    for src, message in cases:
        with pytest.raises(UserError, match=message):
            train.main(train_argv(files, tmp_path / "out", src=str(tmp_path / src)))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("change, message", [
    ({"token_name": "dog"}, "already a single token of the CLIP vocabulary"),
    ({"token_name": "*"}, "already a single token"),
])
def test_placeholder_already_in_the_vocabulary(files, tmp_path, change, message):
    json_path = write(tmp_path / "in.json", json.dumps({"0": {**INPUT["0"], **change}}))
    with pytest.raises(UserError, match=message):
        train.main(train_argv(files, tmp_path / "out", json_path=json_path))


@pytest.mark.parametrize("extra, message", [
    (["--init-word", "David Revoy"], "single token"),
    (["--init-embedding", "WIDE"], r"expected \(n_vectors, 32\)"),
    (["--init-embedding", "OTHER"], "holds token '<new2>'"),
    (["--init-embedding", "nope.pt"], "embedding file not found"),
    (["--ckpt", "nope.ckpt"], "checkpoint not found"),
    (["--concept", "7"], "not a key"),
    (["--resume"], "no saved run"),
    (["--min-crop-scale", "0"], "min-crop-scale"),
])
def test_bad_options(files, tmp_path, extra, message):
    torch.save({"token": "<new1>", "embedding": torch.zeros(1, 768)}, str(tmp_path / "w.pt"))
    torch.save({"token": "<new2>", "embedding": torch.zeros(1, 32)}, str(tmp_path / "o.pt"))
    names = {"WIDE": "w.pt", "OTHER": "o.pt", "nope.pt": "nope.pt", "nope.ckpt": "nope.ckpt"}
    extra = [str(tmp_path / names[e]) if e in names else e for e in extra]
    with pytest.raises(UserError, match=message):
        train.main(train_argv(files, tmp_path / "out", *extra))


def test_an_existing_run_needs_resume(files, tmp_path):
    train.main(train_argv(files, tmp_path / "run", "--max-steps", "1"))
    with pytest.raises(UserError, match="already holds a run"):
        train.main(train_argv(files, tmp_path / "run", "--max-steps", "2"))
    with pytest.raises(UserError, match="already at step 1"):
        train.main(train_argv(files, tmp_path / "run", "--max-steps", "1", "--resume"))


def test_command_line_error_is_one_line_and_exit_status_1(files, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT)
    missing = str(tmp_path / "missing.ckpt")
    argv = train_argv(files, tmp_path / "out", "--ckpt", missing)
    result = subprocess.run([sys.executable, "-m", "p3.train", *argv], capture_output=True,
                            text=True, env=env, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"error: checkpoint not found: {missing}"]


def test_learning_rate_schedules():
    constant = train.lr_factor("constant", 2, 10)
    assert [constant(s) for s in (0, 1, 2, 9)] == [0.5, 1.0, 1.0, 1.0]
    linear = train.lr_factor("linear", 0, 10)
    assert [linear(s) for s in (0, 5, 10)] == [1.0, 0.5, 0.0]
    cosine = train.lr_factor("cosine", 0, 10)
    assert cosine(0) == 1.0 and abs(cosine(5) - 0.5) < 1e-12 and abs(cosine(10)) < 1e-12


def test_augmented_batches_are_seeded_images_in_range(files):
    images = load_images(files / "src" / "0")
    batches = [sample_batch(images, OBJECT_TEMPLATES, "<new1>", 3, 16, 0.5, 0.5,
                            torch.Generator().manual_seed(5)) for _ in range(2)]
    (pixels, captions), (again, captions_again) = batches
    assert pixels.shape == (3, 3, 16, 16) and pixels.min() >= -1 and pixels.max() <= 1
    assert torch.equal(pixels, again) and captions == captions_again
    assert all("<new1>" in c for c in captions)
    square = Image.new("RGB", (10, 10))
    whole = random_square_crop(square, 1.0, torch.Generator().manual_seed(0))
    assert whole.size == (10, 10)
