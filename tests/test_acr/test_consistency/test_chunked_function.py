"""The autograd function of the chunked consistency: backward, stored
gradients, saved tensors and precision."""

import pytest
import torch

from acr_plugin.acr.consistency.chunked_consistency import chunked_consistency_terms
from acr_plugin.acr.views.token_alignment import (
    compose_alignments,
    crop_alignment,
    flip_alignment,
    rescale_alignment,
)
from tests.test_acr.test_consistency.chunked_reference import (
    ALIGNMENTS,
    assert_rel_close,
    compare,
    naive_terms,
    qk_records,
)


@pytest.mark.parametrize(
    'kind', ['flip_non_square', 'crop_then_flip', 'rescale_then_crop']
)
@pytest.mark.parametrize('head_average', [True, False])
def test_stored_gradients_equal_naive_route(kind, head_average):
    alignment = ALIGNMENTS[kind]()
    inputs = qk_records(alignment, 2, seed=4)
    compare(inputs, alignment, 2, 5, grad_mode='store', head_average=head_average)


def test_stored_gradients_are_used_only_when_valid(monkeypatch):
    from acr_plugin.acr.consistency import chunked_function as module

    passes = []
    run_chunks = module._run_chunks

    def counting(*args, **kwargs):
        passes.append(kwargs.get('values', True))
        return run_chunks(*args, **kwargs)

    monkeypatch.setattr(module, '_run_chunks', counting)
    alignment = flip_alignment(3, 4)
    inputs = qk_records(alignment, 1, seed=6)
    ref = naive_terms(*inputs, alignment, 1)
    ref_grads = torch.autograd.grad((2 * ref[0] + 6 * ref[1]).sum(), inputs)
    for weights, expected_passes in (((1.0, 3.0), 1), ((1.0, 1.0), 2)):
        passes.clear()
        cls, aff = chunked_consistency_terms(
            *inputs, alignment, 1, grad_mode='store', grad_weights=weights
        )
        grads = torch.autograd.grad((2 * cls + 6 * aff).sum(), inputs)
        assert len(passes) == expected_passes
        for grad, expected in zip(grads, ref_grads):
            assert_rel_close(grad, expected)
    # no gradient wanted: no gradient work in forward
    passes.clear()
    with torch.no_grad():
        chunked_consistency_terms(*inputs, alignment, 1, grad_mode='store')
    assert passes == [True]


GRADCHECK_ALIGNMENTS = {
    'flip': lambda: flip_alignment(2, 3),
    'rescale_then_crop': lambda: compose_alignments(
        rescale_alignment((2, 3), (3, 3)), crop_alignment((3, 3), (2, 2), (1, 0))
    ),
}


@pytest.mark.parametrize(
    'kind, distance, p', [('flip', 'l1', 2), ('rescale_then_crop', 'l2', 1)]
)
def test_gradcheck(kind, distance, p):
    alignment = GRADCHECK_ALIGNMENTS[kind]()
    inputs = qk_records(alignment, p, batch=1, heads=2, dim=2, seed=11)

    def fn(q1, k1, q2, k2):
        cls, aff = chunked_consistency_terms(
            q1, k1, q2, k2, alignment, p, distance=distance, chunk_size=3
        )
        return cls + 2 * aff

    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6)


def test_no_attention_sized_tensor_is_saved_for_backward():
    alignment = flip_alignment(6, 6)
    q1, k1, q2, k2 = qk_records(alignment, 1, batch=2, heads=2, dim=4)
    record_numel = q1.numel()
    saved = []

    def pack(t):
        saved.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        cls, aff = chunked_consistency_terms(q1, k1, q2, k2, alignment, 1, chunk_size=8)
    assert saved and max(saved) <= record_numel
    # the naive route keeps (B, H, N, N) probabilities
    saved.clear()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        naive_terms(q1, k1, q2, k2, alignment, 1)
    assert max(saved) >= 2 * 2 * 37 * 37


def test_low_precision_records():
    alignment = flip_alignment(3, 3)
    q1, k1, q2, k2 = qk_records(alignment, 1, dtype=torch.bfloat16)
    cls, aff = chunked_consistency_terms(q1, k1, q2, k2, alignment, 1)
    assert cls.dtype == torch.bfloat16
    (cls + aff).sum().backward()
    assert q1.grad.dtype == torch.bfloat16 and torch.isfinite(q1.grad.float()).all()
    ref = naive_terms(*(t.detach().double() for t in (q1, k1, q2, k2)), alignment, 1)
    torch.testing.assert_close(aff.double(), ref[1], rtol=2e-2, atol=1e-4)
