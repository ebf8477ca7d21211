"""Shared references of the chunked-consistency tests (not a test module)."""

import torch

from acr_plugin.acr.attention.attention_ops import probs_from_qk
from acr_plugin.acr.consistency.chunked_consistency import chunked_consistency_terms
from acr_plugin.acr.consistency.consistency_terms import affinity_term, class_row_term
from acr_plugin.acr.views.token_alignment import (
    align_attention,
    compose_alignments,
    crop_alignment,
    flip_alignment,
    rescale_alignment,
)

ALIGNMENTS = {
    'flip_square': lambda: flip_alignment(3, 3),
    'flip_non_square': lambda: flip_alignment(3, 5),
    'crop': lambda: crop_alignment((3, 4), (2, 3), (1, 0)),
    'crop_then_flip': lambda: compose_alignments(
        crop_alignment((4, 4), (3, 3), (0, 1)), flip_alignment(3, 3)
    ),
    'rescale_up_bilinear': lambda: rescale_alignment((3, 4), (4, 6)),
    'rescale_down_bilinear': lambda: rescale_alignment((4, 3), (3, 2)),
    'rescale_nearest_repeats': lambda: rescale_alignment((3, 4), (2, 3), 'nearest'),
    'rescale_nearest_subset': lambda: rescale_alignment((2, 3), (4, 5), 'nearest'),
    'rescale_then_crop': lambda: compose_alignments(
        rescale_alignment((3, 4), (4, 5)), crop_alignment((4, 5), (3, 4), (1, 1))
    ),
}


def qk_records(alignment, p, batch=2, heads=3, dim=4, seed=0, dtype=torch.float64):
    """Random (q, k) of both views with a spread of attention sharpness."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for n in (alignment.num_tokens1, alignment.num_tokens2):
        for scale in (1.5, 1.0):
            x = scale * torch.randn(batch, heads, p + n, dim, generator=gen)
            out.append(x.to(dtype).requires_grad_())
    return out  # q1, k1, q2, k2


def naive_terms(q1, k1, q2, k2, alignment, p, head_average=True, **kwargs):
    """The official formula on materialised probabilities."""
    a1, a2 = probs_from_qk(q1, k1), probs_from_qk(q2, k2)
    if head_average:
        a1, a2 = a1.mean(1), a2.mean(1)
    a2 = align_attention(a2, alignment, p)
    valid = alignment.valid
    return (
        class_row_term(a1, a2, p, valid, **kwargs),
        affinity_term(a1, a2, p, valid, **kwargs),
    )


def assert_rel_close(actual, expected, rel=1e-5):
    scale = expected.abs().max().clamp_min(1e-30)
    err = (actual - expected).abs().max() / scale
    assert err <= rel, f'relative error {err:.3g} > {rel}'


def compare(inputs, alignment, p, chunk_size, grad_mode='recompute', **kwargs):
    weights = torch.tensor([1.0, -2.0], dtype=inputs[0].dtype)
    cls, aff = chunked_consistency_terms(
        *inputs,
        alignment,
        p,
        chunk_size=chunk_size,
        grad_mode=grad_mode,
        grad_weights=(1.0, 3.0),
        **kwargs,
    )
    ref_cls, ref_aff = naive_terms(*inputs, alignment, p, **kwargs)
    assert_rel_close(cls, ref_cls)
    assert_rel_close(aff, ref_aff)
    # distinct per-sample and per-term output gradients
    grads = torch.autograd.grad((weights * cls + 3 * weights * aff).sum(), inputs)
    refs = torch.autograd.grad(
        (weights * ref_cls + 3 * weights * ref_aff).sum(), inputs
    )
    for grad, ref in zip(grads, refs):
        assert_rel_close(grad, ref)
