"""Pure tensor operations of MCTformer's localisation (Xu et al., CVPR 2022).

Conventions: attention maps are post-softmax probabilities ``(B, heads, T, T)``
(or head-averaged ``(B, T, T)``) of a ViT whose ``C`` class tokens come first,
``T = C + N`` with ``N = h * w`` patches in row-major order. Maps are
``(B, C, h, w)``, channel ``c`` from class token ``c``.
"""

from typing import Sequence, Tuple

import torch
from torch import Tensor


def _head_averaged(attn: Tensor, name: str) -> Tensor:
    if attn.dim() == 4:
        return attn.mean(dim=1)
    if attn.dim() == 3:
        return attn
    raise ValueError(
        f'{name}: attention must be (B, heads, T, T) or (B, T, T), got shape '
        f'{tuple(attn.shape)}'
    )


def _check_layers(attns: Sequence[Tensor], num_cls: int, name: str) -> None:
    if len(attns) == 0:
        raise ValueError(f'{name}: no attention maps given')
    if num_cls < 1:
        raise ValueError(f'{name}: num_cls must be >= 1, got {num_cls}')
    for i, attn in enumerate(attns):
        if attn.shape[-1] != attn.shape[-2] or attn.shape[-1] <= num_cls:
            raise ValueError(
                f'{name}: attention {i} of shape {tuple(attn.shape)} is not a '
                f'square (..., T, T) map with T > num_cls={num_cls}'
            )


def class_token_logits(class_tokens: Tensor) -> Tensor:
    """MCTformer's class logits: the mean of each class token's embedding.

    Args:
        class_tokens (Tensor): Output class tokens ``(B, C, D)``.

    Returns:
        Tensor: ``(B, C)`` logits.
    """
    if class_tokens.dim() != 3:
        raise ValueError(
            f'class_token_logits expects (B, C, D) tokens, got shape '
            f'{tuple(class_tokens.shape)}'
        )
    return class_tokens.mean(dim=-1)


def class_to_patch_maps(
    attns: Sequence[Tensor], num_cls: int, grid: Tuple[int, int]
) -> Tensor:
    """Class-to-patch attention, head-averaged and summed over layers.

    ``M[b, c] = sum_l mean_h A^l[b, h, c, C:]`` laid on the token grid.

    Args:
        attns (Sequence[Tensor]): One ``(B, heads, T, T)`` or ``(B, T, T)``
            map per layer (e.g. the last ``K`` layers).
        num_cls (int): ``C``, the class tokens in front of the patches.
        grid (tuple[int, int]): Token grid ``(h, w)`` with ``h * w = T - C``.

    Returns:
        Tensor: ``(B, C, h, w)`` maps.
    """
    name = 'class_to_patch_maps'
    _check_layers(attns, num_cls, name)
    h, w = int(grid[0]), int(grid[1])
    total = None
    for attn in attns:
        if attn.shape[-1] != num_cls + h * w:
            raise ValueError(
                f'{name}: attention has {attn.shape[-1]} tokens, expected '
                f'{num_cls} class tokens + {h}x{w} patches'
            )
        rows = _head_averaged(attn, name)[:, :num_cls, num_cls:]
        total = rows if total is None else total + rows
    return total.unflatten(-1, (h, w))


def patch_affinity(attns: Sequence[Tensor], num_cls: int) -> Tensor:
    """Patch-to-patch affinity ``P = sum_l mean_h A^l[C:, C:]`` (no renormalisation).

    Args:
        attns (Sequence[Tensor]): One ``(B, heads, T, T)`` or ``(B, T, T)``
            map per layer (MCTformer: every layer).
        num_cls (int): ``C``, the class tokens in front of the patches.

    Returns:
        Tensor: ``(B, N, N)`` with ``N = T - C``.
    """
    name = 'patch_affinity'
    _check_layers(attns, num_cls, name)
    total = None
    for attn in attns:
        block = _head_averaged(attn, name)[:, num_cls:, num_cls:]
        total = block if total is None else total + block
    return total


def patch_affinity_refine(
    maps: Tensor, attns: Sequence[Tensor], num_cls: int
) -> Tensor:
    """Refine maps by the patch affinity: ``M_c <- P M_c`` for every class.

    ``refined[b, c, i] = sum_j P[b, i, j] M[b, c, j]`` with ``P`` from
    :func:`patch_affinity`, ``i, j`` flattened patch positions.

    Args:
        maps (Tensor): ``(B, C, h, w)`` maps.
        attns (Sequence[Tensor]): Attention of the layers forming ``P``.
        num_cls (int): ``C``, the class tokens in front of the patches.

    Returns:
        Tensor: ``(B, C, h, w)`` refined maps.
    """
    if maps.dim() != 4:
        raise ValueError(
            f'patch_affinity_refine expects (B, C, h, w) maps, got shape '
            f'{tuple(maps.shape)}'
        )
    affinity = patch_affinity(attns, num_cls)
    batch, channels, h, w = maps.shape
    if affinity.shape[-1] != h * w or affinity.shape[0] != batch:
        raise ValueError(
            f'patch_affinity_refine: affinity {tuple(affinity.shape)} does not '
            f'match maps {tuple(maps.shape)} ({h}x{w} patches)'
        )
    refined = torch.einsum('bij,bcj->bci', affinity.to(maps.dtype), maps.flatten(2))
    return refined.view(batch, channels, h, w)
