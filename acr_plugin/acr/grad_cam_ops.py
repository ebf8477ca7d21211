"""Pure tensor maths of class-token-gradient localisation (GETAM-style).

The class-token-gradient localisation of ACR (Sun et al., arXiv 2308.04321): for a class
``c`` with logit ``z_c`` and the post-softmax attention ``A^l`` ``(B, heads, N, N)`` of
each block ``l``, let ``g^l = d z_c / d A^l``. With ``r`` the class-token row and ``P``
prefix tokens, a layer scores the patches ``A^l[r, P:]`` by

* ``'grad'``: ``G = mean_h ReLU(g)``,
* ``'cam_grad'``: ``mean_h ReLU(g * A)``,
* ``'grad_s'``: ``G * G``,
* ``'cam_grad_s'``: ``mean_h ReLU(g * A) * G``,

and the map is ``M_c = ReLU(sum_{l >= start} score^l)`` ``(B, N - P)``.
Optional affinity refinement: ``M_c <- Pa M_c`` with ``Pa`` the head-averaged
patch-to-patch attention ``A^l[P:, P:]`` summed over every given layer, not
renormalised.

Only the needed row of each gradient and attention is read, so the cost is
``O(heads * N)`` per layer and class. Functions come in a per-class form
(:func:`grad_cam_maps`) and a batched form (:func:`grad_cam_maps_batched`)
whose gradients have a leading class-slot dimension ``K``.
"""

from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

#: the map variants of the official script (argparse default ``cam_grad_s``,
#: the ACR script uses ``grad``)
GRAD_CAM_VARIANTS = ('grad', 'cam_grad', 'grad_s', 'cam_grad_s')

#: a class-token row: one int for every map, or one per map
PrefixRow = Union[int, Tensor]


def resolve_start_layer(start_layer: int, num_layers: int) -> int:
    """Non-negative index of the first summed layer.

    Args:
        start_layer (int): Index into the layers, negative counting from the
            end (``-2`` of 12 layers is 10).
        num_layers (int): Number of layers.

    Returns:
        int: ``start_layer % num_layers``.

    Raises:
        IndexError: If ``start_layer`` is out of range.
    """
    if not -num_layers <= start_layer < num_layers:
        raise IndexError(
            f'start_layer {start_layer} is out of range for {num_layers} '
            'attention layers'
        )
    return start_layer % num_layers


def check_variant(variant: str) -> None:
    """Raise a ``ValueError`` for an unknown map variant."""
    if variant not in GRAD_CAM_VARIANTS:
        raise ValueError(
            f'unknown gradient-CAM variant "{variant}" (expected one of '
            f'{GRAD_CAM_VARIANTS})'
        )


def select_rows(x: Tensor, rows: PrefixRow, num_prefix: int) -> Tensor:
    """The class-token row(s) of attention-shaped tensors, patch columns only.

    Args:
        x (Tensor): ``(*lead, heads, N, N)`` with ``lead`` the map dimensions
            (``(B,)`` or ``(K, B)``), or ``(B, heads, N, N)`` shared by every
            class slot when ``rows`` has more dimensions than one.
        rows (int | Tensor): Row for every map, or a long tensor of row
            indices shaped like the map dimensions (``(B,)`` or ``(K, B)``).
        num_prefix (int): Prefix tokens ``P`` (columns ``P:`` are kept).

    Returns:
        Tensor: ``(*map_dims, heads, N - P)``.
    """
    if isinstance(rows, int):
        return x[..., rows, num_prefix:]
    if x.dim() - 3 == rows.dim():
        # one row per map: gather it along the query dimension
        heads, _, width = x.shape[-3:]
        index = rows.to(x.device).view(*rows.shape, 1, 1, 1)
        index = index.expand(*rows.shape, heads, 1, width)
        return x.gather(-2, index).squeeze(-2)[..., num_prefix:]
    if x.dim() == 4 and rows.dim() == 2:
        # attention (B, h, N, N) shared by the K class slots: (K, B, h, N - P)
        batch = torch.arange(x.shape[0], device=x.device)
        permuted = x.transpose(1, 2)  # (B, N, h, N)
        return permuted[batch[None, :], rows.to(x.device)][..., num_prefix:]
    raise ValueError(
        f'select_rows: cannot index a tensor of shape {tuple(x.shape)} with '
        f'rows of shape {tuple(rows.shape)}'
    )


def layer_scores(attn_rows: Tensor, grad_rows: Tensor, variant: str) -> Tensor:
    """Score of one layer from its class rows.

    Args:
        attn_rows (Tensor): ``A[r, P:]`` ``(*map_dims, heads, Np)``
            (broadcastable to ``grad_rows``).
        grad_rows (Tensor): ``g[r, P:]`` ``(*map_dims, heads, Np)``.
        variant (str): One of :data:`GRAD_CAM_VARIANTS`.

    Returns:
        Tensor: ``(*map_dims, Np)``.
    """
    check_variant(variant)
    if variant == 'grad':
        return grad_rows.clamp(min=0).mean(dim=-2)
    cam = (grad_rows * attn_rows).clamp(min=0).mean(dim=-2)
    if variant == 'cam_grad':
        return cam
    grad = grad_rows.clamp(min=0).mean(dim=-2)
    return grad * grad if variant == 'grad_s' else cam * grad


def affinity_matrix(attns: Sequence[Tensor], num_prefix: int) -> Tensor:
    """Patch-to-patch affinity: head-averaged ``A[P:, P:]`` summed over layers.

    Args:
        attns (Sequence[Tensor]): ``(B, heads, N, N)`` per layer (all layers
            of the model, for the official refinement).
        num_prefix (int): Prefix tokens ``P``.

    Returns:
        Tensor: ``(B, Np, Np)``, not renormalised.
    """
    total = None
    for attn in attns:
        block = attn[:, :, num_prefix:, num_prefix:].mean(dim=1)
        total = block if total is None else total + block
    if total is None:
        raise ValueError('affinity_matrix: no attention given')
    return total


def _check_lists(attns: Sequence[Tensor], grads: Sequence[Optional[Tensor]]) -> None:
    if len(attns) != len(grads):
        raise ValueError(
            f'grad_cam_maps: {len(attns)} attention maps but {len(grads)} '
            'gradients; give one gradient (or None) per layer'
        )
    if not attns:
        raise ValueError('grad_cam_maps: no layer given')


def grad_cam_maps_batched(
    attns: Sequence[Tensor],
    grads: Sequence[Optional[Tensor]],
    variant: str = 'grad',
    start_layer: int = -2,
    num_prefix: int = 1,
    prefix_row: PrefixRow = 0,
    refine: bool = False,
) -> Tensor:
    """Gradient maps of ``K`` class slots at once.

    Args:
        attns (Sequence[Tensor]): Post-softmax attention ``(B, heads, N, N)``
            per layer, in block order.
        grads (Sequence[Tensor | None]): ``d z / d A`` per layer with a
            leading class-slot dimension, ``(K, B, heads, N, N)``; None means
            zero (and is expected for layers before ``start_layer``).
        variant (str): One of :data:`GRAD_CAM_VARIANTS`. Defaults to
            ``'grad'``.
        start_layer (int): First summed layer, an index into ``attns``
            (negative counts from the end). Defaults to -2.
        num_prefix (int): Prefix tokens ``P`` before the patches. Defaults
            to 1.
        prefix_row (int | Tensor): Class-token row read in every layer: one
            int, or a long tensor ``(K, B)`` (e.g. row ``c`` for class ``c``
            with one class token per class). Defaults to 0.
        refine (bool): Multiply by the affinity of *every* layer in
            ``attns`` (:func:`affinity_matrix`). Defaults to False.

    Returns:
        Tensor: ``(K, B, N - P)`` non-negative maps (all zero if every
        gradient is None; ``K`` is then taken from ``prefix_row``, or 1).
    """
    check_variant(variant)
    _check_lists(attns, grads)
    start = resolve_start_layer(start_layer, len(attns))
    template = next((g for g in grads[start:] if g is not None), None)
    if template is None:
        batch, _, tokens, _ = attns[-1].shape
        num_slots = prefix_row.shape[0] if isinstance(prefix_row, Tensor) else 1
        return attns[-1].new_zeros(num_slots, batch, tokens - num_prefix)
    if template.dim() != 5:
        raise ValueError(
            'grad_cam_maps_batched expects gradients (K, B, heads, N, N), got '
            f'shape {tuple(template.shape)}'
        )
    total = None
    for attn, grad in zip(attns[start:], grads[start:]):
        if grad is None:
            continue
        grad_rows = select_rows(grad, prefix_row, num_prefix)
        attn_rows = (
            select_rows(attn, prefix_row, num_prefix)
            if isinstance(prefix_row, Tensor)
            else attn[:, :, prefix_row, num_prefix:].unsqueeze(0)
        )
        score = layer_scores(attn_rows, grad_rows, variant)
        total = score if total is None else total + score
    maps = total.clamp(min=0)
    if refine:
        affinity = affinity_matrix(attns, num_prefix).to(maps.dtype)
        maps = torch.einsum('bij,kbj->kbi', affinity, maps)
    return maps


def grad_cam_maps(
    attns: Sequence[Tensor],
    grads: Sequence[Optional[Tensor]],
    variant: str = 'grad',
    start_layer: int = -2,
    num_prefix: int = 1,
    prefix_row: PrefixRow = 0,
    refine: bool = False,
) -> Tensor:
    """Gradient map of one class (one logit per image).

    The per-class form of :func:`grad_cam_maps_batched` (same arguments and
    defaults) without the class-slot dimension: ``grads`` are ``d z_c / d A``
    per layer, ``(B, heads, N, N)`` (None means zero), and ``prefix_row`` is
    one int or a long tensor ``(B,)``.

    Returns:
        Tensor: ``(B, N - P)`` non-negative map.
    """
    _check_lists(attns, grads)
    batched = [None if g is None else g.unsqueeze(0) for g in grads]
    rows = prefix_row.unsqueeze(0) if isinstance(prefix_row, Tensor) else prefix_row
    return grad_cam_maps_batched(
        attns, batched, variant, start_layer, num_prefix, rows, refine
    )[0]


def class_slots(
    class_sets: Sequence[Sequence[int]], device: Optional[torch.device] = None
) -> Tensor:
    """Class-slot table of a batch: slot ``k`` of image ``b`` = its k-th class.

    Args:
        class_sets (Sequence[Sequence[int]]): Classes to explain per image.
        device (torch.device, optional): Device of the table.

    Returns:
        Tensor: Long ``(K, B)`` with ``K`` the largest set; unused slots -1.
    """
    num_slots = max((len(s) for s in class_sets), default=0)
    table = torch.full((num_slots, len(class_sets)), -1, dtype=torch.long)
    for b, classes in enumerate(class_sets):
        for k, c in enumerate(classes):
            table[k, b] = int(c)
    return table.to(device) if device is not None else table


def slot_grad_outputs(slots: Tensor, num_classes: int, dtype: torch.dtype) -> Tensor:
    """One-hot ``grad_outputs`` ``(K, B, C)`` of a class-slot table.

    Unused slots (-1) get all-zero rows.
    """
    valid = slots >= 0
    onehot = F.one_hot(slots.clamp(min=0), num_classes).to(dtype)
    return onehot * valid.unsqueeze(-1).to(dtype)


def scatter_slot_maps(maps: Tensor, slots: Tensor, num_classes: int) -> Tensor:
    """Place per-slot maps ``(K, B, ...)`` into per-class maps ``(B, C, ...)``.

    Classes without a slot stay zero.
    """
    num_slots, batch = slots.shape
    out = maps.new_zeros(batch, num_classes, *maps.shape[2:])
    for k in range(num_slots):
        for b in range(batch):
            c = int(slots[k, b])
            if c >= 0:
                out[b, c] = maps[k, b]
    return out


def upsample_token_maps(
    maps: Tensor, grid: Tuple[int, int], size: Tuple[int, int]
) -> Tensor:
    """Reshape ``(B, C, gh * gw)`` token maps to the grid and upsample.

    Bilinear with ``align_corners=True`` (as the official script).

    Returns:
        Tensor: ``(B, C, H, W)``.
    """
    batch, channels, tokens = maps.shape
    if tokens != grid[0] * grid[1]:
        raise ValueError(
            f'upsample_token_maps: {tokens} tokens do not fill a {grid[0]}x'
            f'{grid[1]} grid'
        )
    maps = maps.view(batch, channels, *grid)
    return F.interpolate(maps, size=tuple(size), mode='bilinear', align_corners=True)


def flip_merge_sum(maps: Tensor, flip: bool) -> Tensor:
    """Sum the plain half and the mirrored-back flipped half of a batch.

    Args:
        maps (Tensor): ``(2B, C, H, W)`` (plain views first) when ``flip``,
            else ``(B, C, H, W)`` (returned as is).
        flip (bool): Whether the batch holds flipped views.
    """
    if not flip:
        return maps
    plain, mirrored = maps.chunk(2)
    return plain + mirrored.flip(-1)


__all__ = [
    'GRAD_CAM_VARIANTS',
    'affinity_matrix',
    'check_variant',
    'class_slots',
    'flip_merge_sum',
    'grad_cam_maps',
    'grad_cam_maps_batched',
    'layer_scores',
    'resolve_start_layer',
    'scatter_slot_maps',
    'select_rows',
    'slot_grad_outputs',
    'upsample_token_maps',
]
