"""Free prompts with several learned tokens on a tiny random Stable Diffusion."""
import os

import pytest
import torch
from PIL import Image

from p3 import generate_prompt
from p3.errors import UserError
from p3.model import StableDiffusion, tiny_config


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("p3_generate_prompt")
    torch.manual_seed(0)
    torch.save({"state_dict": StableDiffusion(tiny_config()).state_dict()}, str(root / "tiny.ckpt"))
    (root / "emb").mkdir()
    torch.save({"token": "<new1>", "embedding": torch.randn(2, 32)}, str(root / "emb" / "a.pt"))
    torch.save({"token": "<new2>", "embedding": torch.randn(1, 32)}, str(root / "emb" / "b.pt"))
    return root


def argv(files, out, *prompts):
    return [*prompts, "--ckpt", str(files / "tiny.ckpt"), "--out", str(out), "--n", "2",
            "--steps", "2", "--config", "tiny", "--device", "cpu",
            "--embeddings-dir", str(files / "emb")]


def test_two_tokens_in_one_prompt_give_images_and_a_grid(files, tmp_path):
    prompts = ["a <new1> in the style of <new2>", "a <new1>"]
    generate_prompt.main(argv(files, tmp_path / "a", *prompts))
    generate_prompt.main(argv(files, tmp_path / "b", prompts[0]))
    names = sorted(os.listdir(tmp_path / "a"))
    assert names == ["grid.png"] + [f"prompt{i}_{n}.png" for i in range(2) for n in range(2)]
    assert Image.open(tmp_path / "a" / "grid.png").size == (2 * 18 + 2, 2 * 18 + 2)
    for n in range(2):  # the first prompt's images do not depend on the other prompts
        name = f"prompt0_{n}.png"
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a" / "prompt0_0.png").read_bytes() != \
        (tmp_path / "a" / "prompt1_0.png").read_bytes()


def test_unknown_token_and_non_empty_output_are_refused(files, tmp_path):
    with pytest.raises(UserError, match="uses <new3>, which has no learned embedding"):
        generate_prompt.main(argv(files, tmp_path / "out", "a <new3> dog"))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.png").write_bytes(b"")
    with pytest.raises(UserError, match="is not empty"):
        generate_prompt.main(argv(files, tmp_path / "full", "a <new1>"))
    assert not (tmp_path / "out").exists()
