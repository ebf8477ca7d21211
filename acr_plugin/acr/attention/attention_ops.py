"""Pure tensor operations on attention probabilities and ``(q, k)`` pairs."""

import math

import torch
from torch import Tensor


def head_average(attn: Tensor) -> Tensor:
    """Average attention probabilities over heads.

    Args:
        attn (Tensor): ``(B, heads, N, M)`` attention.

    Returns:
        Tensor: ``(B, N, M)``.
    """
    if attn.dim() != 4:
        raise ValueError(
            f'head_average expects (B, heads, N, M) attention, got shape '
            f'{tuple(attn.shape)}'
        )
    return attn.mean(dim=1)


def attention_entropy(attn: Tensor, normalized: bool = True) -> Tensor:
    """Mean row entropy of attention probabilities, per image.

    Args:
        attn (Tensor): ``(B, heads, N, M)`` or ``(B, N, M)`` probabilities
            (rows sum to 1).
        normalized (bool): Divide by ``log(M)`` so that uniform rows give 1
            and one-hot rows 0. Defaults to True.

    Returns:
        Tensor: ``(B,)`` entropy averaged over heads and rows.
    """
    if attn.dim() == 3:
        attn = attn.unsqueeze(1)
    if attn.dim() != 4:
        raise ValueError(
            f'attention_entropy expects (B, heads, N, M) or (B, N, M) '
            f'attention, got shape {tuple(attn.shape)}'
        )
    row_entropy = -torch.xlogy(attn, attn).sum(dim=-1)
    entropy = row_entropy.mean(dim=(1, 2))
    if normalized:
        num_keys = attn.shape[-1]
        if num_keys < 2:
            return torch.zeros_like(entropy)
        entropy = entropy / math.log(num_keys)
    return entropy


def probs_from_qk(q: Tensor, k: Tensor) -> Tensor:
    """Attention probabilities from a ``'qk'`` record.

    Args:
        q (Tensor): Scaled queries ``(B, heads, N, head_dim)``.
        k (Tensor): Keys ``(B, heads, M, head_dim)``.

    Returns:
        Tensor: ``softmax(q @ k^T)`` ``(B, heads, N, M)``.
    """
    return (q @ k.transpose(-2, -1)).softmax(dim=-1)
