"""Attention entropies from (q, k) records equal the probability versions."""

import torch

from acr_plugin.acr.attention.attention_ops import attention_entropy, probs_from_qk
from acr_plugin.acr.consistency.consistency_terms import patch_row_entropy
from acr_plugin.acr.consistency.qk_entropy import (
    qk_attention_entropy,
    qk_patch_row_entropy,
)
from acr_plugin.acr.views.token_alignment import flip_alignment
from tests.test_acr.test_consistency.chunked_reference import (
    assert_rel_close,
    qk_records,
)


def test_entropy_helpers_match_probability_versions():
    alignment = flip_alignment(3, 4)
    q, k = qk_records(alignment, 2, seed=2)[:2]
    probs = probs_from_qk(q, k)
    got = qk_patch_row_entropy(q, k, 2, chunk_size=5)
    ref = patch_row_entropy(probs, 2)
    assert_rel_close(got, ref)
    for grad, expected in zip(
        torch.autograd.grad(got.sum(), (q, k)), torch.autograd.grad(ref.sum(), (q, k))
    ):
        assert_rel_close(grad, expected)
    with torch.no_grad():
        exact = attention_entropy(probs)
        assert_rel_close(qk_attention_entropy(q, k, chunk_size=4), exact)
        assert_rel_close(qk_attention_entropy(q, k, max_rows=100), exact)
        estimate = qk_attention_entropy(q, k, max_rows=5)
    assert estimate.shape == (2,) and (estimate - exact).abs().max() < 0.1
