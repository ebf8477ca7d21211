"""WSSSCOCODataset and its palette (acr_plugin/datasets/wsss_coco.py)."""

import cv2
import numpy as np
import pytest
from mmseg.datasets import PascalVOCDataset
from mmseg.registry import DATASETS

from acr_plugin.datasets.coco_conversion import COCO_THING_CLASSES
from acr_plugin.datasets.wsss_coco import WSSSCOCODataset, bit_interleave_palette


def test_palette_starts_with_the_voc_colours_and_is_distinct():
    palette = bit_interleave_palette(81)
    assert palette[:21] == [list(c) for c in PascalVOCDataset.METAINFO['palette']]
    assert len({tuple(c) for c in palette}) == 81
    # index 9 = 0b001_001: bit 0 (red) at 128, bit 3 (red) at 64
    assert palette[9] == [192, 0, 0]
    assert bit_interleave_palette(0) == []


def write_coco(root, names, masks=True):
    """``img/*.jpg``, ``seg/*.png`` (class 80 in a box) and ``split.txt``."""
    for sub in ('img', 'seg'):
        (root / sub).mkdir(parents=True)
    mask = np.zeros((8, 10), np.uint8)
    mask[2:5, 3:7] = 80
    for name in names:
        cv2.imwrite(
            str(root / 'img' / f'{name}.jpg'), np.full((8, 10, 3), 90, np.uint8)
        )
        if masks:
            cv2.imwrite(str(root / 'seg' / f'{name}.png'), mask)
    (root / 'split.txt').write_text(''.join(f'{n}\n' for n in names))


def build(root, **kwargs):
    prefix = dict(img_path='img', seg_map_path='seg')
    cfg = dict(data_root=str(root), data_prefix=prefix, ann_file='split.txt')
    return DATASETS.build(dict(type='WSSSCOCODataset', **cfg, **kwargs))


def test_dataset_lists_the_split_with_81_classes(tmp_path):
    write_coco(tmp_path, ['COCO_train2014_000000000009', 'COCO_train2014_000000000025'])
    dataset = build(tmp_path, pipeline=[dict(type='LoadAnnotations')])
    assert isinstance(dataset, WSSSCOCODataset) and len(dataset) == 2
    assert dataset.metainfo['classes'] == ('background',) + COCO_THING_CLASSES
    assert len(dataset.metainfo['classes']) == 81
    assert dataset.metainfo['palette'] == bit_interleave_palette(81)
    info = dataset.get_data_info(1)
    assert info['img_path'].endswith('img/COCO_train2014_000000000025.jpg')
    seg = dataset[0]['gt_seg_map']
    assert seg.shape == (8, 10) and seg[3, 4] == 80 and seg[0, 0] == 0


def test_missing_mask_is_named_at_build(tmp_path):
    write_coco(tmp_path, ['COCO_train2014_000000000009'], masks=False)
    with pytest.raises(
        FileNotFoundError, match=r'segmentation mask.*COCO_train2014_000000000009'
    ):
        build(tmp_path)
    assert len(build(tmp_path, check_files=False)) == 1
