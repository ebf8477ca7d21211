"""The chunked symmetric-KL consistency, under activation checkpointing.

The row-wise symmetric KL (``distance='kl'``) compares whole rows, so it has
no element-wise backward kernel; each chunk is the same differentiable
computation as the chunked function's forward, wrapped in non-reentrant
activation checkpointing (same memory bound, autograd's Jacobian).
"""

from typing import Callable, Tuple

from torch import Tensor

from .alignment_plan import (
    CONSISTENCY_TERMS,
    AlignmentPlan,
    RowChunk,
    add_row_sums,
    iter_row_chunks,
)
from .chunk_ops import (
    align_view2_rows,
    chunk_probs,
    maybe_checkpoint,
    mean_heads,
    reorder_tokens,
    view1_columns,
)
from .consistency_terms import symmetric_kl_rows


def checkpointed_kl_terms(
    q1: Tensor,
    k1: Tensor,
    q2: Tensor,
    k2: Tensor,
    plan: AlignmentPlan,
    terms: Tuple[str, ...],
    head_average: bool,
    eps: float,
) -> Tuple[Tensor, Tensor]:
    """Row-wise symmetric KL class-row and affinity terms, chunk by chunk.

    Args:
        q1, k1, q2, k2 (Tensor): The records of both views, in their own
            token order.
        plan (AlignmentPlan): Rows, columns and chunks (``make_plan``).
        terms (tuple[str]): Subset of ``('cls', 'aff')``.
        head_average (bool): Average heads before the distance.
        eps (float): KL floor.

    Returns:
        tuple[Tensor, Tensor]: ``(cls, aff)``, each ``(B,)`` (zeros for a term
        not in ``terms``).
    """
    q1o, k1o = reorder_tokens(q1, plan.order1), reorder_tokens(k1, plan.order1)
    q2o, k2o = reorder_tokens(q2, plan.order2), reorder_tokens(k2, plan.order2)
    sums = {t: q1.new_zeros(q1.shape[0]) for t in CONSISTENCY_TERMS}

    def chunk_kl(chunk: RowChunk) -> Callable[..., Tensor]:
        def run(q1: Tensor, k1: Tensor, q2: Tensor, k2: Tensor) -> Tensor:
            a1 = mean_heads(
                chunk_probs(q1, k1.transpose(-2, -1), chunk.rows1), head_average
            )
            a2 = mean_heads(
                chunk_probs(q2, k2.transpose(-2, -1), chunk.rows2), head_average
            )
            rows1 = view1_columns(a1, plan)
            rows2 = align_view2_rows(a2, chunk, plan)
            return symmetric_kl_rows(rows1, rows2, None, eps).sum(dim=1)

        return run

    for chunk in iter_row_chunks(plan, terms):
        per_row = maybe_checkpoint(chunk_kl(chunk), q1o, k1o, q2o, k2o)
        add_row_sums(per_row, chunk, sums)
    rows_per_head = dict(cls=plan.num_prefix, aff=plan.num_valid)
    h = 1 if head_average else q1.shape[1]
    return tuple(sums[t] / (h * rows_per_head[t]) for t in CONSISTENCY_TERMS)
