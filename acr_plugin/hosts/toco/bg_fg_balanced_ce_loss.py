"""Background/foreground balanced cross-entropy of ToCo's segmentation branch.

``0.5 * mean CE over background pixels (label 0) + 0.5 * mean CE over
foreground pixels (0 < label != ignore)``; an empty group contributes 0, so
pseudo labels without any foreground (or background) pixel stay finite.
"""

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmseg.registry import MODELS
from torch import Tensor


def _check_ce_inputs(logits: Tensor, labels: Tensor) -> None:
    if logits.dim() != 4:
        raise ValueError(
            'bg_fg_balanced_cross_entropy: logits must be (B, K, H, W), got '
            f'shape {tuple(logits.shape)}'
        )
    if labels.dim() != 3 or labels.shape[0] != logits.shape[0]:
        raise ValueError(
            f'bg_fg_balanced_cross_entropy: labels must be (B, H, W) with '
            f'B = {logits.shape[0]} (from logits), got shape '
            f'{tuple(labels.shape)}'
        )
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(
            'bg_fg_balanced_cross_entropy: labels must be an integer (long) '
            f'tensor of class indices, got {labels.dtype}'
        )


def bg_fg_balanced_cross_entropy(
    logits: Tensor, labels: Tensor, ignore_index: int = 255
) -> Tensor:
    """Cross-entropy averaged separately over background and foreground.

    Args:
        logits (Tensor): ``(B, K, H, W)`` segmentation logits (class 0 =
            background). Resized bilinearly (``align_corners=False``) to the
            labels' size when the sizes differ.
        labels (Tensor): ``(B, H', W')`` long labels; ``ignore_index``
            pixels are left out.
        ignore_index (int): Ignored label. Defaults to 255.

    Returns:
        Tensor: Scalar loss.

    Raises:
        ValueError: If the shapes or the label dtype are wrong, or a label is
            neither ``ignore_index`` nor in ``[0, K)``.
    """
    _check_ce_inputs(logits, labels)
    num_classes = logits.shape[1]
    labels = labels.long()
    valid = labels != ignore_index
    if ((labels < 0) | (labels >= num_classes))[valid].any():
        raise ValueError(
            f'bg_fg_balanced_cross_entropy: labels hold values outside '
            f'[0, {num_classes}) that are not ignore_index={ignore_index}'
        )
    if logits.shape[2:] != labels.shape[1:]:
        logits = F.interpolate(
            logits, size=labels.shape[1:], mode='bilinear', align_corners=False
        )
    ce = F.cross_entropy(
        logits, labels.masked_fill(~valid, 0), reduction='none'
    )  # (B, H, W)
    background = valid & (labels == 0)
    foreground = valid & ~background
    zero = ce.new_zeros(())
    bg = torch.where(background, ce, zero).sum() / background.sum().clamp(min=1)
    fg = torch.where(foreground, ce, zero).sum() / foreground.sum().clamp(min=1)
    return 0.5 * bg + 0.5 * fg


@MODELS.register_module()
class BgFgBalancedCELoss(nn.Module):
    """Background/foreground balanced cross-entropy (mmseg loss contract).

    See :func:`bg_fg_balanced_cross_entropy`.

    Usable as a decode head's ``loss_decode`` (``BaseDecodeHead.loss_by_feat``
    calls it with ``weight=None, ignore_index=head.ignore_index``).

    Args:
        loss_weight (float): Multiplier, read at call time (a hook may
            change it). Defaults to 0.1.
        ignore_index (int): Ignored label unless ``forward`` is given one.
            Defaults to 255.
        loss_name (str): Log key; must start with ``loss_``. Defaults to
            ``'loss_seg'``.
    """

    def __init__(
        self,
        loss_weight: float = 0.1,
        ignore_index: int = 255,
        loss_name: str = 'loss_seg',
    ) -> None:
        super().__init__()
        if not loss_name.startswith('loss_'):
            raise ValueError(
                f'BgFgBalancedCELoss: loss_name must start with "loss_": {loss_name}'
            )
        self.loss_weight = loss_weight
        self.ignore_index = ignore_index
        self._loss_name = loss_name

    def forward(
        self,
        seg_logits: Tensor,
        seg_labels: Tensor,
        weight: Optional[Tensor] = None,
        ignore_index: Optional[int] = None,
        **kwargs,
    ) -> Tensor:
        """Weighted balanced CE of ``(B, K, H, W)`` logits vs ``(B, H', W')``.

        Args:
            seg_logits (Tensor): ``(B, K, H, W)`` logits.
            seg_labels (Tensor): ``(B, H', W')`` long labels.
            weight (Tensor, optional): Per-pixel weights (mmseg's pixel
                samplers); not supported, must be None. Defaults to None.
            ignore_index (int, optional): Overrides ``self.ignore_index``
                (``BaseDecodeHead.loss_by_feat`` passes the head's).
                Defaults to None.
        """
        if weight is not None:
            raise ValueError(
                'BgFgBalancedCELoss: per-pixel weight (a pixel sampler) is not '
                "supported; remove the decode head's sampler"
            )
        if ignore_index is None:
            ignore_index = self.ignore_index
        return self.loss_weight * bg_fg_balanced_cross_entropy(
            seg_logits, seg_labels, ignore_index
        )

    @property
    def loss_name(self) -> str:
        return self._loss_name
