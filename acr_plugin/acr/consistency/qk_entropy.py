"""Attention-entropy statistics of ``softmax(q k^T)`` from ``(q, k)`` records.

Chunked counterparts of the probability versions, with no ``(B, H, T, T)``
tensor: :func:`qk_patch_row_entropy` (the differentiable entropy penalty of
the loss, checkpointed per chunk) and :func:`qk_attention_entropy` (a detached
diagnostic, optionally on a subset of rows).
"""

import math
from typing import Callable, Optional

import torch
from torch import Tensor

from acr_plugin.acr.attention.query_key_pair import QueryKeyPair

from .alignment_plan import DEFAULT_CHUNK_SIZE
from .chunk_ops import chunk_probs, compute_dtype, maybe_checkpoint

_WHAT = 'qk_patch_row_entropy records'


def qk_patch_row_entropy(
    q: Tensor,
    k: Tensor,
    num_prefix: int = 1,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    eps: float = 1e-12,
) -> Tensor:
    """``consistency_terms.patch_row_entropy`` of ``softmax(q k^T)``, chunked.

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
    QueryKeyPair(q, k).check(q.shape[2] if q.dim() == 4 else None, _WHAT)
    t = k.shape[2]
    if t < 2 or t <= num_prefix:
        raise ValueError(
            f'{_WHAT}: {t} tokens, expected more than {max(1, num_prefix)}'
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
        total = total + maybe_checkpoint(chunk_entropy(rows), q, k)
    return total / (log_t * q.shape[1] * (t - num_prefix))


@torch.no_grad()
def qk_attention_entropy(
    q: Tensor,
    k: Tensor,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    max_rows: Optional[int] = None,
    normalized: bool = True,
) -> Tensor:
    """``attention_ops.attention_entropy`` of ``softmax(q k^T)``, chunked.

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
