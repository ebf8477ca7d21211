"""Losses shared by several methods (the image-level multi-label loss)."""

from .multilabel_soft_margin_loss import (
    MultiLabelSoftMarginLoss,
    multilabel_soft_margin,
)

__all__ = ['MultiLabelSoftMarginLoss', 'multilabel_soft_margin']
