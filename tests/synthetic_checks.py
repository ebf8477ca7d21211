"""Consistency check of a synthetic WSSS sample (image labels, mask, part map)."""

import numpy as np


def check_consistent(sample: dict, num_classes: int, min_head_px: int = 12) -> None:
    """Tags, mask and part map tell the same story."""
    img, seg = sample['img'], sample['gt_seg_map']
    part, labels = sample['gt_part_map'], sample['img_labels']
    h, w = seg.shape
    assert img.shape == (h, w, 3) and img.dtype == np.uint8
    assert seg.dtype == np.uint8 and part.dtype == np.uint8
    assert part.shape == (h, w)
    assert labels.shape == (num_classes,) and labels.dtype == np.float32
    assert set(np.unique(labels)) <= {0.0, 1.0}
    present = set(np.unique(seg).tolist()) - {0, 255}
    assert present <= set(range(1, num_classes + 1))
    assert {int(k) + 1 for k in np.flatnonzero(labels)} == present
    assert labels.sum() >= 1
    # body/head pixels are exactly the (non-background) object pixels
    np.testing.assert_array_equal(part > 0, seg > 0)
    assert set(np.unique(part).tolist()) <= {0, 1, 2}
    for k in present:
        assert np.count_nonzero((seg == k) & (part == 2)) >= min_head_px
