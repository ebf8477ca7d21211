"""Batch-wise photometric and geometric augmentation of image tensors.

Views made on the fly inside a model from the batch (ToCo's class-token
contrast views, ``acr_plugin.hosts.toco.ctc_views``), so these functions work
on float RGB images in [0, 1] of shape ``(B, 3, H, W)`` and draw *independent* random
parameters for every sample. Every function takes an optional
``torch.Generator`` (None uses torch's global RNG); random numbers are drawn on
the generator's device (the CPU by default) and moved to the images' device,
so a seeded generator gives the same views on every device.

Use :mod:`acr_plugin.models.utils.image_norm` (``denormalize`` /
``normalize``) to move between mmseg's mean/std-normalised batch and [0, 1].

One concept, batch-wise random augmentation of [0, 1] image tensors, in
three parts: the per-sample randomness and argument checks, the deterministic
colour / blur kernels, and the random transforms built on them (flip and
resized crop, colour jitter, grayscale, blur).
"""

import math
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

#: ITU-R BT.601 luma weights of R, G, B
LUMA_WEIGHTS = (0.299, 0.587, 0.114)

_Range = Union[float, Sequence[float]]


# --------------------------------------------------------------- randomness
def _device_of(generator: Optional[torch.Generator]) -> torch.device:
    return generator.device if generator is not None else torch.device('cpu')


def _uniform(
    num: int,
    low: float,
    high: float,
    generator: Optional[torch.Generator],
    like: Tensor,
) -> Tensor:
    """``num`` draws from ``U(low, high)`` with ``like``'s dtype and device."""
    u = torch.rand(num, generator=generator, device=_device_of(generator))
    return (low + (high - low) * u).to(device=like.device, dtype=like.dtype)


def _bernoulli(
    num: int, p: float, generator: Optional[torch.Generator], device: torch.device
) -> Tensor:
    """``num`` booleans, each True with probability ``p``."""
    u = torch.rand(num, generator=generator, device=_device_of(generator))
    return (u < p).to(device)


def check_images(images: Tensor, name: str) -> None:
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(
            f'{name}: images must be (B, 3, H, W), got {tuple(images.shape)}'
        )
    if not images.is_floating_point():
        raise TypeError(f'{name}: images must be float in [0, 1], got {images.dtype}')


def _check_prob(p: float, name: str) -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f'{name}: probability must lie in [0, 1], got {p}')


def _as_range(value: _Range, name: str) -> Tuple[float, float]:
    if isinstance(value, (int, float)):
        return float(value), float(value)
    low, high = (float(v) for v in value)
    if low > high:
        raise ValueError(f'{name}: range must be (min, max), got {tuple(value)}')
    return low, high


def _per_sample(values: Tensor) -> Tensor:
    return values.view(-1, 1, 1, 1)


# ----------------------------------------------------- deterministic kernels
def rgb_to_grayscale(images: Tensor) -> Tensor:
    """``(B, 1, H, W)`` luma of ``(B, 3, H, W)`` RGB images (BT.601)."""
    weights = images.new_tensor(LUMA_WEIGHTS).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True)


def adjust_brightness(images: Tensor, factor: Tensor) -> Tensor:
    """Scale every pixel by the per-sample ``factor`` ``(B,)``; clamp to [0, 1]."""
    return (images * _per_sample(factor)).clamp(0.0, 1.0)


def adjust_contrast(images: Tensor, factor: Tensor) -> Tensor:
    """Blend each image with its mean luma by ``factor`` ``(B,)``; clamp."""
    mean = rgb_to_grayscale(images).mean(dim=(1, 2, 3), keepdim=True)
    f = _per_sample(factor)
    return (f * images + (1 - f) * mean).clamp(0.0, 1.0)


def adjust_saturation(images: Tensor, factor: Tensor) -> Tensor:
    """Blend each pixel with its luma by ``factor`` ``(B,)``; clamp."""
    f = _per_sample(factor)
    return (f * images + (1 - f) * rgb_to_grayscale(images)).clamp(0.0, 1.0)


def rgb_to_hsv(images: Tensor) -> Tensor:
    """RGB in [0, 1] to HSV, all three channels in [0, 1] (hue in turns)."""
    red, green, blue = images.unbind(dim=1)
    value, argmax = images.max(dim=1)
    delta = value - images.amin(dim=1)
    saturation = torch.where(value > 0, delta / value.clamp_min(1e-12), 0.0)
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    hue = torch.stack(
        [
            torch.remainder((green - blue) / safe, 6.0),
            (blue - red) / safe + 2.0,
            (red - green) / safe + 4.0,
        ],
        dim=1,
    ).gather(1, argmax.unsqueeze(1))[:, 0]
    hue = torch.where(delta > 0, hue / 6.0, 0.0)
    return torch.stack([hue, saturation, value], dim=1)


def hsv_to_rgb(hsv: Tensor) -> Tensor:
    """Inverse of :func:`rgb_to_hsv`.

    Channel ``n`` in (5, 3, 1) for (R, G, B) is
    ``v - v * s * clamp(min(k, 4 - k), 0, 1)`` with ``k = (n + 6 h) mod 6``.
    """
    hue, saturation, value = hsv.unbind(dim=1)
    channels = []
    for n in (5.0, 3.0, 1.0):
        k = torch.remainder(n + 6.0 * hue, 6.0)
        ramp = torch.minimum(k, 4.0 - k).clamp(0.0, 1.0)
        channels.append(value - value * saturation * ramp)
    return torch.stack(channels, dim=1)


def adjust_hue(images: Tensor, factor: Tensor) -> Tensor:
    """Rotate the hue by the per-sample ``factor`` ``(B,)`` in turns [-0.5, 0.5]."""
    hsv = rgb_to_hsv(images)
    hue = torch.remainder(hsv[:, 0] + factor.view(-1, 1, 1), 1.0)
    return hsv_to_rgb(torch.stack([hue, hsv[:, 1], hsv[:, 2]], dim=1)).clamp(0.0, 1.0)


def gaussian_kernel_size(sigma: float) -> int:
    """Odd kernel size ``2 * ceil(3 * sigma) + 1`` covering +-3 sigma."""
    return 2 * math.ceil(3.0 * sigma) + 1


def blur_with_sigma(images: Tensor, sigma: Tensor, kernel_size: int) -> Tensor:
    """Separable Gaussian blur with a per-sample ``sigma`` ``(B,)``.

    The kernel is the normalised Gaussian sampled at the integer offsets
    ``-r..r`` (``r = kernel_size // 2``); borders are reflected, or replicated
    when the image is not larger than ``r`` in some dimension.

    Args:
        images (Tensor): ``(B, C, H, W)`` images.
        sigma (Tensor): ``(B,)`` positive standard deviations in pixels.
        kernel_size (int): Odd kernel side.

    Returns:
        Tensor: Blurred images, same shape.
    """
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f'blur_with_sigma: kernel_size must be odd, got {kernel_size}')
    batch, channels, height, width = images.shape
    radius = kernel_size // 2
    if radius == 0 or batch == 0:
        return images
    offsets = torch.arange(
        -radius, radius + 1, device=images.device, dtype=images.dtype
    )
    sigma = sigma.to(images).view(-1, 1)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum(dim=1, keepdim=True)  # (B, k)
    kernel = kernel.repeat_interleave(channels, dim=0)  # (B * C, k)
    mode = 'reflect' if radius < min(height, width) else 'replicate'
    x = images.reshape(1, batch * channels, height, width)
    x = F.pad(x, (radius, radius, radius, radius), mode=mode)
    x = F.conv2d(x, kernel[:, None, None, :], groups=batch * channels)
    x = F.conv2d(x, kernel[:, None, :, None], groups=batch * channels)
    return x.view(batch, channels, height, width)


# ------------------------------------------------------- random transforms
def random_hflip(
    images: Tensor, p: float = 0.5, generator: Optional[torch.Generator] = None
) -> Tensor:
    """Mirror each sample horizontally with probability ``p``.

    Args:
        images (Tensor): ``(B, C, H, W)`` images.
        p (float): Flip probability. Defaults to 0.5.
        generator (torch.Generator, optional): Source of randomness.

    Returns:
        Tensor: Images, same shape.
    """
    _check_prob(p, 'random_hflip')
    flip = _bernoulli(images.shape[0], p, generator, images.device)
    return torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)


def random_resized_crop_boxes(
    height: int,
    width: int,
    num: int,
    scale: Tuple[float, float] = (0.4, 1.0),
    ratio: Tuple[float, float] = (3 / 4, 4 / 3),
    generator: Optional[torch.Generator] = None,
    attempts: int = 10,
) -> Tensor:
    """Per-sample crop boxes drawn like torchvision's ``RandomResizedCrop``.

    Each of ``attempts`` tries draws an area fraction ``U(scale)`` and a
    log-uniform aspect ratio (width / height) in ``ratio``, rounds the side
    lengths and keeps the first box that fits, at a uniform position. When
    none fits, the box is the largest centred one with the aspect ratio
    clamped to ``ratio``.

    Args:
        height (int): Image height.
        width (int): Image width.
        num (int): Number of boxes.
        scale (tuple[float, float]): Area fraction range. Defaults to
            ``(0.4, 1.0)``.
        ratio (tuple[float, float]): Aspect ratio range. Defaults to
            ``(3 / 4, 4 / 3)``.
        generator (torch.Generator, optional): Source of randomness.
        attempts (int): Tries before the fallback. Defaults to 10.

    Returns:
        Tensor: ``(num, 4)`` long boxes ``(y0, x0, y1, x1)``, end exclusive.
    """
    if not 0 < scale[0] <= scale[1] or not 0 < ratio[0] <= ratio[1]:
        raise ValueError(
            'random_resized_crop: scale and ratio must be positive (min, max) '
            f'pairs, got scale={tuple(scale)} ratio={tuple(ratio)}'
        )
    device = _device_of(generator)
    area = float(height * width)
    u = torch.rand(
        3, num, attempts, generator=generator, device=device, dtype=torch.float64
    )
    target = area * (scale[0] + (scale[1] - scale[0]) * u[0])
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * u[1])
    box_w = torch.round(torch.sqrt(target * aspect)).long()
    box_h = torch.round(torch.sqrt(target / aspect)).long()
    fits = (box_w > 0) & (box_w <= width) & (box_h > 0) & (box_h <= height)
    first = fits.long().argmax(dim=1, keepdim=True)  # first True (0 if none)
    box_h = box_h.gather(1, first)[:, 0]
    box_w = box_w.gather(1, first)[:, 0]
    pos = u[2].gather(1, first)[:, 0]
    pos_x = torch.rand(num, generator=generator, device=device, dtype=torch.float64)
    y0 = torch.floor(pos * (height - box_h + 1)).long().clamp(max=height - box_h)
    x0 = torch.floor(pos_x * (width - box_w + 1)).long().clamp(max=width - box_w)

    # fallback: central crop with the aspect ratio clamped to ``ratio``
    in_ratio = width / height
    if in_ratio < ratio[0]:
        fb_w, fb_h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        fb_w, fb_h = int(round(height * ratio[1])), height
    else:
        fb_w, fb_h = width, height
    ok = fits.any(dim=1)
    box_h = torch.where(ok, box_h, fb_h)
    box_w = torch.where(ok, box_w, fb_w)
    y0 = torch.where(ok, y0, (height - fb_h) // 2)
    x0 = torch.where(ok, x0, (width - fb_w) // 2)
    return torch.stack([y0, x0, y0 + box_h, x0 + box_w], dim=1)


def random_resized_crop(
    images: Tensor,
    size: Union[int, Sequence[int]],
    scale: Tuple[float, float] = (0.4, 1.0),
    ratio: Tuple[float, float] = (3 / 4, 4 / 3),
    generator: Optional[torch.Generator] = None,
    return_boxes: bool = False,
) -> Union[Tensor, Tuple[Tensor, Tensor]]:
    """Crop a random box per sample and resize it (bilinear, antialiased).

    Boxes come from :func:`random_resized_crop_boxes`; each crop is resized
    with ``F.interpolate(mode='bilinear', align_corners=False,
    antialias=True)``.

    Args:
        images (Tensor): ``(B, C, H, W)`` images.
        size (int | Sequence[int]): Output side, or ``(h, w)``.
        scale (tuple[float, float]): Area fraction range. Defaults to
            ``(0.4, 1.0)``.
        ratio (tuple[float, float]): Aspect ratio range. Defaults to
            ``(3 / 4, 4 / 3)``.
        generator (torch.Generator, optional): Source of randomness.
        return_boxes (bool): Also return the ``(B, 4)`` boxes
            ``(y0, x0, y1, x1)``. Defaults to False.

    Returns:
        Tensor | tuple[Tensor, Tensor]: ``(B, C, h, w)`` crops (and boxes).
    """
    if images.dim() != 4:
        raise ValueError(
            'random_resized_crop: images must be (B, C, H, W), got '
            f'{tuple(images.shape)}'
        )
    out_size = (int(size), int(size)) if isinstance(size, int) else tuple(size)
    boxes = random_resized_crop_boxes(
        images.shape[2], images.shape[3], images.shape[0], scale, ratio, generator
    )
    crops = []
    for image, (y0, x0, y1, x1) in zip(images, boxes.tolist()):
        crop = image[None, :, y0:y1, x0:x1]
        if tuple(crop.shape[2:]) != out_size:
            crop = F.interpolate(
                crop,
                size=out_size,
                mode='bilinear',
                align_corners=False,
                antialias=True,
            )
        crops.append(crop)
    out = torch.cat(crops) if crops else images.new_zeros(0, images.shape[1], *out_size)
    return (out, boxes.to(images.device)) if return_boxes else out


def color_jitter(
    images: Tensor,
    brightness: float = 0.4,
    contrast: float = 0.4,
    saturation: float = 0.2,
    hue: float = 0.1,
    p: float = 0.8,
    generator: Optional[torch.Generator] = None,
    random_order: bool = True,
) -> Tensor:
    """torchvision-style colour jitter applied to each sample with prob. ``p``.

    Factors are drawn per sample: brightness, contrast and saturation from
    ``U(max(0, 1 - s), 1 + s)`` for strength ``s``, hue from ``U(-h, h)``.
    The four operations (:func:`adjust_brightness`, :func:`adjust_contrast`,
    :func:`adjust_saturation`, :func:`adjust_hue`) run in a random order per
    sample (like ``torchvision.transforms.ColorJitter``) or in that fixed
    order when ``random_order`` is False; a strength of 0 skips its operation.

    Args:
        images (Tensor): ``(B, 3, H, W)`` RGB in [0, 1].
        brightness (float): Brightness strength. Defaults to 0.4.
        contrast (float): Contrast strength. Defaults to 0.4.
        saturation (float): Saturation strength. Defaults to 0.2.
        hue (float): Hue strength in turns, at most 0.5. Defaults to 0.1.
        p (float): Probability to jitter a sample. Defaults to 0.8.
        generator (torch.Generator, optional): Source of randomness.
        random_order (bool): Shuffle the operations per sample. Defaults to
            True.

    Returns:
        Tensor: Jittered images in [0, 1].
    """
    check_images(images, 'color_jitter')
    _check_prob(p, 'color_jitter')
    strengths = (brightness, contrast, saturation, hue)
    if min(strengths) < 0 or hue > 0.5:
        raise ValueError(
            'color_jitter: strengths must be >= 0 and hue <= 0.5, got '
            f'brightness={brightness}, contrast={contrast}, '
            f'saturation={saturation}, hue={hue}'
        )
    batch = images.shape[0]
    if p == 0 or batch == 0:
        return images
    apply = _bernoulli(batch, p, generator, images.device)
    factors = [
        _uniform(batch, max(0.0, 1.0 - s), 1.0 + s, generator, images)
        for s in strengths[:3]
    ]
    factors.append(_uniform(batch, -hue, hue, generator, images))
    ops = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)
    if random_order:
        keys = torch.rand(batch, 4, generator=generator, device=_device_of(generator))
        order = keys.argsort(dim=1).to(images.device)
    else:
        order = torch.arange(4, device=images.device).expand(batch, 4)

    out = images.clone()
    for step in range(4):
        for op_id, (op, factor) in enumerate(zip(ops, factors)):
            if strengths[op_id] == 0:
                continue
            select = apply & (order[:, step] == op_id)
            if select.any():
                out[select] = op(out[select], factor[select])
    return out


def random_grayscale(
    images: Tensor, p: float = 0.2, generator: Optional[torch.Generator] = None
) -> Tensor:
    """Replace each sample by its luma (on all 3 channels) with prob. ``p``.

    Args:
        images (Tensor): ``(B, 3, H, W)`` RGB in [0, 1].
        p (float): Probability. Defaults to 0.2.
        generator (torch.Generator, optional): Source of randomness.

    Returns:
        Tensor: Images, same shape.
    """
    check_images(images, 'random_grayscale')
    _check_prob(p, 'random_grayscale')
    if p == 0:
        return images
    apply = _bernoulli(images.shape[0], p, generator, images.device)
    gray = rgb_to_grayscale(images).expand_as(images)
    return torch.where(apply.view(-1, 1, 1, 1), gray, images)


def gaussian_blur(
    images: Tensor,
    p: float = 1.0,
    sigma: _Range = (0.1, 2.0),
    kernel_size: Optional[int] = None,
    generator: Optional[torch.Generator] = None,
) -> Tensor:
    """Gaussian blur with a per-sample ``sigma ~ U(sigma)``, with prob. ``p``.

    Args:
        images (Tensor): ``(B, 3, H, W)`` images in [0, 1].
        p (float): Probability to blur a sample. Defaults to 1.0.
        sigma (float | tuple[float, float]): Standard deviation or its range
            in pixels. Defaults to ``(0.1, 2.0)``.
        kernel_size (int, optional): Odd kernel side. Defaults to
            :func:`gaussian_kernel_size` of the largest sigma (13 for 2.0).
        generator (torch.Generator, optional): Source of randomness.

    Returns:
        Tensor: Images, same shape.
    """
    check_images(images, 'gaussian_blur')
    _check_prob(p, 'gaussian_blur')
    low, high = _as_range(sigma, 'gaussian_blur sigma')
    if low <= 0:
        raise ValueError(f'gaussian_blur: sigma must be positive, got {sigma}')
    if p == 0:
        return images
    batch = images.shape[0]
    apply = _bernoulli(batch, p, generator, images.device)
    sigmas = _uniform(batch, low, high, generator, images)
    if kernel_size is None:
        kernel_size = gaussian_kernel_size(high)
    if not apply.any():
        return images
    out = images.clone()
    out[apply] = blur_with_sigma(images[apply], sigmas[apply], kernel_size)
    return out
