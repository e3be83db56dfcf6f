"""CLIP ViT-L/14 text transformer (the conditioning network of SD v1), sd_v1.md §6.

Attribute names follow HF `CLIPTextModel`, so the CompVis keys
`cond_stage_model.transformer.text_model.…` load one to one.
"""
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .attention import attention, merge_heads, split_heads


@dataclass
class TextEncoderConfig:
    vocab_size: int = 49408
    hidden_size: int = 768
    intermediate_size: int = 3072
    num_layers: int = 12
    num_heads: int = 12
    max_positions: int = 77
    layer_norm_eps: float = 1e-5


def quick_gelu(x):
    return x * torch.sigmoid(1.702 * x)


class SelfAttention(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.heads = heads
        self.k_proj = nn.Linear(width, width)
        self.v_proj = nn.Linear(width, width)
        self.q_proj = nn.Linear(width, width)
        self.out_proj = nn.Linear(width, width)

    def forward(self, x):
        """Causal self-attention, x: (B, N, width)."""
        projections = (self.q_proj, self.k_proj, self.v_proj)
        q, k, v = (split_heads(proj(x), self.heads) for proj in projections)
        return self.out_proj(merge_heads(attention(q, k, v, causal=True)))


class MLP(nn.Module):
    def __init__(self, width, hidden):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x):
        return self.fc2(quick_gelu(self.fc1(x)))


class EncoderLayer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.self_attn = SelfAttention(cfg.hidden_size, cfg.num_heads)
        self.layer_norm1 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.mlp = MLP(cfg.hidden_size, cfg.intermediate_size)
        self.layer_norm2 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, x):
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class Encoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.num_layers))


class Embeddings(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.position_embedding = nn.Embedding(cfg.max_positions, cfg.hidden_size)


class TextModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.embeddings = Embeddings(cfg)
        self.encoder = Encoder(cfg)
        self.final_layer_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)


class TextEncoder(nn.Module):
    """ids (B, 77) -> last_hidden_state (B, 77, hidden), the context SD cross-attends to."""

    def __init__(self, cfg: TextEncoderConfig):
        super().__init__()
        self.config = cfg
        self.text_model = TextModel(cfg)

    def forward(self, input_ids, extra_embeddings=None):
        """input_ids: (B, N) int64. Ids >= vocab_size index rows of `extra_embeddings`
        (n_extra, hidden): the learned placeholder-token vectors of textual inversion."""
        m = self.text_model
        table = m.embeddings.token_embedding.weight
        if extra_embeddings is not None:
            table = torch.cat([table, extra_embeddings.to(table)])
        positions = m.embeddings.position_embedding.weight[: input_ids.shape[1]]
        x = F.embedding(input_ids, table) + positions
        for layer in m.encoder.layers:
            x = layer(x)
        return m.final_layer_norm(x)
