"""The autograd function of the chunked consistency (element-wise distances).

:class:`ChunkedConsistencyFunction` computes the class-row and affinity terms
from ``(q, k)`` records one chunk of query rows at a time, in forward and
again in backward, whose kernel is the distance derivative pushed through the
head mean, the alignment and the softmax Jacobian ``dS = A (dA - sum_j dA
A)`` (:func:`_run_chunks`). :class:`ChunkOptions` holds its non-tensor
arguments.
"""

from dataclasses import dataclass
from typing import Optional, Tuple

import torch
from torch import Tensor

from acr_plugin.acr.consistency.consistency_terms import elementwise_distance

from .alignment_plan import (
    CONSISTENCY_TERMS,
    AlignmentPlan,
    RowChunk,
    add_row_sums,
    iter_row_chunks,
)
from .chunk_ops import (
    align_view2_rows,
    align_view2_rows_backward,
    chunk_probs,
    compute_dtype,
    distance_grad,
    mean_heads,
    prepare_records,
    restore_tokens,
    softmax_backward,
    view1_columns,
    view1_columns_backward,
)

#: how :class:`ChunkedConsistencyFunction` obtains its gradients
GRAD_MODES = ('recompute', 'store')


@dataclass
class ChunkOptions:
    """What :class:`ChunkedConsistencyFunction` computes.

    Args:
        plan (AlignmentPlan): Rows, columns and chunks (``make_plan``).
        terms (tuple[str]): Subset of ``('cls', 'aff')``.
        head_average (bool): Average heads before the distance.
        distance (str): ``'l1'``, ``'l2'`` or ``'smooth_l1'``.
        beta (float): Smooth-L1 threshold.
        grad_mode (str): One of :data:`GRAD_MODES`. Defaults to
            ``'recompute'``.
        grad_weights (tuple[float, float]): Expected ratio of the output
            gradients of ``(cls, aff)`` for ``'store'``. Defaults to
            ``(1.0, 1.0)``.
    """

    plan: AlignmentPlan
    terms: Tuple[str, ...]
    head_average: bool
    distance: str
    beta: float
    grad_mode: str = 'recompute'
    grad_weights: Tuple[float, float] = (1.0, 1.0)


def _row_scale(scale: dict, chunk: RowChunk) -> Tensor:
    """Per-sample, per-row output gradient ``(B, 1, r, 1)`` of a chunk."""
    k, r = chunk.num_cls, chunk.num_rows
    batch = scale['cls'].shape[0]
    parts = []
    if k:
        parts.append(scale['cls'][:, None].expand(batch, k))
    if k < r:
        parts.append(scale['aff'][:, None].expand(batch, r - k))
    return torch.cat(parts, 1).view(batch, 1, r, 1)


def _normalizers(plan: AlignmentPlan, heads: int, head_average: bool) -> dict:
    """Number of compared entries of each term (the divisor of its sum)."""
    h = 1 if head_average else heads
    nv = plan.num_valid
    return dict(cls=h * plan.num_prefix * nv, aff=h * nv * nv)


def _no_autocast(x: Tensor):
    return torch.autocast(device_type=x.device.type, enabled=False)


def _accumulate(
    dq: Tensor, dk: Tensor, ds: Tensor, q: Tensor, k: Tensor, rows: slice
) -> None:
    """``dq[rows] += dS k`` and ``dk += dS^T q[rows]``."""
    dq[:, :, rows] += ds @ k
    batch, heads, num_rows, num_keys = ds.shape
    dk.view(batch * heads, num_keys, -1).baddbmm_(
        ds.reshape(batch * heads, num_rows, num_keys).transpose(1, 2),
        q[:, :, rows].reshape(batch * heads, num_rows, -1),
    )


def _run_chunks(
    records: Tuple[Tensor, Tensor, Tensor, Tensor],
    options: ChunkOptions,
    scale: Optional[dict] = None,
    need: Tuple[bool, bool] = (False, False),
    values: bool = True,
) -> Tuple[Optional[dict], Optional[Tuple[Tensor, ...]]]:
    """One pass over the chunks: per-sample sums and/or input gradients.

    Args:
        records (tuple[Tensor]): ``(q1, k1, q2, k2)``, in their own token
            order.
        options (ChunkOptions): What to compute.
        scale (dict, optional): ``{'cls': (B,), 'aff': (B,)}`` gradient of
            the loss w.r.t. each distance *sum* (output gradient / normaliser,
            divided by ``H`` for head averaging). None: no gradients.
        need (tuple[bool, bool]): Gradients wanted for view 1 / view 2.
        values (bool): Compute the per-sample distance sums.

    Returns:
        tuple: ``({'cls': (B,), 'aff': (B,)} or None, (dq1, dk1, dq2, dk2) or
        None)``, gradients in the compute dtype and the original token order.
    """
    q1, k1, q2, k2 = records
    plan, head_average = options.plan, options.head_average
    distance, beta = options.distance, options.beta
    dtype = compute_dtype(q1)
    sums = grads = None
    if values:
        sums = {t: q1.new_zeros(q1.shape[0], dtype=dtype) for t in CONSISTENCY_TERMS}
    with _no_autocast(q1):
        q1o, k1o, kt1 = prepare_records(q1, k1, plan.order1, dtype)
        q2o, k2o, kt2 = prepare_records(q2, k2, plan.order2, dtype)
        if scale is not None:
            dq1, dk1 = torch.zeros_like(q1o), torch.zeros_like(k1o)
            dq2, dk2 = torch.zeros_like(q2o), torch.zeros_like(k2o)
        for chunk in iter_row_chunks(plan, options.terms):
            p1 = chunk_probs(q1o, kt1, chunk.rows1)
            p2 = chunk_probs(q2o, kt2, chunk.rows2)
            a1 = view1_columns(mean_heads(p1, head_average), plan)
            a2 = align_view2_rows(mean_heads(p2, head_average), chunk, plan)
            if values:
                dist = elementwise_distance(a1, a2, distance, beta)
                add_row_sums(dist.sum(dim=(1, 3)), chunk, sums)
                del dist
            if scale is None:
                continue
            g = distance_grad(a1 - a2, distance, beta)
            g.mul_(_row_scale(scale, chunk))
            del a1, a2
            if need[0]:
                ds1 = softmax_backward(p1, view1_columns_backward(g, plan))
                _accumulate(dq1, dk1, ds1, q1o, k1o, chunk.rows1)
                del ds1
            del p1
            if need[1]:
                ds2 = softmax_backward(p2, align_view2_rows_backward(-g, chunk, plan))
                _accumulate(dq2, dk2, ds2, q2o, k2o, chunk.rows2)
                del ds2
            del p2
        del q1o, k1o, kt1, q2o, k2o, kt2
        if scale is not None:
            grads = (
                restore_tokens(dq1, plan.order1),
                restore_tokens(dk1, plan.order1),
                restore_tokens(dq2, plan.order2),
                restore_tokens(dk2, plan.order2),
            )
    return sums, grads


def _sum_scale(
    grads: Tuple[Tensor, Tensor], plan: AlignmentPlan, heads: int, head_average: bool
) -> dict:
    """Output gradients ``(cls, aff)`` -> gradients w.r.t. the distance sums."""
    norm = _normalizers(plan, heads, head_average)
    # the head mean spreads each entry's gradient evenly over the heads
    head_scale = 1.0 / heads if head_average else 1.0
    return {
        t: grad * (head_scale / norm[t]) for t, grad in zip(CONSISTENCY_TERMS, grads)
    }


def _proportionality(
    out_grads: dict, terms: Tuple[str, ...], weights: Tuple[float, float]
) -> Optional[Tensor]:
    """Per-sample ``f`` with ``out_grads[t] == f * weights[t]``, else None."""
    weight = dict(zip(CONSISTENCY_TERMS, weights))
    if any(weight[t] == 0 for t in terms):
        return None
    factor = sum(out_grads[t] * weight[t] for t in terms) / sum(
        weight[t] ** 2 for t in terms
    )
    for t in terms:
        if not torch.allclose(out_grads[t], factor * weight[t], rtol=1e-6, atol=0.0):
            return None
    return factor


def _needed_views(ctx) -> Tuple[bool, bool]:
    """Whether view 1 / view 2 (``q`` or ``k``) needs a gradient."""
    return (
        ctx.needs_input_grad[0] or ctx.needs_input_grad[1],
        ctx.needs_input_grad[2] or ctx.needs_input_grad[3],
    )


class ChunkedConsistencyFunction(torch.autograd.Function):
    """Class-row and affinity terms from ``(q, k)``, chunk by chunk.

    ``apply(q1, k1, q2, k2, options)`` (a :class:`ChunkOptions`) returns
    ``(cls, aff)``, each ``(B,)`` (zeros for a term not in ``options.terms``);
    element-wise distances only (``'l1'``, ``'l2'``, ``'smooth_l1'``).

    ``options.grad_mode``:

    * ``'recompute'``: only the inputs ``q1, k1, q2, k2`` are saved;
      backward runs the chunks again (probabilities, distance derivative,
      softmax Jacobian).
    * ``'store'``: when an input needs a gradient, forward also computes the
      gradients for output gradients proportional to ``grad_weights`` (the
      loss weights of the two terms) and keeps them (``O(B H T d)`` per
      view, like ``q`` and ``k``); backward only rescales them per sample.
      It saves one pass (about a third of the work); if the output
      gradients turn out not to be proportional to ``grad_weights``,
      backward recomputes instead (always correct).
    """

    @staticmethod
    def forward(
        ctx, q1: Tensor, k1: Tensor, q2: Tensor, k2: Tensor, options: ChunkOptions
    ) -> Tuple[Tensor, Tensor]:
        ctx.save_for_backward(q1, k1, q2, k2)
        ctx.options = options
        ctx.stored = None
        need = _needed_views(ctx)
        plan, heads = options.plan, q1.shape[1]
        scale = None
        if options.grad_mode == 'store' and any(need):
            weights = q1.new_tensor(options.grad_weights, dtype=compute_dtype(q1))
            scale = _sum_scale(
                weights[:, None].expand(2, q1.shape[0]),
                plan,
                heads,
                options.head_average,
            )
        sums, grads = _run_chunks((q1, k1, q2, k2), options, scale, need)
        ctx.stored = grads
        norm = _normalizers(plan, heads, options.head_average)
        return tuple(
            (sums[t] / norm[t] if t in options.terms else sums[t]).to(q1.dtype)
            for t in CONSISTENCY_TERMS
        )

    @staticmethod
    def backward(ctx, grad_cls: Tensor, grad_aff: Tensor):
        q1, k1, q2, k2 = ctx.saved_tensors
        options = ctx.options
        dtype = compute_dtype(q1)
        out_grads = {'cls': grad_cls.to(dtype), 'aff': grad_aff.to(dtype)}
        grads = None
        if ctx.stored is not None:
            factor = _proportionality(out_grads, options.terms, options.grad_weights)
            if factor is not None:
                factor = factor.view(-1, 1, 1, 1)
                grads = tuple(g * factor for g in ctx.stored)
            ctx.stored = None
        if grads is None:
            scale = _sum_scale(
                (out_grads['cls'], out_grads['aff']),
                options.plan,
                q1.shape[1],
                options.head_average,
            )
            _, grads = _run_chunks(
                (q1, k1, q2, k2), options, scale, _needed_views(ctx), values=False
            )
        out = [
            grad.to(ref.dtype) if needed else None
            for grad, ref, needed in zip(grads, (q1, k1, q2, k2), ctx.needs_input_grad)
        ]
        return (*out, None)
