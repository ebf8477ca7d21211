"""mmseg's mean/std normalisation undone and redone (``models.utils.image_norm``)."""

import pytest
import torch

from acr_plugin.models.utils import denormalize, normalize

MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)


def test_normalize_denormalize_round_trip():
    images = torch.rand(4, 3, 20, 24, generator=torch.Generator().manual_seed(0))
    normed = normalize(images, MEAN, STD)
    expected = (images * 255 - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(
        STD
    ).view(1, 3, 1, 1)
    torch.testing.assert_close(normed, expected)
    torch.testing.assert_close(denormalize(normed, MEAN, STD), images)
    # out-of-range values (e.g. zero padding far from the mean) are clamped
    assert denormalize(torch.full((1, 3, 2, 2), 10.0), MEAN, STD).max() == 1.0
    assert denormalize(torch.full((1, 3, 2, 2), -10.0), MEAN, STD).min() == 0.0
    with pytest.raises(ValueError, match='one value per channel'):
        normalize(images, MEAN[:2], STD)
    with pytest.raises(ValueError, match='denormalize std'):
        denormalize(images, MEAN, STD[:1])
