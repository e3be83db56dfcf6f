import pytest
import torch

from p3 import attention as attn


def naive(q, k, v, causal):
    scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
    if causal:
        scores = scores + torch.full(scores.shape[-2:], float("-inf")).triu(1)
    return scores.softmax(-1) @ v


@pytest.mark.parametrize("causal", [False, True])
def test_chunked_fallback_matches_naive_attention(monkeypatch, causal):
    monkeypatch.setattr(attn, "MAX_SCORE_ELEMENTS", 2 * 3 * 13 * 5)  # 5 query rows per chunk
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 13, 8, generator=g, dtype=torch.float64) for _ in range(3))
    ref = naive(q, k, v, causal)
    assert torch.allclose(attn.chunked_attention(q, k, v, causal), ref, atol=1e-12)
    assert torch.allclose(attn.attention(q, k, v, causal), ref, atol=1e-12)


def test_split_heads_uses_head_as_outer_channel_factor():
    x = torch.arange(12.0).reshape(1, 1, 12)
    heads = attn.split_heads(x, 3)
    assert heads.shape == (1, 3, 1, 4)
    assert heads[0, 1, 0].tolist() == [4.0, 5.0, 6.0, 7.0]
    assert torch.equal(attn.merge_heads(heads), x)
