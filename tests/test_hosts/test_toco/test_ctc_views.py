"""Tests of ToCo's CTC views (acr_plugin.hosts.toco.ctc_views)."""

import torch

from acr_plugin.hosts.toco.ctc_views import ctc_global_view, ctc_local_view


def _images(batch=4, height=20, width=24, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, height, width, generator=gen)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_ctc_views_shapes_range_and_reproducibility():
    images = _images(batch=2, height=32, width=40)
    first = ctc_global_view(images, 24, generator=_gen(5))
    assert first.shape == (2, 3, 24, 24)
    assert first.min() >= 0 and first.max() <= 1
    torch.testing.assert_close(first, ctc_global_view(images, 24, generator=_gen(5)))
    assert not torch.equal(first, ctc_global_view(images, 24, generator=_gen(6)))

    crops = torch.rand(2, 4, 3, 8, 8, generator=_gen())
    local = ctc_local_view(crops, generator=_gen(2))
    assert local.shape == crops.shape
    assert local.min() >= 0 and local.max() <= 1
    torch.testing.assert_close(local, ctc_local_view(crops, generator=_gen(2)))
    flat = ctc_local_view(crops.flatten(0, 1), generator=_gen(2))
    torch.testing.assert_close(flat, local.flatten(0, 1))


def test_global_rng_is_used_without_generator():
    images = _images(batch=2)
    torch.manual_seed(11)
    first = ctc_local_view(images)
    torch.manual_seed(11)
    torch.testing.assert_close(first, ctc_local_view(images))
