"""ACR consistency terms at fused-attention memory cost.

The naive route (``AllPairsConsistencyLoss`` on post-softmax records) needs
every regularised layer off the fused attention kernel and keeps ``(B, H, N,
N)`` probabilities per layer and view until backward. Here the model keeps
its fused kernel; the capture records the scaled queries and keys ``(q, k)``
(``AttentionCapture(mode='qk')``) and the terms are recomputed from them,
``chunk_size`` query rows of ``softmax(q k^T)`` at a time, in forward and
again in backward (:class:`ChunkedConsistencyFunction`). No ``(B, H, N, N)``
tensor ever exists. Memory: the function keeps only its inputs (for timm,
``k`` is a view of the ``qkv`` output that the fused kernel keeps anyway;
``q * scale`` is one ``(B, H, N, d)`` tensor per layer and view), works in
``O(B H chunk N)`` per chunk, and returns ``(B, H, N, d)`` gradients for
``q`` and ``k`` (which wait for the backward pass to reach their layer).

Terms, per sample, identical to ``acr_terms.class_row_term`` and
``acr_terms.affinity_term`` applied to the probabilities with view 2 aligned
by ``align_attention`` (``P`` prefix tokens, view-1 patch ``i`` valid):

* class rows: ``mean_{[h,] p < P, k valid} d(A1[p, P + k], A2al[p, P + k])``
* affinity: ``mean_{[h,] i, k valid} d(A1[P + i, P + k], A2al[P + i, P + k])``

Alignment of view 2 (``TokenAlignment``, see :class:`AlignmentPlan`):

* injective ``perm`` (flip, crop, nearest up-scaling): aligned row
  ``P + i`` is view-2 row ``P + perm[i]`` and aligned column ``P + k`` is
  view-2 column ``P + perm[k]``. Reordering the tokens of ``q`` and ``k``
  once makes every chunk a slice of both views: fully efficient (softmax
  rows do not care about the order of the keys, and the unmatched keys of
  a crop stay in the normaliser).
* ``matrix`` R (bilinear rescale; also a perm that repeats view-2 tokens):
  aligned patch block ``R A2 R^T``. Softmax is not linear in the queries,
  so view-2 queries cannot be resampled; instead the range of view-2 rows
  that a chunk of view-1 rows draws from (a few rows beyond the chunk for
  bilinear weights) is recomputed and mixed, ``R[chunk, lo:hi] @
  A2[lo:hi]``, and the columns are mixed by ``@ R^T`` (a sparse matrix
  product when R is sparse). Memory stays ``O(chunk N)`` for a local R (a
  dense R makes the range every row: correct, ``O(N^2)``); the mixing makes
  this path somewhat slower than perms.

Invalid view-1 tokens (crop) are skipped as rows and as columns, which is
what the naive masked means compute.

Distances: ``'l1'``, ``'l2'`` and ``'smooth_l1'`` go through the custom
autograd function, whose backward is the distance derivative (``sign`` of
the difference for L1) pushed through the head mean, the alignment and the
softmax Jacobian ``dS = A (dA - sum_j dA A)``, one chunk at a time
(``grad_mode='store'`` computes it during the forward pass instead and
keeps the gradients). ``'kl'`` (whole-row symmetric KL) and the entropy
penalty use a generic path: the same chunked differentiable computation
wrapped in non-reentrant activation checkpointing per chunk (same memory
bound, autograd's Jacobian, a little slower).
"""

import math
from dataclasses import dataclass
from typing import Callable, Iterator, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from acr_plugin.acr.consistency_terms import (
    DISTANCES,
    ELEMENTWISE_DISTANCES,
    elementwise_distance,
    symmetric_kl_rows,
)
from acr_plugin.acr.view_alignment import TokenAlignment

#: terms computed by :func:`chunked_consistency_terms`
CONSISTENCY_TERMS = ('cls', 'aff')
#: default number of query rows recomputed at a time
DEFAULT_CHUNK_SIZE = 64
#: how :class:`ChunkedConsistencyFunction` obtains its gradients
GRAD_MODES = ('recompute', 'store')

_LOW_PRECISION = (torch.float16, torch.bfloat16)
#: resampling matrices sparser than this are applied as sparse tensors
_SPARSE_DENSITY = 0.1


# ------------------------------------------------------------------ plan
@dataclass
class AlignmentPlan:
    """How the chunk loop visits rows and columns (see :func:`make_plan`).

    Tokens of each view are reordered once (an ``O(T d)`` gather of ``q`` and
    ``k``) so that every chunk is a slice: view 1 puts its ``Nv`` valid patch
    tokens right after the prefix; for an injective perm, view 2 puts the
    counterpart of each valid view-1 patch at the same place, so aligned
    rows *and* columns are the slice ``[P, P + Nv)`` of both views.
    Softmax rows are invariant to a reordering of the keys (the extra,
    unmatched view-2 keys of a crop stay in the normaliser). Otherwise (a
    resampling matrix, or a perm that repeats view-2 tokens) view 2 keeps
    its order and is mixed by ``matrix``.

    Args:
        num_prefix (int): Prefix tokens ``P``.
        num_tokens1 (int): View-1 patch tokens ``N1``.
        num_tokens2 (int): View-2 patch tokens ``N2``.
        num_valid (int): Compared view-1 patch tokens ``Nv``.
        chunk_size (int): Rows per chunk.
        order1 (Tensor, optional): Long ``(P + N1,)`` view-1 token order;
            None keeps the order (every patch valid).
        order2 (Tensor, optional): Long ``(P + N2,)`` view-2 token order
            (perm mode); None keeps the order.
        matrix (Tensor, optional): ``(Nv, N2)`` resampling rows of the valid
            view-1 patches (matrix mode).
        matrix_sparse (Tensor, optional): Sparse copy of ``matrix``.
        ranges2 (list, optional): Matrix mode: per patch-row chunk, the
            ``[lo, hi)`` range of view-2 patches its rows draw from.
    """

    num_prefix: int
    num_tokens1: int
    num_tokens2: int
    num_valid: int
    chunk_size: int
    order1: Optional[Tensor] = None
    order2: Optional[Tensor] = None
    matrix: Optional[Tensor] = None
    matrix_sparse: Optional[Tensor] = None
    ranges2: Optional[List[Tuple[int, int]]] = None

    @property
    def mode(self) -> str:
        """``'perm'`` (pure slicing) or ``'matrix'`` (mixing by R)."""
        return 'perm' if self.matrix is None else 'matrix'


def _order_with_first(first: Tensor, num_prefix: int, num_tokens: int) -> Tensor:
    """``[prefix, P + first, P + (the other patches, ascending)]``."""
    rest = torch.ones(num_tokens, dtype=torch.bool)
    rest[first] = False
    return torch.cat(
        [
            torch.arange(num_prefix),
            num_prefix + first,
            num_prefix + rest.nonzero().squeeze(1),
        ]
    )


def make_plan(
    alignment: TokenAlignment,
    num_prefix: int,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    device: Optional[torch.device] = None,
    dtype: torch.dtype = torch.float32,
) -> AlignmentPlan:
    """Resolve an alignment into the orders and chunks of the computation.

    Args:
        alignment (TokenAlignment): View-2 -> view-1 token alignment.
        num_prefix (int): Prefix tokens ``P``.
        chunk_size (int): Rows per chunk. Defaults to 64.
        device (torch.device, optional): Device of the records.
        dtype (torch.dtype): Dtype of a resampling matrix. Defaults to
            float32.

    Returns:
        AlignmentPlan: The plan (index tensors on ``device``).

    Raises:
        ValueError: If no view-1 patch token is valid.
    """
    p, n1, n2 = int(num_prefix), alignment.num_tokens1, alignment.num_tokens2
    valid = alignment.valid_mask(torch.device('cpu'))
    if not bool(valid.any()):
        raise ValueError('valid mask selects no patch token: the views do not overlap')
    valid_idx = valid.nonzero().squeeze(1)
    num_valid = valid_idx.numel()
    order1 = None if num_valid == n1 else _order_with_first(valid_idx, p, n1)
    plan = AlignmentPlan(p, n1, n2, num_valid, int(chunk_size))
    if order1 is not None:
        plan.order1 = order1.to(device)
    if alignment.perm is not None:
        perm = alignment.perm.cpu()[valid_idx]
        if perm.unique().numel() == num_valid:
            if not torch.equal(perm, torch.arange(n2)):
                plan.order2 = _order_with_first(perm, p, n2).to(device)
            return plan
        matrix = torch.zeros(num_valid, n2, dtype=torch.float64)
        matrix[torch.arange(num_valid), perm] = 1.0
    else:
        matrix = alignment.matrix.detach().cpu()[valid_idx]
    nonzero = matrix.ne(0)
    ranges = []
    for start in range(0, num_valid, plan.chunk_size):
        cols = nonzero[start : start + plan.chunk_size].any(0).nonzero().squeeze(1)
        if cols.numel() == 0:  # all-zero rows: any one view-2 row does
            ranges.append((0, 1))
        else:
            ranges.append((int(cols.min()), int(cols.max()) + 1))
    plan.ranges2 = ranges
    plan.matrix = matrix.to(device=device, dtype=dtype)
    device_type = plan.matrix.device.type
    if device_type in ('cpu', 'cuda') and nonzero.float().mean() < _SPARSE_DENSITY:
        plan.matrix_sparse = plan.matrix.to_sparse().coalesce()
    return plan


@dataclass
class RowChunk:
    """One chunk of compared rows (in the plan's token orders).

    The first ``num_cls`` rows are prefix rows (class-row term), the others
    patch rows (affinity term); a chunk may hold both in perm mode.

    Args:
        rows1 (slice): View-1 rows.
        rows2 (slice): View-2 rows whose probabilities are needed.
        num_cls (int): Leading rows that belong to the class-row term.
        mix (Tensor, optional): Matrix mode, patch rows: ``(r1, r2)``
            row-mixing weights; None: view-2 row ``j`` of ``rows2`` is
            aligned row ``j``.
    """

    rows1: slice
    rows2: slice
    num_cls: int
    mix: Optional[Tensor] = None

    @property
    def num_rows(self) -> int:
        """Compared rows in the chunk."""
        return self.rows1.stop - self.rows1.start


def iter_row_chunks(plan: AlignmentPlan, terms: Tuple[str, ...]) -> Iterator[RowChunk]:
    """Chunks of the prefix rows (class-row term) and valid patch rows.

    Perm mode walks the rows ``[0, P + Nv)`` (or the part that ``terms``
    needs) in slices of ``chunk_size``; matrix mode visits the prefix rows
    on their own first, then chunks of patch rows with their mixing weights.

    Args:
        plan (AlignmentPlan): From :func:`make_plan`.
        terms (tuple[str]): Subset of :data:`CONSISTENCY_TERMS`.

    Yields:
        RowChunk: One chunk at a time.
    """
    p, size = plan.num_prefix, plan.chunk_size
    first = 0 if 'cls' in terms else p
    last = p + plan.num_valid if 'aff' in terms else p
    if plan.mode == 'perm':
        for start in range(first, last, size):
            rows = slice(start, min(last, start + size))
            yield RowChunk(rows, rows, max(0, min(rows.stop, p) - start))
        return
    for start in range(first, min(p, last), size):
        rows = slice(start, min(p, start + size))
        yield RowChunk(rows, rows, rows.stop - start)
    if 'aff' in terms:
        for i, start in enumerate(range(0, plan.num_valid, size)):
            stop = min(plan.num_valid, start + size)
            lo, hi = plan.ranges2[i]
            mix = plan.matrix[start:stop, lo:hi]
            yield RowChunk(slice(p + start, p + stop), slice(p + lo, p + hi), 0, mix)


def _split_rows(per_row: Tensor, chunk: RowChunk, sums: dict) -> None:
    """Add per-row sums ``(B, r)`` to the class-row and affinity totals."""
    k = chunk.num_cls
    if k:
        sums['cls'] += per_row[:, :k].sum(1)
    if k < chunk.num_rows:
        sums['aff'] += per_row[:, k:].sum(1)


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


# ------------------------------------------------------------ chunk maths
def chunk_probs(q: Tensor, kt: Tensor, rows: slice) -> Tensor:
    """``softmax(q[rows] k^T)`` for a slice of query rows.

    Args:
        q (Tensor): Scaled queries ``(B, H, T, d)``.
        kt (Tensor): Transposed keys ``(B, H, d, T')`` (contiguous is fastest).
        rows (slice): Query rows.

    Returns:
        Tensor: ``(B, H, r, T')``.
    """
    return torch.softmax(q[:, :, rows] @ kt, dim=-1)


def _heads(probs: Tensor, head_average: bool) -> Tensor:
    return probs.mean(1, keepdim=True) if head_average else probs


def view1_columns(a1: Tensor, plan: AlignmentPlan) -> Tensor:
    """Compared columns of (reordered) view-1 rows: ``(..., T1) -> (..., Nv)``."""
    return a1[..., plan.num_prefix : plan.num_prefix + plan.num_valid]


def _mix_columns(x: Tensor, plan: AlignmentPlan, transpose: bool) -> Tensor:
    """``x @ R^T`` (``(..., N2) -> (..., Nv)``) or ``x @ R`` if ``transpose``."""
    if plan.matrix_sparse is None:
        matrix = plan.matrix.to(x.dtype)
        return x @ (matrix if transpose else matrix.T)
    sparse = plan.matrix_sparse.to(x.dtype)
    if transpose:
        sparse = sparse.t()
    flat = x.reshape(-1, x.shape[-1])
    out = torch.sparse.mm(sparse, flat.T).T
    return out.reshape(*x.shape[:-1], out.shape[-1])


def align_view2_rows(a2: Tensor, chunk: RowChunk, plan: AlignmentPlan) -> Tensor:
    """Aligned view-2 rows of a chunk: ``(..., r2, T2) -> (..., r1, Nv)``."""
    p = plan.num_prefix
    if plan.mode == 'perm':
        return a2[..., p : p + plan.num_valid]
    x = a2[..., p:]
    if chunk.mix is not None:
        x = chunk.mix.to(a2.dtype) @ x
    return _mix_columns(x, plan, transpose=False)


def _align_view2_backward(grad: Tensor, chunk: RowChunk, plan: AlignmentPlan) -> Tensor:
    """Adjoint of :func:`align_view2_rows`: ``(..., r1, Nv) -> (..., r2, T2)``."""
    p = plan.num_prefix
    if plan.mode == 'perm':
        return F.pad(grad, (p, plan.num_tokens2 - plan.num_valid))
    x = _mix_columns(grad, plan, transpose=True)
    if chunk.mix is not None:
        x = chunk.mix.to(grad.dtype).T @ x
    return F.pad(x, (p, 0))


def _view1_backward(grad: Tensor, plan: AlignmentPlan) -> Tensor:
    """Adjoint of :func:`view1_columns`: ``(..., Nv) -> (..., T1)``."""
    return F.pad(grad, (plan.num_prefix, plan.num_tokens1 - plan.num_valid))


def softmax_backward(probs: Tensor, grad_probs: Tensor) -> Tensor:
    """Gradient w.r.t. the logits: ``A * (dA - sum_j dA A)``.

    Args:
        probs (Tensor): ``(B, H, r, T)`` softmax output.
        grad_probs (Tensor): Gradient w.r.t. ``probs``, broadcastable to it
            (e.g. ``(B, 1, r, T)`` when shared by the heads).

    Returns:
        Tensor: ``(B, H, r, T)``.
    """
    inner = (probs * grad_probs).sum(-1, keepdim=True)
    return (grad_probs - inner).mul_(probs)


def _distance_grad(diff: Tensor, distance: str, beta: float) -> Tensor:
    if distance == 'l1' or (distance == 'smooth_l1' and beta == 0):
        return diff.sign()
    if distance == 'l2':
        return 2 * diff
    if distance == 'smooth_l1':
        return torch.where(diff.abs() < beta, diff / beta, diff.sign())
    raise ValueError(f'no derivative for distance "{distance}"')


def _normalizers(plan: AlignmentPlan, heads: int, head_average: bool) -> dict:
    h = 1 if head_average else heads
    nv = plan.num_valid
    return dict(cls=h * plan.num_prefix * nv, aff=h * nv * nv)


def _check_records(
    q1: Tensor, k1: Tensor, q2: Tensor, k2: Tensor, plan: AlignmentPlan
) -> None:
    p = plan.num_prefix
    for view, q, k, n in ((1, q1, k1, plan.num_tokens1), (2, q2, k2, plan.num_tokens2)):
        if q.dim() != 4 or q.shape != k.shape or q.shape[2] != p + n:
            raise ValueError(
                f'view-{view} queries {tuple(q.shape)} and keys {tuple(k.shape)} '
                f'must both be (B, H, {p + n}, head_dim) = {p} prefix + {n} '
                'patch tokens'
            )
    if q1.shape[:2] != q2.shape[:2] or q1.shape[-1] != q2.shape[-1]:
        raise ValueError(
            f'queries of the two views differ in batch, heads or head_dim: '
            f'{tuple(q1.shape)} vs {tuple(q2.shape)}'
        )


def _reorder(x: Tensor, order: Optional[Tensor]) -> Tensor:
    return x if order is None else x.index_select(2, order)


def _restore(x: Tensor, order: Optional[Tensor]) -> Tensor:
    """Inverse of :func:`_reorder` (``x`` in the plan's order)."""
    if order is None:
        return x
    return torch.empty_like(x).index_copy_(2, order, x)


def _prepare(q: Tensor, k: Tensor, order: Optional[Tensor], dtype: torch.dtype):
    """Reordered contiguous ``q``, ``k`` and ``k^T`` in the compute dtype.

    Transient copies: the records themselves are what is kept for backward
    (for timm, ``k`` is a view of the ``qkv`` output that the fused kernel
    keeps anyway, so it costs nothing; ``q * scale`` costs one ``(B, H, T,
    d)`` tensor per layer and view).
    """
    q = _reorder(q.to(dtype), order).contiguous()
    k = _reorder(k.to(dtype), order).contiguous()
    return q, k, k.transpose(-2, -1).contiguous()


def _run_chunks(
    q1: Tensor,
    k1: Tensor,
    q2: Tensor,
    k2: Tensor,
    plan: AlignmentPlan,
    terms: Tuple[str, ...],
    head_average: bool,
    distance: str,
    beta: float,
    scale: Optional[dict] = None,
    need: Tuple[bool, bool] = (False, False),
    values: bool = True,
) -> Tuple[Optional[dict], Optional[Tuple[Tensor, ...]]]:
    """One pass over the chunks: per-sample sums and/or input gradients.

    Args:
        q1, k1, q2, k2 (Tensor): The records, in their own token order.
        scale (dict, optional): ``{'cls': (B,), 'aff': (B,)}`` gradient of
            the loss w.r.t. each distance *sum* (output gradient / normaliser,
            divided by ``H`` for head averaging). None: no gradients.
        need (tuple[bool, bool]): Gradients wanted for view 1 / view 2.
        values (bool): Compute the per-sample distance sums.

    Returns:
        tuple: ``({'cls': (B,), 'aff': (B,)} or None, (dq1, dk1, dq2, dk2) or
        None)``, gradients in the compute dtype and the original token order.
    """
    dtype = compute_dtype(q1)
    sums = grads = None
    if values:
        sums = {t: q1.new_zeros(q1.shape[0], dtype=dtype) for t in CONSISTENCY_TERMS}
    with _no_autocast(q1):
        q1o, k1o, kt1 = _prepare(q1, k1, plan.order1, dtype)
        q2o, k2o, kt2 = _prepare(q2, k2, plan.order2, dtype)
        if scale is not None:
            dq1, dk1 = torch.zeros_like(q1o), torch.zeros_like(k1o)
            dq2, dk2 = torch.zeros_like(q2o), torch.zeros_like(k2o)
        for chunk in iter_row_chunks(plan, terms):
            p1 = chunk_probs(q1o, kt1, chunk.rows1)
            p2 = chunk_probs(q2o, kt2, chunk.rows2)
            a1 = view1_columns(_heads(p1, head_average), plan)
            a2 = align_view2_rows(_heads(p2, head_average), chunk, plan)
            if values:
                dist = elementwise_distance(a1, a2, distance, beta)
                _split_rows(dist.sum(dim=(1, 3)), chunk, sums)
                del dist
            if scale is None:
                continue
            g = _distance_grad(a1 - a2, distance, beta)
            g.mul_(_row_scale(scale, chunk))
            del a1, a2
            if need[0]:
                ds1 = softmax_backward(p1, _view1_backward(g, plan))
                _accumulate(dq1, dk1, ds1, q1o, k1o, chunk.rows1)
                del ds1
            del p1
            if need[1]:
                ds2 = softmax_backward(p2, _align_view2_backward(-g, chunk, plan))
                _accumulate(dq2, dk2, ds2, q2o, k2o, chunk.rows2)
                del ds2
            del p2
        del q1o, k1o, kt1, q2o, k2o, kt2
        if scale is not None:
            grads = (
                _restore(dq1, plan.order1),
                _restore(dk1, plan.order1),
                _restore(dq2, plan.order2),
                _restore(dk2, plan.order2),
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


class ChunkedConsistencyFunction(torch.autograd.Function):
    """Class-row and affinity terms from ``(q, k)``, chunk by chunk.

    ``apply(q1, k1, q2, k2, plan, terms, head_average, distance, beta,
    grad_mode, grad_weights)`` returns ``(cls, aff)``, each ``(B,)`` (zeros
    for a term not in ``terms``); element-wise distances only (``'l1'``,
    ``'l2'``, ``'smooth_l1'``).

    ``grad_mode``:

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
        ctx,
        q1: Tensor,
        k1: Tensor,
        q2: Tensor,
        k2: Tensor,
        plan: AlignmentPlan,
        terms: Tuple[str, ...],
        head_average: bool,
        distance: str,
        beta: float,
        grad_mode: str = 'recompute',
        grad_weights: Tuple[float, float] = (1.0, 1.0),
    ) -> Tuple[Tensor, Tensor]:
        ctx.save_for_backward(q1, k1, q2, k2)
        ctx.options = (plan, terms, head_average, distance, beta)
        ctx.stored = None
        need = (
            ctx.needs_input_grad[0] or ctx.needs_input_grad[1],
            ctx.needs_input_grad[2] or ctx.needs_input_grad[3],
        )
        scale = None
        if grad_mode == 'store' and any(need):
            weights = q1.new_tensor(grad_weights, dtype=compute_dtype(q1))
            scale = _sum_scale(
                weights[:, None].expand(2, q1.shape[0]), plan, q1.shape[1], head_average
            )
            ctx.grad_weights = grad_weights
        sums, grads = _run_chunks(
            q1, k1, q2, k2, plan, terms, head_average, distance, beta, scale, need
        )
        ctx.stored = grads
        norm = _normalizers(plan, q1.shape[1], head_average)
        return tuple(
            (sums[t] / norm[t] if t in terms else sums[t]).to(q1.dtype)
            for t in CONSISTENCY_TERMS
        )

    @staticmethod
    def backward(ctx, grad_cls: Tensor, grad_aff: Tensor):
        q1, k1, q2, k2 = ctx.saved_tensors
        plan, terms, head_average, distance, beta = ctx.options
        dtype = compute_dtype(q1)
        out_grads = {'cls': grad_cls.to(dtype), 'aff': grad_aff.to(dtype)}
        grads = None
        if ctx.stored is not None:
            factor = _proportionality(out_grads, terms, ctx.grad_weights)
            if factor is not None:
                factor = factor.view(-1, 1, 1, 1)
                grads = tuple(g * factor for g in ctx.stored)
            ctx.stored = None
        if grads is None:
            need = (
                ctx.needs_input_grad[0] or ctx.needs_input_grad[1],
                ctx.needs_input_grad[2] or ctx.needs_input_grad[3],
            )
            scale = _sum_scale(
                (out_grads['cls'], out_grads['aff']), plan, q1.shape[1], head_average
            )
            _, grads = _run_chunks(
                q1,
                k1,
                q2,
                k2,
                plan,
                terms,
                head_average,
                distance,
                beta,
                scale,
                need,
                values=False,
            )
        out = [
            grad.to(ref.dtype) if needed else None
            for grad, ref, needed in zip(grads, (q1, k1, q2, k2), ctx.needs_input_grad)
        ]
        return (*out, None, None, None, None, None, None, None)


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


def compute_dtype(x: Tensor) -> torch.dtype:
    """Dtype of the chunk computations: float32 for half/bfloat16 records."""
    return torch.float32 if x.dtype in _LOW_PRECISION else x.dtype


def _no_autocast(x: Tensor):
    return torch.autocast(device_type=x.device.type, enabled=False)


# --------------------------------------------------------- public API
def chunked_consistency_terms(
    q1: Tensor,
    k1: Tensor,
    q2: Tensor,
    k2: Tensor,
    alignment: TokenAlignment,
    num_prefix: int = 1,
    terms: Tuple[str, ...] = CONSISTENCY_TERMS,
    head_average: bool = True,
    distance: str = 'l1',
    beta: float = 1e-3,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    eps: float = 1e-8,
    plan: Optional[AlignmentPlan] = None,
    grad_mode: str = 'recompute',
    grad_weights: Tuple[float, float] = (1.0, 1.0),
) -> Tuple[Optional[Tensor], Optional[Tensor]]:
    """ACR class-row and affinity terms of one layer from queries and keys.

    Equal (up to rounding) to ``class_row_term`` / ``affinity_term`` of
    ``acr_terms`` on ``A1 = softmax(q1 k1^T)`` and ``align_attention(A2)``,
    heads averaged first when ``head_average``, without storing either
    attention map. Stop-gradient: pass detached tensors for that view.

    Args:
        q1 (Tensor): View-1 scaled queries ``(B, H, P + N1, d)``.
        k1 (Tensor): View-1 keys ``(B, H, P + N1, d)``.
        q2 (Tensor): View-2 scaled queries ``(B, H, P + N2, d)``.
        k2 (Tensor): View-2 keys ``(B, H, P + N2, d)``.
        alignment (TokenAlignment): View-2 -> view-1 token alignment.
        num_prefix (int): Prefix tokens ``P``. Defaults to 1.
        terms (tuple[str]): Subset of ``('cls', 'aff')``. Defaults to both.
        head_average (bool): Average heads before the distance. Defaults to
            True.
        distance (str): ``'l1'``, ``'l2'``, ``'smooth_l1'`` or ``'kl'``.
            Defaults to ``'l1'``.
        beta (float): Smooth-L1 threshold. Defaults to 1e-3.
        chunk_size (int): Query rows recomputed at a time. Defaults to 64.
        eps (float): KL floor. Defaults to 1e-8.
        plan (AlignmentPlan, optional): ``make_plan(alignment, num_prefix,
            chunk_size, device, dtype)`` computed once for several layers.
            Defaults to None (computed here).
        grad_mode (str): ``'recompute'`` (backward recomputes the chunks;
            nothing but ``q`` and ``k`` is kept) or ``'store'`` (forward
            also computes the gradients and keeps them: one pass less, two
            ``(B, H, T, d)`` tensors per view more); see
            :class:`ChunkedConsistencyFunction`. KL always recomputes.
            Defaults to ``'recompute'``.
        grad_weights (tuple[float, float]): Expected ratio of the output
            gradients of ``(cls, aff)`` (their loss weights) for
            ``'store'``. Defaults to ``(1.0, 1.0)``.

    Returns:
        tuple[Tensor | None, Tensor | None]: ``(cls, aff)``, each ``(B,)`` or
        None when not in ``terms``.
    """
    wanted = tuple(t for t in CONSISTENCY_TERMS if t in terms)
    if not wanted or len(wanted) != len(set(terms)):
        raise ValueError(
            f'chunked_consistency_terms: terms {terms} must be a non-empty '
            f'subset of {CONSISTENCY_TERMS}'
        )
    if 'cls' in wanted and num_prefix < 1:
        raise ValueError('the class-row term needs at least one prefix token')
    if int(chunk_size) < 1:
        raise ValueError(f'chunk_size must be a positive integer: {chunk_size}')
    if grad_mode not in GRAD_MODES:
        raise ValueError(f'unknown grad_mode "{grad_mode}" (one of {GRAD_MODES})')
    if plan is None:
        plan = make_plan(
            alignment, num_prefix, chunk_size, q1.device, compute_dtype(q1)
        )
    elif plan.num_prefix != num_prefix:
        raise ValueError(
            f'plan was made for {plan.num_prefix} prefix tokens, not {num_prefix}'
        )
    _check_records(q1, k1, q2, k2, plan)
    if distance in ELEMENTWISE_DISTANCES:
        cls, aff = ChunkedConsistencyFunction.apply(
            q1,
            k1,
            q2,
            k2,
            plan,
            wanted,
            head_average,
            distance,
            beta,
            grad_mode,
            tuple(float(w) for w in grad_weights),
        )
    elif distance == 'kl':
        cls, aff = _checkpointed_kl(q1, k1, q2, k2, plan, wanted, head_average, eps)
    else:
        raise ValueError(f'unknown distance "{distance}" (one of {DISTANCES})')
    return (cls if 'cls' in wanted else None, aff if 'aff' in wanted else None)


def _checkpointed_kl(
    q1: Tensor,
    k1: Tensor,
    q2: Tensor,
    k2: Tensor,
    plan: AlignmentPlan,
    terms: Tuple[str, ...],
    head_average: bool,
    eps: float,
) -> Tuple[Tensor, Tensor]:
    """Row-wise symmetric KL, each chunk under activation checkpointing."""
    q1o, k1o = _reorder(q1, plan.order1), _reorder(k1, plan.order1)
    q2o, k2o = _reorder(q2, plan.order2), _reorder(k2, plan.order2)
    sums = {t: q1.new_zeros(q1.shape[0]) for t in CONSISTENCY_TERMS}

    def chunk_kl(chunk: RowChunk) -> Callable[..., Tensor]:
        def run(q1: Tensor, k1: Tensor, q2: Tensor, k2: Tensor) -> Tensor:
            a1 = _heads(
                chunk_probs(q1, k1.transpose(-2, -1), chunk.rows1), head_average
            )
            a2 = _heads(
                chunk_probs(q2, k2.transpose(-2, -1), chunk.rows2), head_average
            )
            rows1 = view1_columns(a1, plan)
            rows2 = align_view2_rows(a2, chunk, plan)
            return symmetric_kl_rows(rows1, rows2, None, eps).sum(dim=1)

        return run

    for chunk in iter_row_chunks(plan, terms):
        per_row = _maybe_checkpoint(chunk_kl(chunk), q1o, k1o, q2o, k2o)
        k = chunk.num_cls
        if k:
            sums['cls'] = sums['cls'] + per_row[:, :k].sum(1)
        if k < chunk.num_rows:
            sums['aff'] = sums['aff'] + per_row[:, k:].sum(1)
    rows_per_head = dict(cls=plan.num_prefix, aff=plan.num_valid)
    h = 1 if head_average else q1.shape[1]
    return tuple(sums[t] / (h * rows_per_head[t]) for t in CONSISTENCY_TERMS)


def _maybe_checkpoint(fn: Callable[..., Tensor], *args: Tensor) -> Tensor:
    if torch.is_grad_enabled() and any(a.requires_grad for a in args):
        return checkpoint(fn, *args, use_reentrant=False)
    return fn(*args)


def qk_patch_row_entropy(
    q: Tensor,
    k: Tensor,
    num_prefix: int = 1,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    eps: float = 1e-12,
) -> Tensor:
    """``acr_terms.patch_row_entropy`` of ``softmax(q k^T)``, chunked.

    Each chunk of patch rows is checkpointed, so the memory stays
    ``O(B H chunk T)``; gradients flow to ``q`` and ``k``.

    Args:
        q (Tensor): Scaled queries ``(B, H, T, d)``.
        k (Tensor): Keys ``(B, H, T, d)``.
        num_prefix (int): Prefix tokens. Defaults to 1.
        chunk_size (int): Rows per chunk. Defaults to 64.
        eps (float): Floor inside the logarithm. Defaults to 1e-12.

    Returns:
        Tensor: ``(B,)`` mean normalised entropy of the patch rows.
    """
    t = k.shape[2]
    if q.dim() != 4 or q.shape != k.shape or t < 2 or t <= num_prefix:
        raise ValueError(
            f'qk_patch_row_entropy: records {tuple(q.shape)} / {tuple(k.shape)} '
            f'must be (B, H, T, d) with more than {max(1, num_prefix)} tokens'
        )
    log_t = torch.log(torch.tensor(float(t), dtype=q.dtype, device=q.device))

    def chunk_entropy(rows: slice) -> Callable[..., Tensor]:
        def run(q: Tensor, k: Tensor) -> Tensor:
            probs = chunk_probs(q, k.transpose(-2, -1), rows)
            return -(probs * probs.clamp_min(eps).log()).sum(-1).sum(dim=(1, 2))

        return run

    total = q.new_zeros(q.shape[0])
    for start in range(num_prefix, t, int(chunk_size)):
        rows = slice(start, min(t, start + int(chunk_size)))
        total = total + _maybe_checkpoint(chunk_entropy(rows), q, k)
    return total / (log_t * q.shape[1] * (t - num_prefix))


@torch.no_grad()
def qk_attention_entropy(
    q: Tensor,
    k: Tensor,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    max_rows: Optional[int] = None,
    normalized: bool = True,
) -> Tensor:
    """``attention_capture.attention_entropy`` of ``softmax(q k^T)``, chunked.

    A detached diagnostic: mean row entropy over heads and rows (prefix rows
    included), divided by ``log(T')`` when ``normalized``. With
    ``max_rows`` only that many evenly spaced rows (first and last included)
    are evaluated: an estimate at a fraction of the cost.

    Args:
        q (Tensor): Scaled queries ``(B, H, T, d)``.
        k (Tensor): Keys ``(B, H, T', d)``.
        chunk_size (int): Rows per chunk. Defaults to 64.
        max_rows (int, optional): Subsample the rows. Defaults to None
            (every row, exact).
        normalized (bool): Divide by ``log(T')``. Defaults to True.

    Returns:
        Tensor: ``(B,)``.
    """
    num_rows, num_keys = q.shape[2], k.shape[2]
    dtype = compute_dtype(q)
    if max_rows is not None and 0 < max_rows < num_rows:
        picked = torch.linspace(0, num_rows - 1, int(max_rows), device=q.device)
        q = q.index_select(2, picked.round().long())
        num_rows = q.shape[2]
    q, kt = q.to(dtype), k.to(dtype).transpose(-2, -1).contiguous()
    total = q.new_zeros(q.shape[0])
    for start in range(0, num_rows, int(chunk_size)):
        probs = chunk_probs(q, kt, slice(start, min(num_rows, start + int(chunk_size))))
        total -= torch.xlogy(probs, probs).sum(dim=(1, 2, 3))
    entropy = total / (q.shape[1] * num_rows)
    if normalized:
        if num_keys < 2:
            return torch.zeros_like(entropy)
        entropy = entropy / math.log(num_keys)
    return entropy
