"""Multilabel soft-margin loss (MLSM) for image-level labels."""

import torch.nn as nn
import torch.nn.functional as F
from mmseg.registry import MODELS
from torch import Tensor


def multilabel_soft_margin(
    logits: Tensor, labels: Tensor, reduction: str = 'mean'
) -> Tensor:
    """BCE-with-logits averaged over classes, per sample.

    Equals ``torch.nn.MultiLabelSoftMarginLoss``: ``-mean_c [y log s(z) +
    (1 - y) log(1 - s(z))]``.

    Args:
        logits (Tensor): ``(B, C)`` class logits.
        labels (Tensor): ``(B, C)`` multi-hot targets.
        reduction (str): ``'none'`` (per sample), ``'mean'`` or ``'sum'``.
    """
    if logits.shape != labels.shape:
        raise ValueError(
            f'logits {tuple(logits.shape)} and labels '
            f'{tuple(labels.shape)} must have the same shape'
        )
    per_sample = F.binary_cross_entropy_with_logits(
        logits, labels.to(logits.dtype), reduction='none'
    ).mean(dim=1)
    if reduction == 'none':
        return per_sample
    if reduction == 'mean':
        return per_sample.mean()
    if reduction == 'sum':
        return per_sample.sum()
    raise ValueError(f'unknown reduction "{reduction}"')


@MODELS.register_module()
class MultiLabelSoftMarginLoss(nn.Module):
    """Multilabel soft-margin loss on image-level labels (mmseg loss contract).

    Args:
        reduction (str): ``'none'``, ``'mean'`` or ``'sum'``. Defaults to
            ``'mean'``.
        loss_weight (float): Multiplier. Defaults to 1.0.
        loss_name (str): Log key; must start with ``loss_``. Defaults to
            ``'loss_cls'``.
    """

    def __init__(
        self,
        reduction: str = 'mean',
        loss_weight: float = 1.0,
        loss_name: str = 'loss_cls',
    ) -> None:
        super().__init__()
        if not loss_name.startswith('loss_'):
            raise ValueError(f'loss_name must start with "loss_": {loss_name}')
        self.reduction = reduction
        self.loss_weight = loss_weight
        self._loss_name = loss_name

    def forward(self, logits: Tensor, labels: Tensor, **kwargs) -> Tensor:
        """Weighted MLSM of ``logits`` against multi-hot ``labels``."""
        return self.loss_weight * multilabel_soft_margin(logits, labels, self.reduction)

    @property
    def loss_name(self) -> str:
        return self._loss_name
