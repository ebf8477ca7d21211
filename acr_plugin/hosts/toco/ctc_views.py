"""The views of ToCo's class-token contrast (Ru et al., CVPR 2023, Sec. 3.3).

Made on the fly inside the model from the batch with the generic ops of
``acr_plugin.models.utils.image_augment`` (float RGB in [0, 1], independent
parameters per sample, an optional ``torch.Generator``).
"""

from typing import Optional, Sequence, Union

import torch
from torch import Tensor

from acr_plugin.models.utils.image_augment import (
    check_images,
    color_jitter,
    gaussian_blur,
    random_grayscale,
    random_hflip,
    random_resized_crop,
)


def ctc_global_view(
    images: Tensor,
    size: Union[int, Sequence[int]],
    generator: Optional[torch.Generator] = None,
) -> Tensor:
    """ToCo's second global view of a batch.

    ``random_resized_crop`` (scale 0.4-1) -> horizontal flip (p 0.5) ->
    colour jitter (0.4, 0.4, 0.2, 0.1; p 0.8) -> grayscale (p 0.2) ->
    Gaussian blur (sigma 0.1-2, p 1.0).

    Args:
        images (Tensor): ``(B, 3, H, W)`` RGB in [0, 1].
        size (int | Sequence[int]): Output size.
        generator (torch.Generator, optional): Source of randomness.

    Returns:
        Tensor: ``(B, 3, size, size)`` views in [0, 1].
    """
    check_images(images, 'ctc_global_view')
    x = random_resized_crop(images, size, scale=(0.4, 1.0), generator=generator)
    x = random_hflip(x, p=0.5, generator=generator)
    x = color_jitter(x, p=0.8, generator=generator)
    x = random_grayscale(x, p=0.2, generator=generator)
    return gaussian_blur(x, p=1.0, generator=generator)


def ctc_local_view(
    crops: Tensor, generator: Optional[torch.Generator] = None
) -> Tensor:
    """ToCo's local-view augmentation.

    Horizontal flip (p 0.5) -> colour jitter (p 0.8) -> grayscale (p 0.2) ->
    Gaussian blur (p 0.5). ToCo applies it to a copy of the whole image and
    cuts the local crops from that copy.

    Args:
        crops (Tensor): ``(B, 3, H, W)`` images or crops in [0, 1], or
            ``(B, N, 3, H, W)`` (every image gets its own parameters).
        generator (torch.Generator, optional): Source of randomness.

    Returns:
        Tensor: Augmented crops, same shape.
    """
    shape = crops.shape
    if crops.dim() == 5:
        crops = crops.flatten(0, 1)
    check_images(crops, 'ctc_local_view')
    x = random_hflip(crops, p=0.5, generator=generator)
    x = color_jitter(x, p=0.8, generator=generator)
    x = random_grayscale(x, p=0.2, generator=generator)
    x = gaussian_blur(x, p=0.5, generator=generator)
    return x.reshape(shape)
