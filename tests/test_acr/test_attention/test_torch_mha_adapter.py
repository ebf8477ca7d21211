"""mha_project / mha_attention_bias reproduce nn.MultiheadAttention."""

import pytest
import torch
import torch.nn as nn

from acr_plugin.acr.attention.torch_mha_adapter import (
    mha_attention_bias,
    mha_project,
)


def recompute(mha, query, key, value, attn_mask=None, key_padding_mask=None):
    q, k, v = mha_project(mha, query, key, value)
    logits = q @ k.transpose(-2, -1)
    bias = mha_attention_bias(
        attn_mask, key_padding_mask, tuple(logits.shape), logits.dtype
    )
    if bias is not None:
        logits = logits + bias
    probs = logits.softmax(-1)
    out = (probs @ v).transpose(1, 2).reshape(q.shape[0], q.shape[2], -1)
    return mha.out_proj(out), probs


@pytest.mark.parametrize('batch_first', [False, True])
@pytest.mark.parametrize('bool_masks', [False, True])
def test_projection_and_masks_reproduce_torch(batch_first, bool_masks):
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(8, 2, batch_first=batch_first).double().eval()
    tokens = torch.randn(3, 5, 8, dtype=torch.float64)
    x = tokens if batch_first else tokens.transpose(0, 1)
    padding = torch.tensor([[False] * 4 + [True]] * 3)
    causal = torch.triu(torch.ones(5, 5, dtype=torch.bool), 1)
    if not bool_masks:
        padding = torch.zeros(3, 5, dtype=torch.float64).masked_fill(padding, -1e9)
        causal = torch.zeros(5, 5, dtype=torch.float64).masked_fill(causal, -1e9)
    expected, weights = mha(
        x,
        x,
        x,
        key_padding_mask=padding,
        attn_mask=causal,
        average_attn_weights=False,
    )
    out, probs = recompute(mha, x, x, x, causal, padding)
    if not batch_first:
        out = out.transpose(0, 1)
    torch.testing.assert_close(out, expected, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(probs, weights, rtol=1e-9, atol=1e-12)


def test_separate_projections_and_unbatched_input():
    torch.manual_seed(1)
    mha = nn.MultiheadAttention(8, 2, kdim=6, vdim=4, bias=False).double().eval()
    query = torch.randn(5, 8, dtype=torch.float64)  # unbatched (L, E)
    key = torch.randn(7, 6, dtype=torch.float64)
    value = torch.randn(7, 4, dtype=torch.float64)
    expected, _ = mha(query, key, value)
    out, probs = recompute(mha, query, key, value)
    assert probs.shape == (1, 2, 5, 7)
    torch.testing.assert_close(out[0], expected, rtol=1e-9, atol=1e-12)


def test_unsupported_options_raise():
    mha = nn.MultiheadAttention(8, 2, add_bias_kv=True)
    x = torch.randn(5, 1, 8)
    with pytest.raises(NotImplementedError, match='add_bias_kv'):
        mha_project(mha, x, x, x)
