"""Geometric second views of an image batch.

:func:`make_view` draws one geometric transform per call (flip, rescale,
token-aligned crop, or a sequence of them) and returns the view with its
:class:`~.token_alignment.TokenAlignment` to the input. Randomness comes
only through an optional ``torch.Generator``.
"""

from collections.abc import Mapping
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from .token_alignment import (
    Grid,
    TokenAlignment,
    compose_alignments,
    crop_alignment,
    flip_alignment,
    rescale_alignment,
)

ViewConfig = Union[str, Mapping, Sequence[Union[str, Mapping]]]

#: geometric view kinds understood by :func:`make_view`
VIEW_KINDS = ('flip', 'rescale', 'crop')


def _uniform(low: float, high: float, generator: Optional[torch.Generator]) -> float:
    return float(low + (high - low) * torch.rand((), generator=generator))


def _grid_of(inputs: Tensor, patch_size: int) -> Grid:
    if inputs.dim() != 4:
        raise ValueError(f'make_view: inputs must be (B, C, H, W), got {inputs.shape}')
    h, w = inputs.shape[-2:]
    if h % patch_size or w % patch_size:
        raise ValueError(
            f'make_view: input size ({h}, {w}) is not a multiple of the patch '
            f'size {patch_size}'
        )
    return h // patch_size, w // patch_size


def _make_single_view(
    inputs: Tensor,
    kind: str,
    patch_size: int,
    generator: Optional[torch.Generator],
    scale_range: Sequence[float] = (0.75, 1.25),
    max_offset: int = 1,
    mode: str = 'bilinear',
) -> Tuple[Tensor, TokenAlignment]:
    h1, w1 = _grid_of(inputs, patch_size)
    if kind == 'flip':
        return inputs.flip(-1), flip_alignment(h1, w1)
    if kind == 'rescale':
        low, high = float(scale_range[0]), float(scale_range[1])
        if not 0 < low <= high:
            raise ValueError(f'make_view: bad rescale scale_range {scale_range}')
        scale = _uniform(low, high, generator)
        h2 = max(1, round(h1 * scale))
        w2 = max(1, round(w1 * scale))
        view = F.interpolate(
            inputs,
            size=(h2 * patch_size, w2 * patch_size),
            mode='bilinear',
            align_corners=False,
        )
        return view, rescale_alignment((h1, w1), (h2, w2), mode=mode)
    if kind == 'crop':
        k = int(max_offset)
        if k < 0 or k >= min(h1, w1):
            raise ValueError(
                f'make_view: crop max_offset {max_offset} must be in [0, '
                f'{min(h1, w1) - 1}] for a {h1}x{w1} token grid'
            )
        dy, dx = (int(v) for v in torch.randint(0, k + 1, (2,), generator=generator))
        h2, w2 = h1 - k, w1 - k
        view = inputs[
            ...,
            dy * patch_size : (dy + h2) * patch_size,
            dx * patch_size : (dx + w2) * patch_size,
        ]
        return view, crop_alignment((h1, w1), (h2, w2), (dy, dx))
    raise ValueError(f'make_view: unknown view kind "{kind}" (one of {VIEW_KINDS})')


def make_view(
    inputs: Tensor,
    view: ViewConfig = 'flip',
    patch_size: int = 16,
    generator: Optional[torch.Generator] = None,
    **params,
) -> Tuple[Tensor, TokenAlignment]:
    """Make view 2 of an image batch and its token alignment to the batch.

    One transform is drawn per call and shared by the whole batch, so one
    alignment serves every sample.

    Kinds and their parameters:

    * ``'flip'``: horizontal flip (the official ACR pair).
    * ``'rescale'``: bilinear resize (align_corners=False) by a factor drawn
      uniformly from ``scale_range`` (default ``(0.75, 1.25)``), rounded per
      side to a whole number of patches (at least one); the alignment uses
      the true grids, so the rounding is exact. ``mode`` picks the
      alignment: ``'bilinear'`` (default) or ``'nearest'``.
    * ``'crop'``: a token-aligned crop ``max_offset`` tokens smaller on each
      side (default 1), i.e. ``(H - k * patch, W - k * patch)``, at an offset
      drawn uniformly from ``{0..k}`` per axis. View-1 tokens outside the crop
      are invalid in the alignment.

    Args:
        inputs (Tensor): ``(B, C, H, W)`` batch (view 1); ``H`` and ``W``
            multiples of ``patch_size``.
        view (str | dict | list): A kind, a config ``dict(type=kind,
            **params)``, or a sequence of those applied in order (e.g.
            ``[dict(type='crop', max_offset=2), 'flip']``); alignments are
            composed. Defaults to ``'flip'``.
        patch_size (int): ViT patch size. Defaults to 16.
        generator (torch.Generator, optional): Source of randomness.
            Defaults to None (global RNG).
        **params: Parameters for a plain-string ``view``.

    Returns:
        tuple[Tensor, TokenAlignment]: View 2 and its alignment to view 1.
    """
    if isinstance(view, (str, Mapping)):
        steps = [view]
    elif isinstance(view, Sequence) and len(view) > 0:
        steps = list(view)
    else:
        raise ValueError(f'make_view: bad view config {view!r}')
    current, alignment = inputs, None
    for step in steps:
        if isinstance(step, str):
            kind, kwargs = step, dict(params)
        elif isinstance(step, Mapping):
            kwargs = dict(step)
            if 'type' not in kwargs:
                raise ValueError(f'make_view: view config {dict(step)} has no "type"')
            kind = kwargs.pop('type')
        else:
            raise ValueError(f'make_view: bad view step {step!r}')
        try:
            current, step_alignment = _make_single_view(
                current, kind, patch_size, generator, **kwargs
            )
        except TypeError as err:
            raise ValueError(
                f'make_view: bad parameters {kwargs} for view "{kind}": {err}'
            ) from err
        alignment = (
            step_alignment
            if alignment is None
            else compose_alignments(alignment, step_alignment)
        )
    return current, alignment
