"""The view maker: geometric second views."""

import pytest
import torch
import torch.nn.functional as F

from acr_plugin.acr.views.token_alignment import align_patch_tokens
from acr_plugin.acr.views.view_maker import make_view


@pytest.mark.parametrize('kind', ['flip', 'rescale', 'crop'])
def test_make_view_tokens_match(kind):
    patch = 4
    images = torch.randn(2, 3, 5 * patch, 6 * patch)
    gen = torch.Generator().manual_seed(3)
    view, ali = make_view(images, dict(type=kind), patch, generator=gen)
    assert ali.grid1 == (5, 6)
    assert view.shape[-2:] == (ali.grid2[0] * patch, ali.grid2[1] * patch)
    if kind == 'rescale':
        return
    # flip / crop: patch-mean tokens of view 2, aligned, equal view 1's
    t1 = F.avg_pool2d(images, patch).flatten(2)
    t2 = F.avg_pool2d(view, patch).flatten(2)
    v = ali.valid_mask()
    torch.testing.assert_close(align_patch_tokens(t2, ali)[..., v], t1[..., v])


def test_make_view_rescale_and_crop_parameters():
    images = torch.randn(1, 3, 32, 48)
    view, ali = make_view(images, 'rescale', 8, scale_range=(2.0, 2.0))
    assert view.shape[-2:] == (64, 96) and ali.grid2 == (8, 12)
    view, ali = make_view(images, 'rescale', 8, scale_range=(0.5, 0.5))
    assert ali.grid2 == (2, 3) and ali.matrix.shape == (24, 6)
    view, ali = make_view(images, 'crop', 8, max_offset=2)
    assert view.shape[-2:] == (16, 32) and ali.grid2 == (2, 4)
    assert int(ali.valid.sum()) == 8
    view, ali = make_view(images, [dict(type='crop', max_offset=1), 'flip'], 8)
    assert view.shape[-2:] == (24, 40) and ali.grid2 == (3, 5)
    # reproducible with a seeded generator
    a = make_view(images, 'rescale', 8, torch.Generator().manual_seed(1))[0]
    b = make_view(images, 'rescale', 8, torch.Generator().manual_seed(1))[0]
    assert torch.equal(a, b)


def test_make_view_errors():
    images = torch.randn(1, 3, 32, 32)
    with pytest.raises(ValueError, match='unknown view kind'):
        make_view(images, 'rotate', 8)
    with pytest.raises(ValueError, match='multiple of the patch'):
        make_view(torch.randn(1, 3, 30, 32), 'flip', 8)
    with pytest.raises(ValueError, match='max_offset'):
        make_view(images, 'crop', 8, max_offset=4)
    with pytest.raises(ValueError, match='no "type"'):
        make_view(images, dict(max_offset=1), 8)
    with pytest.raises(ValueError, match='bad parameters'):
        make_view(images, dict(type='flip', scale=2), 8)
