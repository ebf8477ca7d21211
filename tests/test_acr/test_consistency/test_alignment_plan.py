"""make_plan / iter_row_chunks: token orders, chunks and row sums."""

import pytest
import torch

from acr_plugin.acr.consistency.alignment_plan import (
    RowChunk,
    add_row_sums,
    iter_row_chunks,
    make_plan,
)
from acr_plugin.acr.views.token_alignment import (
    TokenAlignment,
    crop_alignment,
    flip_alignment,
    rescale_alignment,
)


def visited_rows(plan, terms):
    rows, cls_rows = [], []
    for chunk in iter_row_chunks(plan, terms):
        span = list(range(chunk.rows1.start, chunk.rows1.stop))
        assert len(span) <= plan.chunk_size
        rows += span
        cls_rows += span[: chunk.num_cls]
    return rows, cls_rows


@pytest.mark.parametrize('terms', [('cls', 'aff'), ('cls',), ('aff',)])
def test_flip_is_a_perm_plan_visiting_each_row_once(terms):
    plan = make_plan(flip_alignment(3, 4), num_prefix=2, chunk_size=5)
    assert plan.mode == 'perm' and plan.order1 is None
    assert plan.num_valid == 12 and plan.order2.shape == (14,)
    # aligned view-2 token P + i is the flip of view-1 token i
    assert plan.order2[2:].tolist() == [
        2 + r * 4 + (3 - c) for r in range(3) for c in range(4)
    ]
    rows, cls_rows = visited_rows(plan, terms)
    first = 0 if 'cls' in terms else 2
    last = 14 if 'aff' in terms else 2
    assert rows == list(range(first, last))
    assert cls_rows == ([0, 1] if 'cls' in terms else [])


def test_crop_puts_valid_view1_tokens_first():
    alignment = crop_alignment((3, 4), (2, 3), (1, 1))
    plan = make_plan(alignment, num_prefix=1, chunk_size=4)
    valid = alignment.valid.nonzero().squeeze(1)
    assert plan.mode == 'perm' and plan.num_valid == 6
    assert plan.order1[: 1 + 6].tolist() == [0] + (1 + valid).tolist()
    assert sorted(plan.order1.tolist()) == list(range(13))
    # the crop keeps view-2 order: the valid view-1 tokens map onto 0..5
    assert alignment.perm[valid].tolist() == list(range(6))
    assert plan.order2 is None


def test_bilinear_rescale_is_a_matrix_plan_with_covering_ranges():
    alignment = rescale_alignment((6, 6), (4, 4))
    plan = make_plan(alignment, num_prefix=1, chunk_size=6, dtype=torch.float64)
    assert plan.mode == 'matrix' and plan.matrix.shape == (36, 16)
    chunks = list(iter_row_chunks(plan, ('cls', 'aff')))
    assert chunks[0].num_cls == 1 and chunks[0].mix is None
    for chunk in chunks[1:]:
        start, stop = chunk.rows1.start - 1, chunk.rows1.stop - 1
        lo, hi = chunk.rows2.start - 1, chunk.rows2.stop - 1
        weights = plan.matrix[start:stop]
        # the view-2 range holds every weight of the chunk's rows
        assert weights[:, :lo].abs().sum() == 0 and weights[:, hi:].abs().sum() == 0
        torch.testing.assert_close(chunk.mix, weights[:, lo:hi])
    big = make_plan(rescale_alignment((12, 12), (8, 8)), 1)
    assert big.matrix_sparse is not None
    torch.testing.assert_close(big.matrix_sparse.to_dense(), big.matrix)


def test_repeating_perm_becomes_a_matrix_plan():
    plan = make_plan(rescale_alignment((3, 4), (2, 3), 'nearest'), num_prefix=1)
    assert plan.mode == 'matrix'
    assert torch.equal(plan.matrix.sum(1), torch.ones(12))


def test_no_valid_token_raises():
    empty = TokenAlignment(
        (2, 3), (2, 3), perm=torch.arange(6), valid=torch.zeros(6, dtype=torch.bool)
    )
    with pytest.raises(ValueError, match='no patch token'):
        make_plan(empty, 1)


def test_add_row_sums_splits_class_and_patch_rows():
    per_row = torch.arange(10.0).view(2, 5)
    sums = {'cls': torch.zeros(2), 'aff': torch.zeros(2)}
    add_row_sums(per_row, RowChunk(slice(0, 5), slice(0, 5), 2), sums)
    assert sums['cls'].tolist() == [1.0, 11.0]
    assert sums['aff'].tolist() == [9.0, 24.0]
    add_row_sums(per_row, RowChunk(slice(5, 10), slice(5, 10), 0), sums)
    assert sums['cls'].tolist() == [1.0, 11.0]
    assert sums['aff'].tolist() == [19.0, 59.0]
