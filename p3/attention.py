"""Multi-head scaled dot-product attention shared by the UNet, the VAE and CLIP.

`torch.nn.functional.scaled_dot_product_attention` (torch >= 2.0) when available; otherwise a
chunked fallback that bounds the size of the (queries x keys) score matrix (torch 1.11).
"""
import torch
import torch.nn.functional as F

# Largest score matrix the fallback materialises at once, in elements (256 MiB in fp32).
MAX_SCORE_ELEMENTS = 1 << 26


def attention(q, k, v, causal=False):
    """softmax(q kᵀ / √d [+ causal mask]) v.

    q: (B, H, Nq, d); k, v: (B, H, Nk, d) -> (B, H, Nq, d).
    """
    if hasattr(F, "scaled_dot_product_attention"):
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    return chunked_attention(q, k, v, causal)


def chunked_attention(q, k, v, causal=False):
    """The same attention in query chunks; fp16 scores get their softmax in float32."""
    scale = q.shape[-1] ** -0.5
    rows_per_chunk = max(1, MAX_SCORE_ELEMENTS // (q.shape[0] * q.shape[1] * k.shape[2]))
    out = torch.empty_like(q)
    for start in range(0, q.shape[2], rows_per_chunk):
        stop = min(start + rows_per_chunk, q.shape[2])
        scores = torch.matmul(q[:, :, start:stop] * scale, k.transpose(-1, -2))
        scores = scores.to(torch.promote_types(scores.dtype, torch.float32))
        if causal:
            rows = torch.arange(start, stop, device=q.device)[:, None]
            cols = torch.arange(k.shape[2], device=q.device)[None, :]
            scores = scores.masked_fill(cols > rows, float("-inf"))
        out[:, :, start:stop] = torch.matmul(scores.softmax(-1).to(v.dtype), v)
    return out


def split_heads(x, heads):
    """(B, N, heads·d) -> (B, heads, N, d); the head index is the outer factor of the channels."""
    b, n, c = x.shape
    return x.reshape(b, n, heads, c // heads).transpose(1, 2)


def merge_heads(x):
    """(B, heads, N, d) -> (B, N, heads·d)."""
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)
