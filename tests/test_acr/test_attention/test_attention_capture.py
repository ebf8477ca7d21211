"""AttentionCapture: probabilities and (q, k) records of timm and torch MHA
attention, their gradients, hooks and the pop contract."""

import math

import pytest
import torch
import torch.nn as nn

from acr_plugin.acr.attention.attention_capture import AttentionCapture
from acr_plugin.acr.attention.attention_ops import head_average, probs_from_qk
from acr_plugin.acr.attention.query_key_pair import QueryKeyPair
from tests.test_acr.test_attention.attention_models import (
    TIMM_VARIANTS,
    build_mmseg,
    build_timm,
    no_hooks_left,
)


# ------------------------------------------------------------------ references
def block_inputs(model, kind, x):
    """The input of each attention module, captured by a test-only hook."""
    inputs, handles = [], []
    for block in model.blocks:
        module = block.attn
        handles.append(
            module.register_forward_pre_hook(
                lambda m, args, kwargs: inputs.append(
                    args[0] if args else kwargs['query']
                ),
                with_kwargs=True,
            )
        )
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return inputs


def reference_probs(model, kind, x):
    """softmax(q k^T * scale) per head, written out by hand (batch-first)."""
    refs = []
    for block, tokens in zip(model.blocks, block_inputs(model, kind, x)):
        if kind == 'timm':
            attn = block.attn
            weight, bias = attn.qkv.weight, attn.qkv.bias
            heads, q_norm, k_norm = attn.num_heads, attn.q_norm, attn.k_norm
        else:
            attn = block.attn.attn  # mmcv wrapper -> torch MHA
            weight, bias = attn.in_proj_weight, attn.in_proj_bias
            heads, q_norm, k_norm = attn.num_heads, nn.Identity(), nn.Identity()
        dim = weight.shape[0] // 3
        head_dim = dim // heads
        per_head = []
        for h in range(heads):
            rows = [slot * dim + h * head_dim for slot in range(2)]
            wq = weight[rows[0] : rows[0] + head_dim]
            wk = weight[rows[1] : rows[1] + head_dim]
            q = torch.einsum('bnc,dc->bnd', tokens, wq)
            k = torch.einsum('bnc,dc->bnd', tokens, wk)
            if bias is not None:
                q = q + bias[rows[0] : rows[0] + head_dim]
                k = k + bias[rows[1] : rows[1] + head_dim]
            q, k = q_norm(q), k_norm(k)
            logits = torch.einsum('bnd,bmd->bnm', q, k) / math.sqrt(head_dim)
            per_head.append(torch.exp(logits - logits.logsumexp(-1, keepdim=True)))
        refs.append(torch.stack(per_head, dim=1))
    return refs


def logit_of(output):
    return output[:, 1].sum()


# ------------------------------------------------------------------ capture
def test_layer_selection_and_errors():
    model, x = build_timm('vit')
    cap = AttentionCapture(model, layers=[-1, 0, 2])
    assert cap.num_layers == 3 and cap.layers == [0, 2]
    with pytest.raises(IndexError, match=r'VisionTransformer.*3'):
        AttentionCapture(model, layers=[3])
    with pytest.raises(IndexError, match='-4'):
        AttentionCapture(model, layers=[-4])
    with pytest.raises(ValueError, match='mode'):
        AttentionCapture(model, mode='logits')
    # only the selected layers are hooked / switched to the non-fused path
    with AttentionCapture(model, layers=[-1]) as cap, torch.no_grad():
        assert [b.attn.fused_attn for b in model.blocks] == [True, True, False]
        model(x)
        (attn,) = cap.pop()
    assert attn.shape == (2, 2, 17, 17)
    assert no_hooks_left(model)


# ------------------------------------------------------------------ timm
@pytest.mark.parametrize('variant', list(TIMM_VARIANTS))
def test_timm_capture_matches_reference(variant):
    model, x = build_timm(variant)
    with torch.no_grad():
        expected = model(x)
    refs = reference_probs(model, 'timm', x)
    heads = model.blocks[0].attn.num_heads
    grid = (x.shape[2] // 8) * (x.shape[3] // 8)
    num_tokens = model.num_prefix_tokens + grid

    with AttentionCapture(model) as cap, torch.no_grad():
        assert not any(b.attn.fused_attn for b in model.blocks)
        out = model(x)
        probs = cap.pop()
    assert all(b.attn.fused_attn for b in model.blocks)
    assert no_hooks_left(model)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
    assert len(probs) == 3
    for attn, ref in zip(probs, refs):
        assert attn.shape == (x.shape[0], heads, num_tokens, num_tokens)
        torch.testing.assert_close(attn.sum(-1), torch.ones_like(attn[..., 0]))
        torch.testing.assert_close(attn, ref, rtol=0, atol=1e-6)

    with AttentionCapture(model, mode='qk') as cap, torch.no_grad():
        assert all(b.attn.fused_attn for b in model.blocks)
        out = model(x)
        qk = cap.pop()
    assert no_hooks_left(model)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
    assert all(isinstance(record, QueryKeyPair) for record in qk)
    for (q, k), attn in zip(qk, probs):
        assert q.shape == k.shape == (x.shape[0], heads, num_tokens, 32 // heads)
        torch.testing.assert_close(probs_from_qk(q, k), attn, rtol=0, atol=1e-6)


def test_timm_gradient_wrt_probs():
    """d logit / d A equals the gradient w.r.t. an additive probe on A."""
    model, x = build_timm('vit', dtype=torch.float64)
    probes = [
        torch.zeros(2, 2, 17, 17, dtype=torch.float64, requires_grad=True)
        for _ in model.blocks
    ]
    with AttentionCapture(model) as cap:
        # registered after the capture hooks: A is recorded, A + probe is used
        handles = [
            b.attn.attn_drop.register_forward_hook(
                lambda m, i, out, probe=probe: out + probe
            )
            for b, probe in zip(model.blocks, probes)
        ]
        logit = logit_of(model(x))
        probs = cap.pop()
        for handle in handles:
            handle.remove()
    grads = torch.autograd.grad(logit, probs + probes)
    for g_attn, g_probe in zip(grads[:3], grads[3:]):
        assert g_attn.abs().sum() > 0
        torch.testing.assert_close(g_attn, g_probe, rtol=1e-10, atol=1e-12)

    # finite differences through the probe of the last block
    attn = model.blocks[2].attn
    assert attn.fused_attn  # restored on exit; the probe needs the plain path
    attn.fused_attn = False

    def logit_with(delta):
        handle = attn.attn_drop.register_forward_hook(lambda m, i, out: out + delta)
        try:
            with torch.no_grad():
                return logit_of(model(x)).item()
        finally:
            handle.remove()

    g = grads[2]
    for index in [(0, 0, 0, 3), (1, 1, 5, 0), (0, 1, 16, 16)]:
        delta = torch.zeros_like(g)
        delta[index] = 1e-6
        numeric = (logit_with(delta) - logit_with(-delta)) / 2e-6
        assert numeric == pytest.approx(g[index].item(), rel=1e-5, abs=1e-9)


@pytest.mark.parametrize('mode', ['probs', 'qk'])
def test_two_views_both_get_gradients(mode):
    model, x = build_timm('vit')
    model.train()
    with AttentionCapture(model, layers=[0, -1], mode=mode) as cap:
        model(x)
        model(x.flip(-1))
        forwards = cap.pop_all()
        assert cap.num_forwards() == 0
    assert len(forwards) == 2 and all(len(f) == 2 for f in forwards)
    if mode == 'qk':
        forwards = [[probs_from_qk(*r) for r in f] for f in forwards]
    loss = sum((a - b).abs().mean() for a, b in zip(*forwards))
    grads = torch.autograd.grad(loss, forwards[0] + forwards[1], retain_graph=True)
    assert all(g.abs().sum() > 0 for g in grads)
    (g_qkv,) = torch.autograd.grad(loss, [model.blocks[0].attn.qkv.weight])
    assert g_qkv.abs().sum() > 0


def test_pop_contract_and_detach():
    model, x = build_timm('vit')
    with AttentionCapture(model, detach=True) as cap:
        with pytest.raises(RuntimeError, match='got 0'):
            cap.pop()
        model(x)
        model(x)
        with pytest.raises(RuntimeError, match='pop_all'):
            cap.pop()
        cap.clear()
        model(x)
        records = cap.pop()
        assert not any(r.requires_grad for r in records)
        model(x)
    # stop() drops records: a new capture starts empty
    assert cap.pop_all() == []
    with pytest.raises(RuntimeError, match='not started'):
        cap.pop()


def test_qk_mode_rejects_other_timm_attention():
    class RelPosAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.qkv = nn.Linear(8, 24)
            self.num_heads, self.scale = 2, 0.5
            self.attn_drop = nn.Dropout(0.0)

    model = nn.Sequential(RelPosAttention())
    assert AttentionCapture(model).num_layers == 1
    with pytest.raises(NotImplementedError, match='RelPosAttention'):
        AttentionCapture(model, mode='qk')


# ------------------------------------------------------------------ mmseg / MHA
def test_mmseg_vit_capture_matches_reference():
    model, x = build_mmseg()
    with torch.no_grad():
        expected = model(x)
    refs = reference_probs(model, 'torch_mha', x)
    with AttentionCapture(model) as cap, torch.no_grad():
        out = model(x)
        probs = cap.pop()
    assert no_hooks_left(model)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
    for attn, ref in zip(probs, refs):
        assert attn.shape == (2, 2, 17, 17)
        torch.testing.assert_close(attn.sum(-1), torch.ones_like(attn[..., 0]))
        torch.testing.assert_close(attn, ref, rtol=0, atol=1e-6)

    with AttentionCapture(model, mode='qk', layers=[-1]) as cap, torch.no_grad():
        out = model(x)
        ((q, k),) = cap.pop()
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
    assert q.shape == (2, 2, 17, 16)
    torch.testing.assert_close(probs_from_qk(q, k), probs[-1], rtol=0, atol=1e-6)


def test_mmseg_vit_gradient_wrt_probs():
    """d logit / d A by the chain rule through the block, written by hand."""
    model, x = build_mmseg(dtype=torch.float64)
    wrapper_outs, wrapper_ins = [], []
    handles = []
    for layer in model.blocks:
        handles.append(
            layer.attn.register_forward_hook(lambda m, i, o: wrapper_outs.append(o))
        )
        handles.append(
            layer.attn.register_forward_pre_hook(
                lambda m, a, kw: wrapper_ins.append(a[0] if a else kw['query']),
                with_kwargs=True,
            )
        )
    with AttentionCapture(model) as cap:
        logit = logit_of(model(x))
        probs = cap.pop()
    for handle in handles:
        handle.remove()
    grads = torch.autograd.grad(logit, probs + wrapper_outs)
    for layer, g_attn, g_out, tokens in zip(
        model.blocks, grads[:2], grads[2:], wrapper_ins
    ):
        mha = layer.attn.attn
        assert g_attn.abs().sum() > 0
        # output = identity + out_proj(concat_h(A_h V_h)) (batch-first here)
        g_heads = (g_out @ mha.out_proj.weight).view(2, 17, 2, 16)
        w_v = mha.in_proj_weight[64:]
        v = (tokens @ w_v.T + mha.in_proj_bias[64:]).view(2, 17, 2, 16)
        expected = torch.einsum('bihd,bjhd->bhij', g_heads, v)
        torch.testing.assert_close(g_attn, expected, rtol=1e-9, atol=1e-12)


def test_mha_direct_with_masks_and_layouts():
    torch.manual_seed(0)
    for batch_first in (False, True):
        mha = nn.MultiheadAttention(8, 2, batch_first=batch_first).eval()
        model = nn.ModuleDict(dict(attn=mha))
        tokens = torch.randn(3, 5, 8)  # (B, N, E)
        x = tokens if batch_first else tokens.transpose(0, 1)
        padding = torch.tensor([[False] * 4 + [True]] * 3)
        causal = torch.triu(torch.ones(5, 5, dtype=torch.bool), 1)
        kwargs = dict(key_padding_mask=padding, attn_mask=causal)
        with torch.no_grad():
            out_ref, w_ref = mha(x, x, x, average_attn_weights=False, **kwargs)
            with AttentionCapture(model) as cap:
                out, w = mha(x, x, x, average_attn_weights=False, **kwargs)
                (probs,) = cap.pop()
                # positional arguments and the default (averaged) weights
                out2, w2 = mha(x, x, x, padding)
                (probs2,) = cap.pop()
        torch.testing.assert_close(out, out_ref, rtol=0, atol=1e-6)
        torch.testing.assert_close(w, w_ref, rtol=0, atol=1e-6)
        torch.testing.assert_close(probs, w_ref, rtol=0, atol=1e-6)
        assert probs[..., -1].abs().max() == 0
        _, w2_ref = mha(x, x, x, padding)
        torch.testing.assert_close(w2, w2_ref, rtol=0, atol=1e-6)
        torch.testing.assert_close(head_average(probs2), w2_ref, rtol=0, atol=1e-6)
        assert no_hooks_left(model)
        with AttentionCapture(model, mode='qk'), pytest.raises(NotImplementedError):
            mha(x, x, x, key_padding_mask=padding)
