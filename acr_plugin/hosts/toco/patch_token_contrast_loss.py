"""Patch token contrast (PTC) of ToCo (Ru et al., CVPR 2023).

Tokens of one image whose pseudo labels agree are pulled together, tokens
whose labels differ are pushed apart, through the absolute cosine similarity
``S_ij = |cos(F_i, F_j)|`` of every ordered pair ``i != j`` of non-ignored
tokens of the same image (targets ``a_ij = 1`` for equal labels, ``0``
otherwise)::

    L = 0.5 * (1 - sum_{a=1} S / (N+ + 1)) + 0.5 * sum_{a=0} S / (N- + 1)

with ``N+`` / ``N-`` the numbers of positive / negative ordered pairs of the
whole batch.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmseg.registry import MODELS
from torch import Tensor


def _check_ptc_inputs(tokens: Tensor, labels: Tensor) -> None:
    if tokens.dim() != 4:
        raise ValueError(
            'patch_token_contrast: tokens must be (B, D, h, w), got shape '
            f'{tuple(tokens.shape)}'
        )
    if labels.dim() != 3:
        raise ValueError(
            'patch_token_contrast: labels must be (B, h, w), got shape '
            f'{tuple(labels.shape)}'
        )
    b, _, h, w = tokens.shape
    if tuple(labels.shape) != (b, h, w):
        raise ValueError(
            f'patch_token_contrast: labels {tuple(labels.shape)} must match '
            f'the batch and token grid of tokens {tuple(tokens.shape)}, i.e. '
            f'be {(b, h, w)}'
        )
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(
            f'patch_token_contrast: labels must be an integer (long) tensor of '
            f'class indices, got {labels.dtype}'
        )


def patch_token_contrast(
    tokens: Tensor, labels: Tensor, ignore_index: int = 255
) -> Tensor:
    """PTC loss of patch tokens against token-level pseudo labels.

    Args:
        tokens (Tensor): ``(B, D, h, w)`` patch tokens.
        labels (Tensor): ``(B, h, w)`` long pseudo labels (0 = background,
            ``ignore_index`` = ignored) at token resolution.
        ignore_index (int): Label of tokens left out of every pair.
            Defaults to 255.

    Returns:
        Tensor: Scalar loss. Without any valid pair it is ``0.5`` (finite,
        zero gradient).

    Raises:
        ValueError: If the shapes or the label dtype are wrong.
    """
    _check_ptc_inputs(tokens, labels)
    b, _, h, w = tokens.shape
    feats = F.normalize(tokens.flatten(2).transpose(1, 2), dim=-1)  # (B, N, D)
    sim = torch.bmm(feats, feats.transpose(1, 2)).abs()  # (B, N, N)

    flat = labels.reshape(b, h * w)
    valid = flat != ignore_index
    not_self = ~torch.eye(h * w, dtype=torch.bool, device=tokens.device)
    pairs = valid[:, :, None] & valid[:, None, :] & not_self
    same = flat[:, :, None] == flat[:, None, :]
    positive = pairs & same
    negative = pairs & ~same

    zero = sim.new_zeros(())
    pos_mean = torch.where(positive, sim, zero).sum() / (positive.sum() + 1)
    neg_mean = torch.where(negative, sim, zero).sum() / (negative.sum() + 1)
    return 0.5 * (1 - pos_mean) + 0.5 * neg_mean


@MODELS.register_module()
class PatchTokenContrastLoss(nn.Module):
    """ToCo's patch token contrast loss (mmseg loss contract).

    See :func:`patch_token_contrast`.

    Args:
        loss_weight (float): Multiplier, read at call time (a hook may
            change it). Defaults to 0.2.
        ignore_index (int): Label of ignored tokens. Defaults to 255.
        loss_name (str): Log key; must start with ``loss_``. Defaults to
            ``'loss_ptc'``.
    """

    def __init__(
        self,
        loss_weight: float = 0.2,
        ignore_index: int = 255,
        loss_name: str = 'loss_ptc',
    ) -> None:
        super().__init__()
        if not loss_name.startswith('loss_'):
            raise ValueError(
                f'PatchTokenContrastLoss: loss_name must start with "loss_": '
                f'{loss_name}'
            )
        self.loss_weight = loss_weight
        self.ignore_index = ignore_index
        self._loss_name = loss_name

    def forward(self, tokens: Tensor, token_labels: Tensor, **kwargs) -> Tensor:
        """Weighted PTC of ``tokens`` ``(B, D, h, w)`` vs ``(B, h, w)`` labels."""
        return self.loss_weight * patch_token_contrast(
            tokens, token_labels, self.ignore_index
        )

    @property
    def loss_name(self) -> str:
        return self._loss_name
