"""Tests of the generic batch-wise image augmentations."""

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from acr_plugin.models.utils import (
    color_jitter,
    gaussian_blur,
    random_grayscale,
    random_hflip,
    random_resized_crop,
)
from acr_plugin.models.utils.image_augment import (
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    blur_with_sigma,
    hsv_to_rgb,
    random_resized_crop_boxes,
    rgb_to_grayscale,
    rgb_to_hsv,
)

MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)


def _images(batch=4, height=20, width=24, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, height, width, generator=gen)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ------------------------------------------- kernels vs torchvision per sample
@pytest.mark.parametrize(
    'ours, theirs, factors',
    [
        (adjust_brightness, TF.adjust_brightness, (0.6, 1.0, 1.3, 0.0)),
        (adjust_contrast, TF.adjust_contrast, (0.6, 1.0, 1.4, 0.2)),
        (adjust_saturation, TF.adjust_saturation, (0.8, 1.0, 1.2, 0.0)),
        (adjust_hue, TF.adjust_hue, (-0.1, 0.0, 0.05, 0.5)),
    ],
)
def test_adjust_ops_match_torchvision(ours, theirs, factors):
    images = _images()
    out = ours(images, torch.tensor(factors))
    for image, factor, result in zip(images, factors, out):
        expected = theirs(image, factor)
        # torchvision's luma weights are 0.2989/0.587/0.114 (ours: BT.601 0.299)
        torch.testing.assert_close(result, expected, atol=2e-4, rtol=0)


def test_hsv_round_trip_and_grayscale():
    images = _images()
    images[0, :, :2] = 0.5  # grey pixels (zero saturation)
    images[0, :, 2:4] = 0.0  # black pixels
    torch.testing.assert_close(
        hsv_to_rgb(rgb_to_hsv(images)), images, atol=1e-6, rtol=0
    )
    gray = rgb_to_grayscale(images)
    expected = 0.299 * images[:, 0] + 0.587 * images[:, 1] + 0.114 * images[:, 2]
    torch.testing.assert_close(gray[:, 0], expected)


def test_blur_with_sigma_matches_torchvision():
    images = _images(batch=3)
    sigmas = (0.5, 1.0, 2.0)
    out = blur_with_sigma(images, torch.tensor(sigmas), kernel_size=7)
    for image, sigma, result in zip(images, sigmas, out):
        expected = TF.gaussian_blur(image, kernel_size=[7, 7], sigma=[sigma, sigma])
        torch.testing.assert_close(result, expected, atol=1e-5, rtol=0)
    # kernels wider than the image fall back to replicate padding
    tiny = blur_with_sigma(images[:, :, :3, :3], torch.ones(3), kernel_size=9)
    assert tiny.shape == (3, 3, 3, 3) and torch.isfinite(tiny).all()


# ----------------------------------------------------- probabilities / range
@pytest.mark.parametrize(
    'fn',
    [
        lambda x, p, g: color_jitter(x, p=p, generator=g),
        lambda x, p, g: random_grayscale(x, p=p, generator=g),
        lambda x, p, g: gaussian_blur(x, p=p, generator=g),
        lambda x, p, g: random_hflip(x, p=p, generator=g),
    ],
    ids=['color_jitter', 'grayscale', 'blur', 'hflip'],
)
def test_p0_identity_p1_changes_and_range(fn):
    images = _images()
    assert torch.equal(fn(images, 0.0, _gen()), images)
    out = fn(images, 1.0, _gen())
    assert out.shape == images.shape and out.dtype == images.dtype
    assert out.min() >= 0 and out.max() <= 1
    for changed, original in zip(out, images):
        assert not torch.equal(changed, original)
    # the input is never modified in place
    torch.testing.assert_close(images, _images())


def test_random_hflip_mirrors_selected_samples():
    images = _images(batch=16)
    out = random_hflip(images, p=0.5, generator=_gen(3))
    flipped = [torch.equal(o, i.flip(-1)) for o, i in zip(out, images)]
    kept = [torch.equal(o, i) for o, i in zip(out, images)]
    assert all(f != k for f, k in zip(flipped, kept))
    assert 0 < sum(flipped) < 16


def test_grayscale_gives_equal_channels():
    out = random_grayscale(_images(), p=1.0)
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 1], out[:, 2])
    torch.testing.assert_close(out[:, :1], rgb_to_grayscale(_images()))


def test_color_jitter_brightness_only_scales_each_sample():
    images = _images(batch=8) * 0.5  # no clamping for factors <= 1.4
    out = color_jitter(
        images, brightness=0.4, contrast=0, saturation=0, hue=0, p=1.0, generator=_gen()
    )
    ratio = out / images
    factors = ratio.flatten(1)
    torch.testing.assert_close(factors, factors[:, :1].expand_as(factors))
    assert (factors >= 0.6 - 1e-6).all() and (factors <= 1.4 + 1e-6).all()
    assert factors[:, 0].unique().numel() == 8  # independent per sample


def test_color_jitter_hue_only_rotates_each_sample():
    """One hue shift per sample, within the strength, on saturated pixels."""
    images = _images(batch=5)
    out = color_jitter(
        images, brightness=0, contrast=0, saturation=0, hue=0.2, p=1.0, generator=_gen()
    )
    hues = rgb_to_hsv(out)[:, 0] - rgb_to_hsv(images)[:, 0]
    saturated = rgb_to_hsv(images)[:, 1] > 0.2
    for b in range(5):
        shift = torch.remainder(hues[b][saturated[b]] + 0.5, 1.0) - 0.5
        assert shift.std() < 1e-3 and shift.abs().max() <= 0.2 + 1e-3


def test_gaussian_blur_keeps_constant_images_and_smooths():
    flat = torch.full((2, 3, 9, 9), 0.3)
    torch.testing.assert_close(gaussian_blur(flat, p=1.0), flat)
    images = _images()
    out = gaussian_blur(images, p=1.0, sigma=(1.5, 2.0))
    assert out.std() < images.std()
    with pytest.raises(ValueError, match='sigma'):
        gaussian_blur(images, sigma=(0.0, 1.0))


# ------------------------------------------------------- random resized crop
def test_random_resized_crop_boxes_follow_the_ranges():
    boxes = random_resized_crop_boxes(60, 80, 200, (0.3, 0.9), (0.5, 2.0), _gen())
    y0, x0, y1, x1 = boxes.unbind(1)
    assert (y0 >= 0).all() and (x0 >= 0).all() and (y1 <= 60).all() and (x1 <= 80).all()
    height, width = (y1 - y0).double(), (x1 - x0).double()
    area = height * width / (60 * 80)
    assert (area > 0.28).all() and (area < 0.92).all()
    aspect = width / height
    assert (aspect > 0.45).all() and (aspect < 2.2).all()


def test_random_resized_crop_fallback_is_central():
    # a 4x40 strip cannot hold a square covering 90 % of it: central 4x4 box
    boxes = random_resized_crop_boxes(4, 40, 3, (0.9, 1.0), (1.0, 1.0), _gen())
    assert boxes.tolist() == [[0, 18, 4, 22]] * 3


def test_random_resized_crop_content_and_identity():
    images = _images(batch=3, height=24, width=24)
    same = random_resized_crop(images, 24, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    torch.testing.assert_close(same, images)
    out, boxes = random_resized_crop(
        images, (12, 16), generator=_gen(1), return_boxes=True
    )
    assert out.shape == (3, 3, 12, 16)
    for image, box, crop in zip(images, boxes.tolist(), out):
        y0, x0, y1, x1 = box
        expected = TF.resized_crop(
            image, y0, x0, y1 - y0, x1 - x0, [12, 16], antialias=True
        )
        torch.testing.assert_close(crop, expected, atol=1e-5, rtol=0)
    assert out.min() >= 0 and out.max() <= 1


def test_bad_inputs():
    with pytest.raises(ValueError, match=r'\(B, 3, H, W\)'):
        color_jitter(torch.rand(3, 8, 8))
    with pytest.raises(TypeError, match='float'):
        random_grayscale(torch.zeros(1, 3, 4, 4, dtype=torch.uint8))
    with pytest.raises(ValueError, match='probability'):
        gaussian_blur(_images(), p=1.5)
    with pytest.raises(ValueError, match='hue'):
        color_jitter(_images(), hue=0.7)
