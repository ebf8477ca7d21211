"""Photometric augmentation of ToCo's main view, as a pipeline transform."""

import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmseg.registry import TRANSFORMS

from acr_plugin.models.utils.image_augment import (
    color_jitter,
    gaussian_blur,
    random_grayscale,
)


@TRANSFORMS.register_module()
class RandomColorJitter(BaseTransform):
    """Colour jitter, random grayscale and Gaussian blur of ``results['img']``.

    ToCo's main view gets colour jitter (0.4, 0.4, 0.2, 0.1) with probability
    0.8, grayscale with probability 0.2 and a Gaussian blur (Ru et al., CVPR 2023,
    3). The maths is that of :mod:`acr_plugin.models.utils.image_augment`
    (:func:`color_jitter` -> :func:`random_grayscale` ->
    :func:`gaussian_blur`), applied to the image converted to RGB in [0, 1];
    the result is rounded back to uint8 BGR. Segmentation maps are untouched.

    Randomness: each call seeds a ``torch.Generator`` from numpy's global RNG
    (like the other mmcv transforms), so ``np.random.seed`` makes it
    reproducible.

    Required Keys:

    - img (np.ndarray): ``(H, W, 3)`` uint8 in BGR order (mmcv's
      ``LoadImageFromFile`` default).

    Modified Keys:

    - img

    Args:
        brightness (float): Brightness strength. Defaults to 0.4.
        contrast (float): Contrast strength. Defaults to 0.4.
        saturation (float): Saturation strength. Defaults to 0.2.
        hue (float): Hue strength in turns (<= 0.5). Defaults to 0.1.
        prob (float): Probability of the colour jitter. Defaults to 0.8.
        gray_prob (float): Probability of the grayscale conversion.
            Defaults to 0.2.
        blur_prob (float): Probability of the Gaussian blur (sigma drawn
            from ``U(0.1, 2.0)`` pixels, as ToCo). Defaults to 0.0.
    """

    def __init__(
        self,
        brightness: float = 0.4,
        contrast: float = 0.4,
        saturation: float = 0.2,
        hue: float = 0.1,
        prob: float = 0.8,
        gray_prob: float = 0.2,
        blur_prob: float = 0.0,
    ) -> None:
        for name, value in (
            ('prob', prob),
            ('gray_prob', gray_prob),
            ('blur_prob', blur_prob),
        ):
            if not 0.0 <= value <= 1.0:
                raise ValueError(
                    f'RandomColorJitter: {name} must lie in [0, 1], got {value}'
                )
        if min(brightness, contrast, saturation, hue) < 0 or hue > 0.5:
            raise ValueError(
                'RandomColorJitter: strengths must be >= 0 and hue <= 0.5, got '
                f'brightness={brightness}, contrast={contrast}, '
                f'saturation={saturation}, hue={hue}'
            )
        self.brightness = brightness
        self.contrast = contrast
        self.saturation = saturation
        self.hue = hue
        self.prob = prob
        self.gray_prob = gray_prob
        self.blur_prob = blur_prob

    def transform(self, results: dict) -> dict:
        """Augment ``results['img']`` in place of the original.

        Args:
            results (dict): Result dict with a loaded ``img``.

        Returns:
            dict: ``results`` with the augmented ``img``.
        """
        img = results.get('img')
        source = results.get('img_path', '(in memory)')
        if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3:
            shape = getattr(img, 'shape', None)
            raise ValueError(
                f'RandomColorJitter needs results["img"] as an (H, W, 3) BGR '
                f'array (image {source}), got shape {shape}'
            )
        if img.dtype != np.uint8:
            raise TypeError(
                f'RandomColorJitter needs a uint8 image (image {source}), got '
                f'{img.dtype}: put it right after LoadImageFromFile'
            )
        if self.prob == 0 and self.gray_prob == 0 and self.blur_prob == 0:
            return results
        generator = torch.Generator().manual_seed(int(np.random.randint(2**31)))
        rgb = np.ascontiguousarray(img[:, :, ::-1].transpose(2, 0, 1))
        x = torch.from_numpy(rgb).float().div_(255.0)[None]
        x = color_jitter(
            x,
            brightness=self.brightness,
            contrast=self.contrast,
            saturation=self.saturation,
            hue=self.hue,
            p=self.prob,
            generator=generator,
        )
        x = random_grayscale(x, p=self.gray_prob, generator=generator)
        x = gaussian_blur(x, p=self.blur_prob, generator=generator)
        out = x[0].mul(255.0).round_().clamp_(0, 255).to(torch.uint8).numpy()
        results['img'] = np.ascontiguousarray(out.transpose(1, 2, 0)[:, :, ::-1])
        return results

    def __repr__(self) -> str:
        return (
            f'{self.__class__.__name__}(brightness={self.brightness}, '
            f'contrast={self.contrast}, saturation={self.saturation}, '
            f'hue={self.hue}, prob={self.prob}, gray_prob={self.gray_prob}, '
            f'blur_prob={self.blur_prob})'
        )
