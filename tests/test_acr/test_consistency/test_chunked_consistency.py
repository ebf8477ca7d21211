"""The chunked consistency equals the naive route (loss and gradients)."""

import pytest
import torch

from acr_plugin.acr.consistency.chunked_consistency import chunked_consistency_terms
from acr_plugin.acr.views.token_alignment import crop_alignment, flip_alignment
from tests.test_acr.test_consistency.chunked_reference import (
    ALIGNMENTS,
    assert_rel_close,
    compare,
    naive_terms,
    qk_records,
)


@pytest.mark.parametrize('kind', sorted(ALIGNMENTS))
@pytest.mark.parametrize('p', [1, 3])
def test_equals_naive_route_for_every_alignment(kind, p):
    alignment = ALIGNMENTS[kind]()
    inputs = qk_records(alignment, p, seed=p)
    # 5 divides neither P + N nor the valid count of any grid above
    compare(inputs, alignment, p, chunk_size=5)


@pytest.mark.parametrize('distance', ['l1', 'l2', 'smooth_l1', 'kl'])
@pytest.mark.parametrize('head_average', [True, False])
def test_equals_naive_route_for_every_distance(distance, head_average):
    for kind in ('crop', 'rescale_up_bilinear'):
        alignment = ALIGNMENTS[kind]()
        inputs = qk_records(alignment, 2, seed=7)
        compare(
            inputs,
            alignment,
            2,
            chunk_size=4,
            head_average=head_average,
            distance=distance,
            beta=0.02,
        )


@pytest.mark.parametrize('chunk_size', [1, 7, 1000])
def test_chunk_size_does_not_change_the_result(chunk_size):
    alignment = flip_alignment(4, 5)
    inputs = qk_records(alignment, 1, seed=3)
    compare(inputs, alignment, 1, chunk_size=chunk_size)


def test_float32_matches_naive_route():
    alignment = flip_alignment(4, 4)
    inputs = qk_records(alignment, 1, batch=3, heads=4, dim=8, dtype=torch.float32)
    cls, aff = chunked_consistency_terms(*inputs, alignment, 1, chunk_size=6)
    ref_cls, ref_aff = naive_terms(*inputs, alignment, 1)
    assert_rel_close(cls, ref_cls)
    assert_rel_close(aff, ref_aff)
    assert cls.dtype == torch.float32


def test_single_term_and_stop_gradient():
    alignment = crop_alignment((3, 3), (2, 3), (1, 0))
    q1, k1, q2, k2 = qk_records(alignment, 2, seed=5)
    cls, aff = chunked_consistency_terms(
        q1, k1, q2.detach(), k2.detach(), alignment, 2, terms=('aff',)
    )
    assert cls is None
    ref = naive_terms(q1, k1, q2.detach(), k2.detach(), alignment, 2)[1]
    assert_rel_close(aff, ref)
    grads = torch.autograd.grad(aff.sum(), (q1, k1))
    refs = torch.autograd.grad(ref.sum(), (q1, k1))
    for grad, expected in zip(grads, refs):
        assert_rel_close(grad, expected)
