import os
import sys
import types

import pytest
import torch

from p3.errors import UserError
from p3.model import IGNORED_KEYS, StableDiffusion, load_checkpoint, tiny_config, v1_config

TSV = os.path.join(os.path.dirname(__file__), "golden", "sd_v1_state_dict.tsv")


def read_tsv():
    with open(TSV) as f:
        rows = [line.rstrip("\n").split("\t") for line in f if not line.startswith("#")][1:]
    return {key: tuple(int(d) for d in shape.split("x")) for key, shape, _ in rows}


@pytest.mark.skipif(not hasattr(torch, "get_default_device"), reason="needs torch.device('meta')")
def test_v1_state_dict_is_the_compvis_key_table():
    with torch.device("meta"):
        state = StableDiffusion(v1_config()).state_dict()
    table = read_tsv()
    assert len(table) == 1143
    assert list(state) == [k for k in table if k not in IGNORED_KEYS]
    assert {k: tuple(v.shape) for k, v in state.items()} == {
        k: s for k, s in table.items() if k not in IGNORED_KEYS
    }
    assert sum(v.numel() for v in state.values()) == 1_066_235_307


@pytest.fixture(scope="module")
def tiny_state():
    torch.manual_seed(0)
    return StableDiffusion(tiny_config()).state_dict()


def save(tmp_path, obj):
    path = str(tmp_path / "model.ckpt")
    torch.save(obj, path)
    return path


def test_loads_compvis_layout_ignoring_known_buffers(tmp_path, tiny_state):
    extra = {
        "betas": torch.zeros(1000),
        "model_ema.decay": torch.tensor(0.9999),
        "cond_stage_model.transformer.text_model.embeddings.position_ids": torch.arange(77)[None],
    }
    path = save(tmp_path, {"state_dict": {**tiny_state, **extra}, "global_step": 470000})
    model = load_checkpoint(path, tiny_config())
    assert all(torch.equal(v, tiny_state[k]) for k, v in model.state_dict().items())


def test_mismatching_checkpoint_names_first_keys(tmp_path, tiny_state):
    broken = dict(tiny_state)
    del broken["model.diffusion_model.out.2.weight"]
    broken["model.diffusion_model.extra.weight"] = torch.zeros(1)
    broken["first_stage_model.quant_conv.bias"] = torch.zeros(3)
    with pytest.raises(UserError) as err:
        load_checkpoint(save(tmp_path, {"state_dict": broken}), tiny_config())
    message = str(err.value)
    assert "not a Stable Diffusion v1 checkpoint" in message
    assert "1 missing keys, first: model.diffusion_model.out.2.weight" in message
    assert "model.diffusion_model.extra.weight" in message
    assert "first_stage_model.quant_conv.bias (3,) (expected (8,))" in message


def test_v1_config_rejects_tiny_checkpoint(tmp_path, tiny_state):
    with pytest.raises(UserError, match="wrong shape keys"):
        load_checkpoint(save(tmp_path, {"state_dict": tiny_state}), tiny_config().__class__(
            unet=tiny_config().unet, vae=tiny_config().vae, text=v1_config().text))


def test_checkpoint_with_unimportable_pickled_objects_loads(tmp_path, tiny_state, monkeypatch):
    """Like sd-v1-4.ckpt's pytorch_lightning callbacks when pytorch_lightning is absent."""
    fake = types.ModuleType("fake_lightning")

    class ModelCheckpoint:
        def __init__(self):
            self.monitor = None

    ModelCheckpoint.__module__, ModelCheckpoint.__qualname__ = "fake_lightning", "ModelCheckpoint"
    fake.ModelCheckpoint = ModelCheckpoint
    monkeypatch.setitem(sys.modules, "fake_lightning", fake)
    path = save(tmp_path, {"state_dict": tiny_state, "callbacks": {"cb": ModelCheckpoint()}})
    monkeypatch.delitem(sys.modules, "fake_lightning")
    model = load_checkpoint(path, tiny_config())
    assert torch.equal(model.unet.out[2].weight, tiny_state["model.diffusion_model.out.2.weight"])


@pytest.mark.parametrize("content", [b"not a checkpoint", None, {"a": 1}])
def test_unreadable_or_foreign_files_are_user_errors(tmp_path, content):
    path = str(tmp_path / "x.ckpt")
    if isinstance(content, bytes):
        with open(path, "wb") as f:
            f.write(content)
    elif content is not None:
        torch.save(content, path)
    with pytest.raises(UserError):
        load_checkpoint(path, tiny_config())


def test_to_inference_keeps_cpu_in_float32():
    model = StableDiffusion(tiny_config()).to_inference("cpu")
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert not any(p.requires_grad for p in model.parameters()) and not model.training


@pytest.mark.parametrize("fallback_attention", [False, True])
def test_fp16_unet_and_text_encoder_track_fp32(monkeypatch, fallback_attention):
    """The GPU precision recipe (fp16 UNet/CLIP, fp32 latents out) on the CPU, where supported."""
    if fallback_attention:
        monkeypatch.delattr(torch.nn.functional, "scaled_dot_product_attention", raising=False)
    torch.manual_seed(0)
    model = StableDiffusion(tiny_config()).eval()
    x, t = torch.randn(2, 4, 8, 8), torch.tensor([10.0, 900.0])
    ids = torch.randint(0, 49407, (2, 77))
    with torch.no_grad():
        context = model.text_encoder(ids)
        eps = model.unet(x, t, context)
        model.unet.half()
        model.text_encoder.half()
        try:
            context16 = model.text_encoder(ids)
        except RuntimeError as err:  # torch 1.11 has no fp16 LayerNorm on the CPU
            pytest.skip(f"no fp16 CPU kernels: {err}")
        eps16 = model.unet(x, t, context16)
    assert context16.dtype == torch.float16 and eps16.dtype == torch.float32
    assert (context16.float() - context).abs().max() < 1e-2 * context.abs().max()
    assert (eps16 - eps).abs().max() < 1e-2 * eps.abs().max()
