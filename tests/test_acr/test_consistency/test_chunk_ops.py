"""Per-chunk maths: the hand-written adjoints equal autograd."""

import pytest
import torch

from acr_plugin.acr.consistency.alignment_plan import iter_row_chunks, make_plan
from acr_plugin.acr.consistency.chunk_ops import (
    align_view2_rows,
    align_view2_rows_backward,
    chunk_probs,
    compute_dtype,
    distance_grad,
    reorder_tokens,
    restore_tokens,
    softmax_backward,
    view1_columns,
    view1_columns_backward,
)
from acr_plugin.acr.consistency.consistency_terms import elementwise_distance
from acr_plugin.acr.views.token_alignment import crop_alignment, rescale_alignment

gen = torch.Generator().manual_seed(0)


def randn(*shape):
    return torch.randn(*shape, generator=gen, dtype=torch.float64)


def test_chunk_probs_and_softmax_backward():
    q, k = randn(2, 3, 6, 4).requires_grad_(), randn(2, 3, 7, 4)
    probs = chunk_probs(q, k.transpose(-2, -1), slice(1, 4))
    torch.testing.assert_close(probs, (q[:, :, 1:4] @ k.transpose(-2, -1)).softmax(-1))
    grad = randn(2, 1, 3, 7)  # shared by the heads
    logits = q[:, :, 1:4] @ k.transpose(-2, -1)
    (expected,) = torch.autograd.grad(
        logits.softmax(-1), logits, grad.expand_as(logits)
    )
    torch.testing.assert_close(softmax_backward(probs.detach(), grad), expected)


@pytest.mark.parametrize(
    'alignment',
    [crop_alignment((3, 4), (2, 3), (1, 0)), rescale_alignment((3, 4), (4, 5))],
    ids=['perm', 'matrix'],
)
def test_alignment_adjoints(alignment):
    plan = make_plan(alignment, 1, chunk_size=4, dtype=torch.float64)
    t1, t2 = 1 + alignment.num_tokens1, 1 + alignment.num_tokens2
    for chunk in iter_row_chunks(plan, ('cls', 'aff')):
        r1, r2 = chunk.num_rows, chunk.rows2.stop - chunk.rows2.start
        a1, g1 = randn(2, 1, r1, t1), randn(2, 1, r1, plan.num_valid)
        lhs = (view1_columns(a1, plan) * g1).sum()
        rhs = (a1 * view1_columns_backward(g1, plan)).sum()
        torch.testing.assert_close(lhs, rhs)
        a2, g2 = randn(2, 1, r2, t2), randn(2, 1, r1, plan.num_valid)
        lhs = (align_view2_rows(a2, chunk, plan) * g2).sum()
        rhs = (a2 * align_view2_rows_backward(g2, chunk, plan)).sum()
        torch.testing.assert_close(lhs, rhs)


@pytest.mark.parametrize('distance', ['l1', 'l2', 'smooth_l1'])
def test_distance_grad(distance):
    x, y = randn(50).requires_grad_(), randn(50)
    (expected,) = torch.autograd.grad(
        elementwise_distance(x, y, distance, beta=0.5).sum(), x
    )
    torch.testing.assert_close(distance_grad(x - y, distance, 0.5), expected)
    with pytest.raises(ValueError, match='no derivative'):
        distance_grad(x - y, 'kl', 0.5)


def test_reorder_restore_and_dtype():
    x, order = randn(2, 3, 5, 4), torch.tensor([0, 3, 1, 4, 2])
    torch.testing.assert_close(reorder_tokens(x, order), x[:, :, order])
    assert torch.equal(restore_tokens(reorder_tokens(x, order), order), x)
    assert reorder_tokens(x, None) is x and restore_tokens(x, None) is x
    assert compute_dtype(x.bfloat16()) == torch.float32
    assert compute_dtype(x) == torch.float64
