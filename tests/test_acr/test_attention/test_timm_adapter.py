"""timm_qk_from_qkv: the queries and keys of timm's Attention."""

import pytest
import torch
import torch.nn as nn
from timm.layers import Attention

from acr_plugin.acr.attention.attention_ops import probs_from_qk
from acr_plugin.acr.attention.query_key_pair import QueryKeyPair
from acr_plugin.acr.attention.timm_adapter import timm_qk_from_qkv


@pytest.mark.parametrize('qk_norm', [False, True])
def test_qk_reproduce_the_module_output(qk_norm):
    torch.manual_seed(0)
    norm = dict(qk_norm=True, norm_layer=nn.LayerNorm) if qk_norm else {}
    attn = Attention(dim=12, num_heads=3, qkv_bias=True, **norm).double()
    attn.eval()
    x = torch.randn(2, 5, 12, dtype=torch.float64)
    qkv = attn.qkv(x)
    record = timm_qk_from_qkv(attn, qkv)
    assert isinstance(record, QueryKeyPair)
    assert record.q.shape == record.k.shape == (2, 3, 5, 4)
    v = qkv.reshape(2, 5, 3, 3, 4)[:, :, 2].transpose(1, 2)
    out = (probs_from_qk(*record) @ v).transpose(1, 2).reshape(2, 5, 12)
    torch.testing.assert_close(attn.proj(out), attn(x), rtol=1e-10, atol=1e-12)
