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


def test_gradient_wrt_uniform_attention_is_the_value_product():
    """Under uniform attention the gradient of a class logit w.r.t. the
    attention probabilities still exists (what the class-token-gradient head
    reads): dz/dA[b, h, i, j] = <dz/d(out[b, h, i]), v[b, h, j]>, checked
    against that product; q and k receive no gradient."""
    torch.manual_seed(0)
    model = tiny_vit()
    attn = model.blocks[-1].attn
    x = torch.randn(1, 3, 32, 32)
    values, outputs = {}, {}

    def keep_v(module, args, out):  # qkv -> v of the last block
        b, n, _ = out.shape
        qkv = out.reshape(b, n, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4)
        values['v'] = qkv[2]

    def keep_out(module, args):  # (A @ v), heads merged, before proj
        outputs['pre'] = args[0]

    handles = [attn.qkv.register_forward_hook(keep_v)]
    handles.append(attn.proj.register_forward_pre_hook(keep_out))
    with UniformAttention(model), AttentionCapture(model, layers=[-1]) as cap:
        logit = model(x)[0, 1]
        (probs,) = cap.pop()
        (grad_probs,) = torch.autograd.grad(logit, probs, retain_graph=True)
        (grad_pre,) = torch.autograd.grad(logit, outputs['pre'], retain_graph=True)
        q_grad = torch.autograd.grad(
            logit, attn.qkv.weight, retain_graph=True, allow_unused=True
        )[0]
    for handle in handles:
        handle.remove()
    b, n, _ = grad_pre.shape
    grad_heads = grad_pre.reshape(b, n, attn.num_heads, -1).transpose(1, 2)
    expected = grad_heads @ values['v'].transpose(-2, -1)
    torch.testing.assert_close(grad_probs, expected)
    dim = attn.qkv.weight.shape[1]
    assert torch.count_nonzero(q_grad[: 2 * dim]) == 0  # q and k rows
    assert torch.count_nonzero(q_grad[2 * dim :]) > 0  # v rows
