"""TorchvisionTransforms: torchvision v2 ops on BGR images with their label maps."""

import numpy as np
import pytest
import torch
from mmseg.registry import TRANSFORMS

from acr_plugin.datasets.transforms import TorchvisionTransforms


def label_coded_sample(h=24, w=32, seed=0):
    """Image whose pixels encode the seg label (value 10 * label + 5)."""
    rng = np.random.default_rng(seed)
    seg = rng.integers(0, 5, (h, w)).astype(np.uint8)
    seg = np.kron(seg[::4, ::4], np.ones((4, 4), dtype=np.uint8))[:h, :w]
    img = np.repeat((seg * 10 + 5)[:, :, None], 3, axis=2).astype(np.uint8)
    part = (seg > 2).astype(np.uint8)
    return dict(
        img=img,
        gt_seg_map=seg.copy(),
        gt_part_map=part,
        seg_fields=['gt_seg_map', 'gt_part_map'],
        img_shape=(h, w),
        ori_shape=(h, w),
    )


def test_builds_from_the_registry_and_keeps_bgr():
    t = TRANSFORMS.build(
        dict(
            type='TorchvisionTransforms',
            transforms=[dict(type='RandomHorizontalFlip', p=1.0)],
        )
    )
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    seg = rng.integers(0, 4, (6, 8)).astype(np.uint8)
    out = t(dict(img=img.copy(), gt_seg_map=seg.copy(), seg_fields=['gt_seg_map']))
    np.testing.assert_array_equal(out['img'], img[:, ::-1])  # channels unchanged
    np.testing.assert_array_equal(out['gt_seg_map'], seg[:, ::-1])
    assert out['img'].flags['C_CONTIGUOUS']


def test_colour_ops_see_rgb():
    """Greyscale uses RGB weights: the BGR input is converted for the op."""
    t = TorchvisionTransforms([dict(type='Grayscale', num_output_channels=3)])
    img = np.zeros((2, 2, 3), dtype=np.uint8)
    img[..., 2] = 200  # pure red in BGR
    out = t(dict(img=img))['img']
    expected = np.uint8(np.round(0.2989 * 200))  # red weight of ITU-R 601-2
    assert abs(int(out[0, 0, 0]) - int(expected)) <= 1
    assert (out == out[..., :1]).all()


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_geometric_ops_move_every_map_with_the_image(seed):
    torch.manual_seed(seed)
    t = TorchvisionTransforms(
        [
            dict(
                type='RandomResizedCrop',
                size=(16, 20),
                scale=(0.3, 1.0),
                interpolation='nearest',
            ),
            dict(
                type='RandomAffine',
                degrees=20,
                translate=(0.2, 0.2),
                interpolation='nearest',
            ),
            dict(type='RandomHorizontalFlip', p=0.5),
        ]
    )
    out = t(label_coded_sample(seed=seed))
    img, seg, part = out['img'], out['gt_seg_map'], out['gt_part_map']
    assert img.shape == (16, 20, 3) and out['img_shape'] == (16, 20)
    assert seg.shape == part.shape == (16, 20)
    assert seg.dtype == part.dtype == np.uint8
    outside = seg == 255  # no source pixel: maps get 255, image 0
    assert (part[outside] == 255).all()
    assert (img[outside] == 0).all()
    inside = ~outside
    np.testing.assert_array_equal(img[inside][:, 0], seg[inside] * 10 + 5)
    np.testing.assert_array_equal(part[inside], (seg[inside] > 2).astype(np.uint8))


def test_random_erasing_changes_the_image_only():
    torch.manual_seed(0)
    t = TorchvisionTransforms([dict(type='RandomErasing', p=1.0, scale=(0.2, 0.3))])
    sample = label_coded_sample()
    seg = sample['gt_seg_map'].copy()
    out = t(sample)
    assert (out['img'] == 0).any()  # erased to black
    np.testing.assert_array_equal(out['gt_seg_map'], seg)


def test_auto_augment_needs_the_maps_dropped():
    t = TorchvisionTransforms([dict(type='RandAugment', num_ops=2, magnitude=9)])
    with pytest.raises(TypeError, match='RandAugment.*drop_seg_maps'):
        t(label_coded_sample())
    t = TorchvisionTransforms(
        [dict(type='RandAugment', num_ops=2, magnitude=9)], drop_seg_maps=True
    )
    out = t(label_coded_sample())
    assert 'gt_seg_map' not in out and out['seg_fields'] == []
    assert out['img'].shape == (24, 32, 3) and out['img'].dtype == np.uint8
    # without maps RandAugment runs as is
    out = t(dict(img=np.full((8, 8, 3), 100, dtype=np.uint8)))
    assert out['img'].shape == (8, 8, 3)


def test_mctformer_recipe_runs():
    torch.manual_seed(0)
    t = TorchvisionTransforms(
        [
            dict(
                type='RandomResizedCrop',
                size=(16, 16),
                scale=(0.08, 1.0),
                interpolation='bicubic',
                antialias=True,
            ),
            dict(type='RandomHorizontalFlip', p=0.5),
            dict(type='RandAugment', num_ops=2, magnitude=9),
            dict(type='RandomErasing', p=0.25),
        ],
        drop_seg_maps=True,
    )
    for seed in range(3):
        out = t(label_coded_sample(seed=seed))
        assert out['img'].shape == (16, 16, 3) and out['img_shape'] == (16, 16)


def test_bad_inputs_raise():
    with pytest.raises(KeyError, match='NoSuchOp'):
        TorchvisionTransforms([dict(type='NoSuchOp')])
    with pytest.raises(TypeError, match='"type"'):
        TorchvisionTransforms(['RandAugment'])
    with pytest.raises(TypeError, match='list'):
        TorchvisionTransforms(dict(type='RandAugment'))
    t = TorchvisionTransforms([dict(type='RandomHorizontalFlip')])
    with pytest.raises(KeyError, match='img'):
        t(dict())
    with pytest.raises(ValueError, match='uint8'):
        t(dict(img=np.zeros((4, 4, 3), dtype=np.float32)))
    sample = label_coded_sample()
    sample['gt_seg_map'] = sample['gt_seg_map'][:-1]
    with pytest.raises(ValueError, match='gt_seg_map'):
        t(sample)
