import pytest
import timm
import torch

from acr_plugin.acr import UniformAttention
from acr_plugin.acr.attention.attention_capture import AttentionCapture
from acr_plugin.acr.attention.attention_ops import attention_entropy


def tiny_vit():
    return timm.create_model(
        'vit_tiny_patch16_224',
        pretrained=False,
        num_classes=3,
        img_size=32,
        patch_size=8,
        embed_dim=32,
        depth=2,
        num_heads=2,
    ).eval()


def test_uniform_attention_is_uniform_and_removed_cleanly():
    torch.manual_seed(0)
    model = tiny_vit()
    x = torch.randn(2, 3, 32, 32)
    before = model(x)
    with UniformAttention(model), AttentionCapture(model) as cap:
        changed = model(x)
        attn = cap.pop()
    for a in attn:
        torch.testing.assert_close(a, torch.full_like(a, 1 / a.shape[-1]))
        torch.testing.assert_close(attention_entropy(a), torch.ones(2))
    assert not torch.allclose(before, changed)
    torch.testing.assert_close(model(x), before)
    for blk in model.blocks:
        assert blk.attn.fused_attn == timm.layers.use_fused_attn()
        assert not blk.attn.attn_drop._forward_hooks


def test_uniform_attention_output_is_the_mean_of_values():
    torch.manual_seed(0)
    attn = tiny_vit().blocks[0].attn
    tokens = torch.randn(2, 17, 32)
    with UniformAttention(attn):
        out = attn(tokens)
    q, k, v = attn.qkv(tokens).reshape(2, 17, 3, 2, 16).permute(2, 0, 3, 1, 4)
    mean_v = v.mean(dim=2, keepdim=True).expand(-1, -1, 17, -1)
    expected = attn.proj(mean_v.transpose(1, 2).reshape(2, 17, 32))
    torch.testing.assert_close(out, expected)


def test_non_timm_attention_is_refused():
    with pytest.raises(NotImplementedError, match='timm'):
        UniformAttention(torch.nn.MultiheadAttention(8, 2))
