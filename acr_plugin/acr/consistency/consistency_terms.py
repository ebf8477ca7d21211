"""Pure tensor terms of the all-pairs consistency regulariser (ACR).

Every function compares view 1 with view 2 *already aligned* to view 1's
tokens (see ``acr_plugin.acr.views.token_alignment``) and returns one value
per sample ``(B,)``; averaging over layers and the batch is left to the
caller. Attention maps are post-softmax ``(B, [H,] P + N, P + N)`` with ``P``
prefix (class) tokens first; an optional ``valid`` bool mask ``(N,)`` selects
the patch tokens that have a counterpart in view 2.

Official ACR (Sun et al., arXiv 2308.04321), per layer, heads averaged first,
pi the flip:

* class rows: ``mean_{p, k} |A1[p, P + k] - A2[p, P + pi(k)]|``
* affinity: ``mean_{i, k} |A1[P + i, P + k] - A2[P + pi(i), P + pi(k)]|``

The prefix block ``A[:P, :P]`` and the patch->prefix column ``A[P:, :P]``
are never compared.
"""

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

#: element-wise distances
ELEMENTWISE_DISTANCES = ('l1', 'l2', 'smooth_l1')
#: every distance understood by the attention terms
DISTANCES = ELEMENTWISE_DISTANCES + ('kl',)


def elementwise_distance(
    x: Tensor, y: Tensor, distance: str = 'l1', beta: float = 1e-3
) -> Tensor:
    """Element-wise ``|x - y|``, ``(x - y)^2`` or smooth-L1 (Huber / beta).

    Args:
        x (Tensor): First operand.
        y (Tensor): Second operand, same shape.
        distance (str): ``'l1'``, ``'l2'`` or ``'smooth_l1'``. Defaults to
            ``'l1'``.
        beta (float): Smooth-L1 threshold: ``0.5 d^2 / beta`` below it,
            ``|d| - 0.5 beta`` above. Defaults to 1e-3.
    """
    if distance == 'l1':
        return (x - y).abs()
    if distance == 'l2':
        return (x - y).square()
    if distance == 'smooth_l1':
        return F.smooth_l1_loss(x, y, reduction='none', beta=beta)
    raise ValueError(
        f'unknown element-wise distance "{distance}" (one of {ELEMENTWISE_DISTANCES})'
    )


def symmetric_kl_rows(
    p: Tensor, q: Tensor, col_mask: Optional[Tensor] = None, eps: float = 1e-8
) -> Tensor:
    """Symmetric KL between matching rows, renormalised over compared columns.

    Each row of ``p`` and ``q`` is restricted to ``col_mask`` and rescaled to
    sum to one; the value is ``0.5 (KL(p || q) + KL(q || p)) =
    0.5 sum_k (p_k - q_k)(log p_k - log q_k)``.

    Args:
        p (Tensor): ``(..., K)`` non-negative rows.
        q (Tensor): ``(..., K)`` non-negative rows.
        col_mask (Tensor, optional): Bool ``(K,)``. Defaults to None (all).
        eps (float): Floor of probabilities inside the logarithm and of the
            row sums. Defaults to 1e-8.

    Returns:
        Tensor: ``(...)`` one value per row.
    """
    if col_mask is not None:
        m = col_mask.to(p.dtype)
        p, q = p * m, q * m
    p = p / p.sum(-1, keepdim=True).clamp_min(eps)
    q = q / q.sum(-1, keepdim=True).clamp_min(eps)
    log_ratio = p.clamp_min(eps).log() - q.clamp_min(eps).log()
    return 0.5 * ((p - q) * log_ratio).sum(-1)


def _check_pair(attn1: Tensor, attn2: Tensor, num_prefix: int) -> None:
    if attn1.shape != attn2.shape:
        raise ValueError(
            f'attention maps differ in shape: {tuple(attn1.shape)} vs '
            f'{tuple(attn2.shape)} (align view 2 first)'
        )
    if attn1.dim() not in (3, 4) or attn1.shape[-1] != attn1.shape[-2]:
        raise ValueError(f'attention must be (B, [H,] N, N), got {tuple(attn1.shape)}')
    if attn1.shape[-1] <= num_prefix:
        raise ValueError(
            f'attention {tuple(attn1.shape)} has no patch tokens after '
            f'{num_prefix} prefix tokens'
        )


def _patch_mask(
    valid: Optional[Tensor], num_patches: int, device: torch.device
) -> Tensor:
    if valid is None:
        return torch.ones(num_patches, dtype=torch.bool, device=device)
    if valid.shape != (num_patches,):
        raise ValueError(
            f'valid mask {tuple(valid.shape)} must be ({num_patches},), one '
            'entry per patch token'
        )
    valid = valid.to(device=device, dtype=torch.bool)
    if not bool(valid.any()):
        raise ValueError('valid mask selects no patch token: the views do not overlap')
    return valid


def _per_sample_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean over every non-batch dim of ``values`` where ``mask`` (broadcast)."""
    mask = mask.to(values.dtype).expand_as(values)
    dims = tuple(range(1, values.dim()))
    return (values * mask).sum(dims) / mask.sum(dims)


def class_row_term(
    attn1: Tensor,
    attn2: Tensor,
    num_prefix: int = 1,
    valid: Optional[Tensor] = None,
    distance: str = 'l1',
    beta: float = 1e-3,
    eps: float = 1e-8,
) -> Tensor:
    """Class-row (prefix -> patch) consistency, one value per sample.

    Compares ``A1[p, P + k]`` with the aligned ``A2[p, P + k]`` for every
    prefix row ``p`` (and head, when present) and valid patch ``k``.
    Element-wise distances are averaged; ``'kl'`` is the symmetric KL of each
    prefix row restricted to the valid patch columns, averaged over rows.

    Args:
        attn1 (Tensor): ``(B, [H,] P + N, P + N)`` view-1 attention.
        attn2 (Tensor): View-2 attention aligned to view 1, same shape.
        num_prefix (int): Number of prefix tokens ``P`` (>= 1). Defaults to 1.
        valid (Tensor, optional): Bool ``(N,)`` compared patch tokens.
            Defaults to None (all).
        distance (str): One of :data:`DISTANCES`. Defaults to ``'l1'``.
        beta (float): Smooth-L1 threshold. Defaults to 1e-3.
        eps (float): KL floor. Defaults to 1e-8.

    Returns:
        Tensor: ``(B,)``.
    """
    if num_prefix < 1:
        raise ValueError('class_row_term needs at least one prefix token')
    _check_pair(attn1, attn2, num_prefix)
    n = attn1.shape[-1] - num_prefix
    cols = _patch_mask(valid, n, attn1.device)
    rows1 = attn1[..., :num_prefix, num_prefix:]
    rows2 = attn2[..., :num_prefix, num_prefix:]
    if distance == 'kl':
        per_row = symmetric_kl_rows(rows1, rows2, cols, eps)
        return per_row.flatten(1).mean(1)
    return _per_sample_mean(elementwise_distance(rows1, rows2, distance, beta), cols)


def affinity_term(
    attn1: Tensor,
    attn2: Tensor,
    num_prefix: int = 1,
    valid: Optional[Tensor] = None,
    distance: str = 'l1',
    beta: float = 1e-3,
    eps: float = 1e-8,
) -> Tensor:
    """Patch-to-patch affinity consistency, one value per sample.

    Compares ``A1[P + i, P + k]`` with the aligned ``A2[P + i, P + k]`` for
    valid ``i`` and ``k``; ``'kl'`` compares whole valid rows. Arguments and
    result as for :func:`class_row_term`, except that ``num_prefix`` may be 0.
    """
    _check_pair(attn1, attn2, num_prefix)
    n = attn1.shape[-1] - num_prefix
    mask = _patch_mask(valid, n, attn1.device)
    block1 = attn1[..., num_prefix:, num_prefix:]
    block2 = attn2[..., num_prefix:, num_prefix:]
    if distance == 'kl':
        per_row = symmetric_kl_rows(block1, block2, mask, eps)
        return _per_sample_mean(per_row, mask)
    pair_mask = mask[:, None] & mask[None, :]
    return _per_sample_mean(
        elementwise_distance(block1, block2, distance, beta), pair_mask
    )


def normalize_cams(cams: Tensor, eps: float = 1e-5) -> Tensor:
    """Per-sample, per-class ``relu(cam) / (max relu(cam) + eps)``.

    Args:
        cams (Tensor): ``(B, C, h, w)`` raw CAMs.
        eps (float): Added to the maximum. Defaults to 1e-5.
    """
    cams = cams.relu()
    return cams / (cams.amax(dim=(-2, -1), keepdim=True) + eps)


def cam_term(
    cams1: Tensor,
    cams2: Tensor,
    valid: Optional[Tensor] = None,
    distance: str = 'l1',
    beta: float = 1e-3,
) -> Tensor:
    """CAM-activation consistency ``mean |CAM1 - align(CAM2)|`` per sample.

    Args:
        cams1 (Tensor): ``(B, C, h, w)`` view-1 CAMs (normalised as wanted).
        cams2 (Tensor): View-2 CAMs aligned to view 1, same shape.
        valid (Tensor, optional): Bool ``(h * w,)`` compared positions
            (row-major). Defaults to None (all).
        distance (str): One of :data:`ELEMENTWISE_DISTANCES`. Defaults to
            ``'l1'``.
        beta (float): Smooth-L1 threshold. Defaults to 1e-3.

    Returns:
        Tensor: ``(B,)``.
    """
    if cams1.shape != cams2.shape or cams1.dim() != 4:
        raise ValueError(
            f'CAMs must both be (B, C, h, w) of one shape, got '
            f'{tuple(cams1.shape)} and {tuple(cams2.shape)}'
        )
    mask = _patch_mask(valid, cams1.shape[-2] * cams1.shape[-1], cams1.device)
    dist = elementwise_distance(cams1.flatten(2), cams2.flatten(2), distance, beta)
    return _per_sample_mean(dist, mask)


def patch_row_entropy(attn: Tensor, num_prefix: int = 1, eps: float = 1e-12) -> Tensor:
    """Mean normalised entropy of the patch-token attention rows per sample.

    Each row ``A[P + i, :]`` (a distribution over all ``P + N`` keys) has
    entropy ``-sum a log a / log(P + N)`` in ``[0, 1]``; 1 is uniform. The
    mean runs over heads (when present) and patch rows.

    Args:
        attn (Tensor): ``(B, [H,] P + N, P + N)`` post-softmax attention.
        num_prefix (int): Number of prefix tokens. Defaults to 1.
        eps (float): Floor inside the logarithm. Defaults to 1e-12.

    Returns:
        Tensor: ``(B,)``.
    """
    if attn.dim() not in (3, 4) or attn.shape[-1] != attn.shape[-2]:
        raise ValueError(f'attention must be (B, [H,] N, N), got {tuple(attn.shape)}')
    n = attn.shape[-1]
    if n < 2 or n <= num_prefix:
        raise ValueError(f'attention {tuple(attn.shape)} has too few tokens')
    rows = attn[..., num_prefix:, :]
    ent = -(rows * rows.clamp_min(eps).log()).sum(-1) / torch.log(
        torch.tensor(float(n), dtype=attn.dtype, device=attn.device)
    )
    return ent.flatten(1).mean(1)
