"""DeriveImageLabels and image_labels_from_seg_map vs a per-class reference."""

import numpy as np
import pytest
from mmseg.registry import TRANSFORMS

import acr_plugin  # noqa: F401 (registration)
from acr_plugin.datasets.transforms import DeriveImageLabels
from acr_plugin.datasets.transforms.derive_image_labels import image_labels_from_seg_map
from acr_plugin.structures import IMG_LABELS
from tests.samples import reference_image_labels


# ----------------------------------------------------------- DeriveImageLabels
def test_image_labels_from_seg_map_matches_reference():
    rng = np.random.default_rng(0)
    for _ in range(20):
        seg = rng.choice([0, 1, 4, 7, 20, 255], size=(9, 11)).astype(np.uint8)
        np.testing.assert_array_equal(
            image_labels_from_seg_map(seg, 20), reference_image_labels(seg, 20)
        )


def test_derive_image_labels_transform():
    seg = np.zeros((6, 8), dtype=np.uint8)
    seg[1:3, 1:3] = 3
    seg[4:, 6:] = 20
    seg[0, :] = 255
    transform = TRANSFORMS.build(dict(type='DeriveImageLabels', num_classes=20))
    out = transform(dict(gt_seg_map=seg, ori_shape=(6, 8), seg_map_path='a.png'))
    labels = out[IMG_LABELS]
    assert labels.dtype == np.float32 and labels.shape == (20,)
    assert np.flatnonzero(labels).tolist() == [2, 19]
    # background-only and ignore-only maps give no label
    seg[:] = 0
    seg[2, 2] = 255
    out = transform(dict(gt_seg_map=seg))
    assert not out[IMG_LABELS].any()


def test_derive_image_labels_errors():
    transform = DeriveImageLabels(num_classes=20)
    with pytest.raises(KeyError, match='LoadAnnotations.*x.jpg|x.jpg.*LoadAnn'):
        transform(dict(img_path='x.jpg'))
    bad = np.full((4, 4), 21, dtype=np.uint8)
    with pytest.raises(ValueError, match=r'bad_mask\.png.*\[21\]'):
        transform(dict(gt_seg_map=bad, seg_map_path='bad_mask.png'))
    # a cropped mask no longer describes the whole image
    with pytest.raises(ValueError, match='before any geometric transform'):
        transform(
            dict(
                gt_seg_map=np.zeros((4, 4), np.uint8),
                ori_shape=(8, 8),
                img_path='crop.jpg',
            )
        )
    with pytest.raises(ValueError):
        DeriveImageLabels(num_classes=0)


def test_derive_image_labels_allow_empty_option():
    seg = np.zeros((4, 4), np.uint8)
    seg[0, 0] = 255
    strict = DeriveImageLabels(num_classes=20, allow_empty=False)
    with pytest.raises(ValueError, match=r'x\.jpg has no foreground.*x\.png'):
        strict(dict(gt_seg_map=seg, img_path='x.jpg', seg_map_path='x.png'))
    assert not DeriveImageLabels(num_classes=20)(dict(gt_seg_map=seg))[
        'img_labels'
    ].any()
