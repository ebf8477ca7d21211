"""Adapter for ``torch.nn.MultiheadAttention``: projections and masks.

The weights that torch returns are a view taken *after* they were multiplied by
``v``, so they are not on the path to the output. The capture recomputes the
attention from the module's own projections (:func:`mha_project`) and masks
(:func:`mha_attention_bias`) instead.
"""

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _to_batch_first(x: Tensor, batch_first: bool) -> Tensor:
    if x.dim() == 2:  # unbatched (L, E)
        return x.unsqueeze(0)
    return x if batch_first else x.transpose(0, 1)


def mha_project(
    mha: nn.MultiheadAttention, query: Tensor, key: Tensor, value: Tensor
) -> Tuple[Tensor, Tensor, Tensor]:
    """Per-head ``q * scale``, ``k`` and ``v`` of ``nn.MultiheadAttention``.

    Args:
        mha (nn.MultiheadAttention): The module (its ``batch_first`` decides the
            input layout; unbatched 2-D inputs are accepted).
        query (Tensor): Query input as given to ``mha``.
        key (Tensor): Key input as given to ``mha``.
        value (Tensor): Value input as given to ``mha``.

    Returns:
        tuple[Tensor, Tensor, Tensor]: ``q * head_dim ** -0.5`` ``(B, heads, L,
        head_dim)``, ``k`` and ``v`` ``(B, heads, S, head_dim)``.
    """
    if mha.bias_k is not None or mha.add_zero_attn:
        raise NotImplementedError(
            'AttentionCapture: nn.MultiheadAttention with add_bias_kv or '
            'add_zero_attn is not supported'
        )
    if mha._qkv_same_embed_dim:
        w_q, w_k, w_v = mha.in_proj_weight.chunk(3)
    else:
        w_q, w_k, w_v = mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight
    if mha.in_proj_bias is not None:
        b_q, b_k, b_v = mha.in_proj_bias.chunk(3)
    else:
        b_q = b_k = b_v = None
    heads, head_dim = mha.num_heads, mha.head_dim

    def split(x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
        x = F.linear(_to_batch_first(x, mha.batch_first), weight, bias)
        return x.view(x.shape[0], x.shape[1], heads, head_dim).transpose(1, 2)

    q = split(query, w_q, b_q) * head_dim**-0.5
    return q, split(key, w_k, b_k), split(value, w_v, b_v)


def _additive_mask(mask: Tensor, dtype: torch.dtype) -> Tensor:
    """torch MHA convention: boolean True = not allowed to attend."""
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(
            mask, float('-inf')
        )
    return mask.to(dtype)


def mha_attention_bias(
    attn_mask: Optional[Tensor],
    key_padding_mask: Optional[Tensor],
    shape: Tuple[int, int, int, int],
    dtype: torch.dtype,
) -> Optional[Tensor]:
    """Additive attention bias from torch MHA's ``attn_mask``/``key_padding_mask``.

    Args:
        attn_mask (Tensor, optional): ``(L, S)`` or ``(B * heads, L, S)`` mask.
        key_padding_mask (Tensor, optional): ``(B, S)`` mask.
        shape (tuple): ``(B, heads, L, S)`` of the attention logits.
        dtype (torch.dtype): Dtype of the logits.

    Returns:
        Tensor or None: A bias broadcastable to ``shape``, or None.
    """
    batch, heads, length, src_len = shape
    bias = None
    if attn_mask is not None:
        bias = _additive_mask(attn_mask, dtype)
        if bias.dim() == 2:
            bias = bias.view(1, 1, length, src_len)
        else:
            bias = bias.view(batch, heads, length, src_len)
    if key_padding_mask is not None:
        padding = _additive_mask(key_padding_mask, dtype).view(batch, 1, 1, src_len)
        bias = padding if bias is None else bias + padding
    return bias
