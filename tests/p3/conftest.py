"""Shared helpers for the p3 tests, handed out as the `sd` fixture: golden files, their
seeded weight recipe and the spec's tolerance check."""
import os
from types import SimpleNamespace

import pytest
import torch

GOLDEN_DIR = os.path.join(os.path.dirname(__file__), "golden")


def load_golden(name):
    return torch.load(os.path.join(GOLDEN_DIR, name))


def recipe_weights(golden):
    """Rebuild a golden file's weights: entry i (every key counts) ~ N(0, 0.05²) drawn in
    float64 from a generator seeded 1000 + i, cast to float32; non-float entries skipped."""
    weights = {}
    for i, key in enumerate(golden["keys"]):
        if "float" not in str(golden["dtypes"][key]):
            continue
        g = torch.Generator().manual_seed(1000 + i)
        w = torch.randn(golden["shapes"][key], generator=g, dtype=torch.float64) * 0.05
        weights[key] = w.to(torch.float32)
        assert weights[key].flatten()[:4].tolist() == golden["fingerprints"][key]["first"]
    return weights


def assert_close(mine, ref, rel=1e-10):
    """max|mine − ref| <= rel · max(1, max|ref|) (the spec's float64 tolerance)."""
    err = (mine.double() - ref.double()).abs().max().item()
    bound = rel * max(1.0, ref.abs().max().item())
    assert err <= bound, f"max error {err:.3e} > {bound:.3e}"


@pytest.fixture(scope="session")
def sd():
    return SimpleNamespace(load=load_golden, weights=recipe_weights, assert_close=assert_close)


@pytest.fixture(autouse=True)
def one_cpu_thread():
    """The tiny models run fastest on one thread; several threads on a busy shared CPU
    spin-wait in OpenMP and make these tests 10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory):
    """A random CLIP with a byte-level tokenizer and 32-pixel images, saved like a hub folder."""
    import json

    from p3.tokenizer import bytes_to_unicode

    transformers = pytest.importorskip("transformers")

    folder = tmp_path_factory.mktemp("tiny_clip")
    units = list(bytes_to_unicode().values())
    vocab = units + [u + "</w>" for u in units] + ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = transformers.CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    image_processor_class = (
        getattr(transformers, "CLIPImageProcessor", None) or transformers.CLIPFeatureExtractor
    )
    processor = transformers.CLIPProcessor(image_processor_class(size=32, crop_size=32), tokenizer)
    shared = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    text = dict(
        vocab_size=len(vocab), bos_token_id=len(vocab) - 2, eos_token_id=len(vocab) - 1, **shared
    )
    vision = dict(image_size=32, patch_size=8, **shared)
    # transformers 4.19 reads *_config_dict, later releases *_config
    config = transformers.CLIPConfig(
        text_config=text,
        vision_config=vision,
        text_config_dict=text,
        vision_config_dict=vision,
        projection_dim=16,
    )
    torch.manual_seed(0)
    transformers.CLIPModel(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
