"""Stable Diffusion v1 as one module whose state_dict keys are the CompVis checkpoint keys.

    model.diffusion_model.…          UNetModel      ε(z_t, t, context)
    first_stage_model.…              AutoencoderKL  image <-> latent
    cond_stage_model.transformer.…   TextEncoder    ids -> context (B, 77, 768)

`load_checkpoint` reads `sd-v1-4.ckpt` (or any file with the same keys) strictly.
"""
import inspect
import os
import pickle
from dataclasses import dataclass, field
from types import SimpleNamespace

import torch
from torch import nn

from .errors import UserError
from .text_encoder import TextEncoder, TextEncoderConfig
from .unet import UNetConfig, UNetModel
from .vae import AutoencoderKL, VAEConfig

# Entries of the CompVis checkpoint that we recompute or do not use (sd_v1.md §8).
SCHEDULE_BUFFERS = (
    "betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod",
    "sqrt_one_minus_alphas_cumprod", "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod",
    "sqrt_recipm1_alphas_cumprod", "posterior_variance", "posterior_log_variance_clipped",
    "posterior_mean_coef1", "posterior_mean_coef2",
)
IGNORED_KEYS = frozenset(
    SCHEDULE_BUFFERS
    + (
        "cond_stage_model.transformer.text_model.embeddings.position_ids",
        "model_ema.decay",
        "model_ema.num_updates",
    )
)


@dataclass
class SDConfig:
    unet: UNetConfig = field(default_factory=UNetConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    image_size: int = 512

    @property
    def latent_size(self):
        return self.image_size // 2 ** (len(self.vae.ch_mult) - 1)


def v1_config():
    """`configs/stable-diffusion/v1-inference.yaml`."""
    return SDConfig()


def tiny_config():
    """The tiny configs of the golden files (sd_*_tiny_golden.pt): 16×16 images, 8×8 latents."""
    return SDConfig(
        unet=UNetConfig(
            model_channels=32, channel_mult=(1, 2, 2), num_res_blocks=1,
            attention_resolutions=(1, 2), num_heads=2, context_dim=32,
        ),
        vae=VAEConfig(ch=32, ch_mult=(1, 2), num_res_blocks=1),
        text=TextEncoderConfig(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2),
        image_size=16,
    )


CONFIGS = {"v1": v1_config, "tiny": tiny_config}


class DiffusionWrapper(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.diffusion_model = UNetModel(cfg)


class FrozenCLIPEmbedder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.transformer = TextEncoder(cfg)


class StableDiffusion(nn.Module):
    def __init__(self, cfg: SDConfig):
        super().__init__()
        self.config = cfg
        self.model = DiffusionWrapper(cfg.unet)
        self.first_stage_model = AutoencoderKL(cfg.vae)
        self.cond_stage_model = FrozenCLIPEmbedder(cfg.text)

    @property
    def unet(self) -> UNetModel:
        return self.model.diffusion_model

    @property
    def vae(self) -> AutoencoderKL:
        return self.first_stage_model

    @property
    def text_encoder(self) -> TextEncoder:
        return self.cond_stage_model.transformer

    def to_inference(self, device):
        """fp16 UNet and text encoder on a GPU, fp32 VAE (fp16 decodes give NaNs); fp32 on CPU."""
        self.eval().requires_grad_(False)
        half = torch.device(device).type == "cuda"
        self.unet.to(device, torch.float16 if half else torch.float32)
        self.text_encoder.to(device, torch.float16 if half else torch.float32)
        self.vae.to(device, torch.float32)
        return self


def check_state_dict(model: nn.Module, state_dict: dict, name="checkpoint"):
    """Raise UserError naming the first missing / unexpected / wrongly shaped keys."""
    expected = model.state_dict()
    given = {k: v for k, v in state_dict.items() if k not in IGNORED_KEYS}
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    wrong_shape = [
        f"{k} {tuple(given[k].shape)} (expected {tuple(v.shape)})"
        for k, v in expected.items()
        if k in given and tuple(getattr(given[k], "shape", ())) != tuple(v.shape)
    ]
    problems = []
    for label, keys in (
        ("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape)
    ):
        if keys:
            problems.append(f"{len(keys)} {label} keys, first: {', '.join(keys[:3])}")
    if problems:
        raise UserError(f"{name} is not a Stable Diffusion v1 checkpoint for this config: "
                        + "; ".join(problems))
    return given


class StubObject:
    """Stands in for a pickled object whose class is not importable here."""

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass


class LenientUnpickler(pickle.Unpickler):
    """Unpickles classes we do not have (the CompVis checkpoint may carry pytorch_lightning
    callback objects) as inert stubs; tensors and containers load as usual."""

    def find_class(self, module, name):
        try:
            return super().find_class(module, name)
        except (ImportError, AttributeError):
            return type(name, (StubObject,), {"__module__": module})


LENIENT_PICKLE = SimpleNamespace(
    __name__="lenient_pickle", Unpickler=LenientUnpickler,
    load=lambda f, **kwargs: LenientUnpickler(f, **kwargs).load(),
)


def torch_load_full(path):
    """torch.load of a trusted checkpoint with any pickled content (torch 1.11 … 2.x)."""
    kwargs = {"map_location": "cpu", "pickle_module": LENIENT_PICKLE}
    if "weights_only" in inspect.signature(torch.load).parameters:
        kwargs["weights_only"] = False
    return torch.load(path, **kwargs)


def read_state_dict(path):
    """The `state_dict` of a CompVis checkpoint file (also accepts a bare state_dict)."""
    if not os.path.isfile(path):
        raise UserError(f"checkpoint not found: {path}")
    try:
        ckpt = torch_load_full(path)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the same user error
        raise UserError(f"cannot read checkpoint {path}: {type(err).__name__}: {err}") from None
    if isinstance(ckpt, dict) and isinstance(ckpt.get("state_dict"), dict):
        ckpt = ckpt["state_dict"]
    if not isinstance(ckpt, dict) or not all(torch.is_tensor(v) for v in ckpt.values()):
        raise UserError(f"{path} holds no state_dict of tensors: not a Stable Diffusion checkpoint")
    return ckpt


def load_checkpoint(path, cfg: SDConfig = None) -> StableDiffusion:
    """Build the model for `cfg` (default SD v1) and load every tensor of `path` strictly."""
    model = StableDiffusion(cfg or v1_config())
    state_dict = check_state_dict(model, read_state_dict(path), name=path)
    model.load_state_dict(state_dict)
    return model
