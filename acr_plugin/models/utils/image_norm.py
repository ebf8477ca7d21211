"""mmseg's mean/std normalisation of image batches, undone and redone.

``SegDataPreProcessor`` feeds models ``(255 * x - mean) / std`` (RGB, means and
stds in 0..255 units); :func:`denormalize` maps such a batch back to [0, 1]
(for augmentations made inside a model, or images for a dense CRF) and
:func:`normalize` maps [0, 1] images forward again.
"""

from typing import Sequence

import torch
from torch import Tensor


def _channel_stats(values: Sequence[float], images: Tensor, name: str) -> Tensor:
    stats = torch.as_tensor(values, dtype=images.dtype, device=images.device).flatten()
    if stats.numel() != images.shape[1]:
        raise ValueError(
            f'{name}: needs one value per channel ({images.shape[1]}), got '
            f'{stats.numel()}'
        )
    return stats.view(1, -1, 1, 1)


def denormalize(images: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """Undo mmseg's ``SegDataPreProcessor`` normalisation into [0, 1].

    ``x * std / 255 + mean / 255``, clamped to [0, 1] (zero-padded borders of
    the normalised batch become ``mean / 255``).

    Args:
        images (Tensor): ``(B, C, H, W)`` normalised images (already RGB).
        mean (Sequence[float]): Per-channel mean in 0..255 units.
        std (Sequence[float]): Per-channel std in 0..255 units.

    Returns:
        Tensor: Images in [0, 1].
    """
    mean_t = _channel_stats(mean, images, 'denormalize mean')
    std_t = _channel_stats(std, images, 'denormalize std')
    return ((images * std_t + mean_t) / 255.0).clamp(0.0, 1.0)


def normalize(images01: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """Normalise [0, 1] images like ``SegDataPreProcessor``.

    Args:
        images01 (Tensor): ``(B, C, H, W)`` images in [0, 1].
        mean (Sequence[float]): Per-channel mean in 0..255 units.
        std (Sequence[float]): Per-channel std in 0..255 units.

    Returns:
        Tensor: ``(255 * x - mean) / std``.
    """
    mean_t = _channel_stats(mean, images01, 'normalize mean')
    std_t = _channel_stats(std, images01, 'normalize std')
    return (images01 * 255.0 - mean_t) / std_t
