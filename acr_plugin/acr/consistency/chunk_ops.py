"""Per-chunk maths of the chunked consistency (pure tensor functions).

A chunk is a slice of query rows (:class:`~.alignment_plan.RowChunk`). For it:
the probabilities :func:`chunk_probs`, the optional head mean
:func:`mean_heads`, the compared view-1 columns :func:`view1_columns` and the
aligned view-2 rows :func:`align_view2_rows`; their adjoints
(``*_backward``, :func:`softmax_backward`, :func:`distance_grad`) for the
hand-written backward pass; and the token reordering, dtype and checkpointing
helpers shared by every chunked route.
"""

from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from .alignment_plan import AlignmentPlan, RowChunk

_LOW_PRECISION = (torch.float16, torch.bfloat16)


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


def mean_heads(probs: Tensor, head_average: bool) -> Tensor:
    """Head mean ``(B, 1, r, T)`` when ``head_average``, else ``probs``."""
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


def align_view2_rows_backward(
    grad: Tensor, chunk: RowChunk, plan: AlignmentPlan
) -> Tensor:
    """Adjoint of :func:`align_view2_rows`: ``(..., r1, Nv) -> (..., r2, T2)``."""
    p = plan.num_prefix
    if plan.mode == 'perm':
        return F.pad(grad, (p, plan.num_tokens2 - plan.num_valid))
    x = _mix_columns(grad, plan, transpose=True)
    if chunk.mix is not None:
        x = chunk.mix.to(grad.dtype).T @ x
    return F.pad(x, (p, 0))


def view1_columns_backward(grad: Tensor, plan: AlignmentPlan) -> Tensor:
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


def distance_grad(diff: Tensor, distance: str, beta: float) -> Tensor:
    """Derivative of an element-wise distance w.r.t. ``x`` at ``diff = x - y``."""
    if distance == 'l1' or (distance == 'smooth_l1' and beta == 0):
        return diff.sign()
    if distance == 'l2':
        return 2 * diff
    if distance == 'smooth_l1':
        return torch.where(diff.abs() < beta, diff / beta, diff.sign())
    raise ValueError(f'no derivative for distance "{distance}"')


def compute_dtype(x: Tensor) -> torch.dtype:
    """Dtype of the chunk computations: float32 for half/bfloat16 records."""
    return torch.float32 if x.dtype in _LOW_PRECISION else x.dtype


def reorder_tokens(x: Tensor, order: Optional[Tensor]) -> Tensor:
    """Tokens (dim 2) of ``x`` in a plan's ``order`` (None: unchanged)."""
    return x if order is None else x.index_select(2, order)


def restore_tokens(x: Tensor, order: Optional[Tensor]) -> Tensor:
    """Inverse of :func:`reorder_tokens` (``x`` in the plan's order)."""
    if order is None:
        return x
    return torch.empty_like(x).index_copy_(2, order, x)


def prepare_records(q: Tensor, k: Tensor, order: Optional[Tensor], dtype: torch.dtype):
    """Reordered contiguous ``q``, ``k`` and ``k^T`` in the compute dtype.

    Transient copies: the records themselves are what is kept for backward
    (for timm, ``k`` is a view of the ``qkv`` output that the fused kernel
    keeps anyway, so it costs nothing; ``q * scale`` costs one ``(B, H, T,
    d)`` tensor per layer and view).
    """
    q = reorder_tokens(q.to(dtype), order).contiguous()
    k = reorder_tokens(k.to(dtype), order).contiguous()
    return q, k, k.transpose(-2, -1).contiguous()


def maybe_checkpoint(fn: Callable[..., Tensor], *args: Tensor) -> Tensor:
    """``fn(*args)``, under non-reentrant checkpointing when it needs grads."""
    if torch.is_grad_enabled() and any(a.requires_grad for a in args):
        return checkpoint(fn, *args, use_reentrant=False)
    return fn(*args)
