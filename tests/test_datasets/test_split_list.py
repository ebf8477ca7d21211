"""SplitListMixin (WSSS VOC and COCO datasets): bad data roots, split lists,
images and label files fail early with a message that names the culprit."""

import copy
import os.path as osp

import cv2
import numpy as np
import pytest
from mmengine.config import Config
from mmseg.registry import DATASETS

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
VOC_BASE = osp.join(ROOT, 'configs/_base_/datasets/voc12aug_wsss.py')
COCO_BASE = osp.join(ROOT, 'configs/_base_/datasets/coco14_wsss.py')


def _write_voc(root, names, empty=()):
    """A tiny VOC layout: 16x16 images and masks (``empty``: background only)."""
    for sub in ('JPEGImages', 'SegmentationClass', 'ImageSets/Segmentation'):
        (root / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i, name in enumerate(names):
        img = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        cv2.imwrite(str(root / 'JPEGImages' / f'{name}.jpg'), img)
        mask = np.zeros((16, 16), np.uint8)
        if name not in empty:
            mask[4:9, 4:9] = 1 + i % 20
        cv2.imwrite(str(root / 'SegmentationClass' / f'{name}.png'), mask)
    split = root / 'ImageSets' / 'Segmentation' / 'train.txt'
    split.write_text(''.join(f'{name}\n' for name in names))
    return root


def _voc_dataset(root, pipeline, split='train'):
    return DATASETS.build(
        dict(
            type='WSSSVOCDataset',
            data_root=str(root),
            data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClass'),
            ann_file=f'ImageSets/Segmentation/{split}.txt',
            pipeline=pipeline,
        )
    )


# --------------------------------------------------- missing root / split list
@pytest.mark.parametrize('dataset_type', ['WSSSVOCDataset', 'WSSSCOCODataset'])
def test_missing_data_root_and_split_list(tmp_path, dataset_type):
    with pytest.raises(FileNotFoundError, match=r'data root .*nowhere'):
        DATASETS.build(
            dict(
                type=dataset_type,
                data_root=str(tmp_path / 'nowhere'),
                data_prefix=dict(img_path='img'),
                ann_file='split.txt',
            )
        )
    (tmp_path / 'img').mkdir()
    with pytest.raises(FileNotFoundError, match=r'split list .*missing_split\.txt'):
        DATASETS.build(
            dict(
                type=dataset_type,
                data_root=str(tmp_path),
                data_prefix=dict(img_path='img'),
                ann_file='missing_split.txt',
            )
        )


def test_corrupt_image_in_a_dataset_names_the_file(tmp_path):
    root = _write_voc(tmp_path, ['a', 'b'])
    (root / 'JPEGImages' / 'b.jpg').write_bytes(b'\xff\xd8\xff\xe0 not really')
    cfg = Config.fromfile(VOC_BASE)
    dataset = _voc_dataset(root, copy.deepcopy(cfg.train_pipeline))
    assert dataset[0]['inputs'].shape[0] == 3
    with pytest.raises(OSError, match=r'JPEGImages/b\.jpg .*unreadable or corrupt'):
        dataset[1]


@pytest.mark.parametrize('path', [VOC_BASE, COCO_BASE])
def test_base_configs_use_the_checked_loader(path):
    cfg = Config.fromfile(path)
    for key in ('train_pipeline', 'train_pipeline_cls_labels', 'test_pipeline'):
        assert cfg[key][0]['type'] == 'WSSSLoadImageFromFile'
    # training pipelines refuse background-only images, evaluation accepts them
    assert cfg.train_pipeline[2]['allow_empty'] is False
    assert cfg.train_pipeline_cls_labels[1]['allow_empty'] is False
    assert cfg.test_pipeline[2].get('allow_empty', True) is True


# ---------------------------------------------------- no foreground label
def test_background_only_image_is_named(tmp_path):
    root = _write_voc(tmp_path, ['fg', 'bg_only'], empty=('bg_only',))
    cfg = Config.fromfile(VOC_BASE)
    train = _voc_dataset(root, copy.deepcopy(cfg.train_pipeline))
    assert train[0]['data_samples'].img_labels.sum() == 1
    with pytest.raises(ValueError, match=r'bg_only\.jpg has no foreground label'):
        train[1]
    # evaluation pipelines may hold such images
    test = _voc_dataset(root, copy.deepcopy(cfg.test_pipeline))
    assert test[1]['data_samples'].img_labels.sum() == 0


# ------------------------------------------- label file vs. image list
def test_label_file_that_disagrees_with_the_split_fails_at_build(tmp_path):
    names = [f'img_{i}' for i in range(9)]
    root = _write_voc(tmp_path, names)
    table = {name: np.eye(20, dtype=np.uint8)[1] for name in names[:2]}
    table['not_in_split'] = np.eye(20, dtype=np.uint8)[3]  # extra: fine
    np.save(root / 'cls_labels.npy', table)
    pipeline = [
        dict(type='WSSSLoadImageFromFile'),
        dict(
            type='LoadImageLabels',
            label_file=str(root / 'cls_labels.npy'),
            num_classes=20,
        ),
        dict(type='PackWSSSInputs'),
    ]
    with pytest.raises(ValueError) as info:
        _voc_dataset(root, pipeline)
    message = str(info.value)
    assert 'cls_labels.npy' in message and 'train.txt' in message
    assert '7 of its 9 images have no entry' in message
    assert '"img_2", "img_3", "img_4", "img_5", "img_6" and 2 more' in message
    # a complete label file builds; an empty entry fails when training wants
    # a class per image
    table.update({name: np.eye(20, dtype=np.uint8)[2] for name in names[2:]})
    table['img_8'] = np.zeros(20, np.uint8)
    np.save(root / 'cls_labels.npy', table)
    assert len(_voc_dataset(root, pipeline)) == 9
    pipeline[1]['allow_empty'] = False
    with pytest.raises(
        ValueError, match=r'1 images have no foreground label \("img_8"'
    ):
        _voc_dataset(root, pipeline)
