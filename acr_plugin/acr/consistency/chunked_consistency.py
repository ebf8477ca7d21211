"""ACR consistency terms at fused-attention memory cost.

The naive route (``AllPairsConsistencyLoss`` on post-softmax records) needs
every regularised layer off the fused attention kernel and keeps ``(B, H, N,
N)`` probabilities per layer and view until backward. Here the model keeps its
fused kernel; the capture records the scaled queries and keys ``(q, k)``
(``AttentionCapture(mode='qk')``) and the terms are recomputed from them,
``chunk_size`` query rows of ``softmax(q k^T)`` at a time, in forward and again
in backward (:class:`~.chunked_function.ChunkedConsistencyFunction`). No
``(B, H, N, N)`` tensor ever exists. Memory: the function keeps only its inputs (for
timm, ``k`` is a view of the ``qkv`` output that the fused kernel keeps anyway;
``q * scale`` is one ``(B, H, N, d)`` tensor per layer and view), works in
``O(B H chunk N)`` per chunk, and returns ``(B, H, N, d)`` gradients for ``q``
and ``k`` (which wait for the backward pass to reach their layer).

Terms, per sample, identical to ``consistency_terms.class_row_term`` and
``consistency_terms.affinity_term`` applied to the probabilities with view 2 aligned
by ``align_attention`` (``P`` prefix tokens, view-1 patch ``i`` valid):

* class rows: ``mean_{[h,] p < P, k valid} d(A1[p, P + k], A2al[p, P + k])``
* affinity: ``mean_{[h,] i, k valid} d(A1[P + i, P + k], A2al[P + i, P + k])``

Alignment of view 2 (``TokenAlignment``, see
:class:`~.alignment_plan.AlignmentPlan`):

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

This module holds the public entry point :func:`chunked_consistency_terms`;
the pieces live in ``alignment_plan`` (orders and chunks), ``chunk_ops``
(per-chunk maths), ``chunked_function`` (the autograd function),
``checkpointed_kl`` (the KL route) and ``qk_entropy`` (entropies).
"""

from typing import Optional, Tuple

from torch import Tensor

from acr_plugin.acr.attention.query_key_pair import check_view_pair
from acr_plugin.acr.views.token_alignment import TokenAlignment

from .alignment_plan import (
    CONSISTENCY_TERMS,
    DEFAULT_CHUNK_SIZE,
    AlignmentPlan,
    make_plan,
)
from .checkpointed_kl import checkpointed_kl_terms
from .chunk_ops import compute_dtype
from .chunked_function import GRAD_MODES, ChunkedConsistencyFunction, ChunkOptions
from .consistency_terms import DISTANCES, ELEMENTWISE_DISTANCES


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
    ``consistency_terms`` on ``A1 = softmax(q1 k1^T)`` and ``align_attention(A2)``,
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
            :class:`~.chunked_function.ChunkedConsistencyFunction`. KL always
            recomputes.
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
    check_view_pair(
        (q1, k1), (q2, k2), num_prefix, (plan.num_tokens1, plan.num_tokens2)
    )
    if distance in ELEMENTWISE_DISTANCES:
        options = ChunkOptions(
            plan,
            wanted,
            head_average,
            distance,
            beta,
            grad_mode,
            tuple(float(w) for w in grad_weights),
        )
        cls, aff = ChunkedConsistencyFunction.apply(q1, k1, q2, k2, options)
    elif distance == 'kl':
        cls, aff = checkpointed_kl_terms(
            q1, k1, q2, k2, plan, wanted, head_average, eps
        )
    else:
        raise ValueError(f'unknown distance "{distance}" (one of {DISTANCES})')
    return (cls if 'cls' in wanted else None, aff if 'aff' in wanted else None)
