"""The checkpointed symmetric-KL route equals the naive KL terms."""

import pytest
import torch

from acr_plugin.acr.consistency.alignment_plan import make_plan
from acr_plugin.acr.consistency.checkpointed_kl import checkpointed_kl_terms
from tests.test_acr.test_consistency.chunked_reference import (
    ALIGNMENTS,
    assert_rel_close,
    naive_terms,
    qk_records,
)


@pytest.mark.parametrize('kind', ['flip_non_square', 'crop', 'rescale_then_crop'])
@pytest.mark.parametrize('head_average', [True, False])
def test_equals_naive_kl(kind, head_average):
    alignment = ALIGNMENTS[kind]()
    inputs = qk_records(alignment, 2, seed=9)
    plan = make_plan(alignment, 2, chunk_size=4, dtype=torch.float64)
    cls, aff = checkpointed_kl_terms(
        *inputs, plan, ('cls', 'aff'), head_average, eps=1e-8
    )
    ref = naive_terms(*inputs, alignment, 2, head_average, distance='kl')
    assert_rel_close(cls, ref[0])
    assert_rel_close(aff, ref[1])
    grads = torch.autograd.grad((cls + 2 * aff).sum(), inputs)
    refs = torch.autograd.grad((ref[0] + 2 * ref[1]).sum(), inputs)
    for grad, expected in zip(grads, refs):
        assert_rel_close(grad, expected)


def test_a_term_left_out_is_zero_and_nothing_attention_sized_is_saved():
    alignment = ALIGNMENTS['flip_square']()
    inputs = qk_records(alignment, 1, seed=3)
    plan = make_plan(alignment, 1, chunk_size=3, dtype=torch.float64)
    saved = []

    def pack(t):
        saved.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        cls, aff = checkpointed_kl_terms(*inputs, plan, ('aff',), True, eps=1e-8)
    assert torch.equal(cls, torch.zeros_like(cls))
    assert_rel_close(aff, naive_terms(*inputs, alignment, 1, distance='kl')[1])
    assert max(saved) <= inputs[0].numel()
