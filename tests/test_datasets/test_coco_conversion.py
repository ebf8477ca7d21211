"""COCO instances json -> WSSS semantic masks, split lists and cls_labels.npy."""

import copy
import json
import os
import os.path as osp
import sys

import cv2
import numpy as np
import pytest
from mmengine.config import Config
from mmseg.registry import DATASETS
from PIL import Image

from acr_plugin.datasets.coco_conversion import (
    COCO_THING_CLASSES,
    category_label_map,
    convert_coco_split,
)
from acr_plugin.datasets.wsss_coco import WSSSCOCODataset
from acr_plugin.structures import IMG_LABELS
from tests.scripts import load_script

# category ids 3 and 7 (non-contiguous) -> labels 1 and 2
CAR, CAT = 1, 2
REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _rect(x0, y0, x1, y1):
    """Polygon of the pixel block [x0, x1) x [y0, y1) (COCO corner coords)."""
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def _uncompressed_rle(mask):
    """Column-major run lengths starting with a run of zeros (COCO RLE)."""
    flat = mask.flatten(order='F').astype(np.uint8)
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0] == 1:
        counts = [0] + counts
    return {'size': list(mask.shape), 'counts': counts}


def _coco_json():
    """3 images: overlaps + crowd RLE, a crowd polygon, no annotation."""
    crowd_a = np.zeros((20, 24), np.uint8)
    crowd_a[14:18, 10:22] = 1
    anns = [
        # image 1 (20 x 24). L shape, 72 px, category 7
        dict(
            id=10,
            image_id=1,
            category_id=7,
            iscrowd=0,
            segmentation=[[2, 2, 12, 2, 12, 6, 6, 6, 6, 14, 2, 14]],
        ),
        # small rectangle on the L, 30 px, category 3: drawn on top
        dict(
            id=11,
            image_id=1,
            category_id=3,
            iscrowd=0,
            segmentation=[_rect(4, 4, 9, 10)],
        ),
        # crowd region (uncompressed RLE) -> 255
        dict(
            id=12,
            image_id=1,
            category_id=3,
            iscrowd=1,
            segmentation=_uncompressed_rle(crowd_a),
        ),
        # instance overlapping the crowd region: the instance wins
        dict(
            id=13,
            image_id=1,
            category_id=7,
            iscrowd=0,
            segmentation=[_rect(18, 12, 22, 16)],
        ),
        # two-part polygon touching the border; a degenerate part is skipped
        dict(
            id=14,
            image_id=1,
            category_id=3,
            iscrowd=0,
            segmentation=[_rect(20, 0, 24, 4), _rect(0, 17, 3, 20), [1, 1, 2, 2]],
        ),
        # image 2 (16 x 16): two equal-area instances overlapping; the
        # smaller annotation id is drawn first, the larger id ends on top
        dict(
            id=21,
            image_id=2,
            category_id=7,
            iscrowd=0,
            segmentation=[_rect(2, 2, 8, 8)],
        ),
        dict(
            id=20,
            image_id=2,
            category_id=3,
            iscrowd=0,
            segmentation=[_rect(5, 5, 11, 11)],
        ),
        # crowd polygon
        dict(
            id=22,
            image_id=2,
            category_id=7,
            iscrowd=1,
            segmentation=[_rect(12, 0, 16, 16)],
        ),
    ]
    images = [
        dict(id=1, file_name='COCO_train2014_000000000001.jpg', height=20, width=24),
        dict(id=2, file_name='COCO_train2014_000000000002.jpg', height=16, width=16),
        dict(id=3, file_name='COCO_train2014_000000000003.jpg', height=8, width=10),
    ]
    categories = [dict(id=7, name='cat'), dict(id=3, name='car')]
    return dict(images=images, annotations=anns, categories=categories)


def _expected_masks():
    """Independent rasterisation by array slicing, painted in the documented order."""
    m1 = np.zeros((20, 24), np.uint8)
    m1[14:18, 10:22] = 255  # crowd first
    # then non-crowd by decreasing area: L 72 > id 11 30 > id 14 25 > id 13 16
    m1[2:6, 2:12] = CAT  # L shape, 72 px
    m1[2:14, 2:6] = CAT
    m1[4:10, 4:9] = CAR  # 30 px
    m1[0:4, 20:24] = CAR  # id 14, 25 px
    m1[17:20, 0:3] = CAR
    m1[12:16, 18:22] = CAT  # id 13, 16 px, over the crowd region
    m2 = np.zeros((16, 16), np.uint8)
    m2[:, 12:16] = 255
    m2[5:11, 5:11] = CAR  # id 20 first (36 px, smaller id)
    m2[2:8, 2:8] = CAT  # id 21 on top
    m3 = np.zeros((8, 10), np.uint8)
    return {
        'COCO_train2014_000000000001': m1,
        'COCO_train2014_000000000002': m2,
        'COCO_train2014_000000000003': m3,
    }


@pytest.fixture
def coco_json(tmp_path):
    path = tmp_path / 'annotations' / 'instances_train2014.json'
    path.parent.mkdir()
    path.write_text(json.dumps(_coco_json()))
    return str(path)


def test_category_label_map_is_sorted_by_id():
    cats = [dict(id=90), dict(id=3), dict(id=7)]
    assert category_label_map(cats) == {3: 1, 7: 2, 90: 3}
    assert len(COCO_THING_CLASSES) == 80


def _read_png(path):
    with Image.open(path) as png:
        assert png.mode == 'L'
        return np.asarray(png)


def test_masks_are_pixel_exact(tmp_path, coco_json):
    out = tmp_path / 'coco2014'
    info = convert_coco_split(coco_json, str(out), 'train', 'train2014')
    assert info['class_names'] == ['car', 'cat']
    assert (info['num_images'], info['num_written']) == (3, 3)
    for name, expected in _expected_masks().items():
        mask = _read_png(out / 'SegmentationClass' / 'train2014' / f'{name}.png')
        np.testing.assert_array_equal(mask, expected, err_msg=name)
    assert not [
        f for f in os.listdir(out / 'SegmentationClass' / 'train2014') if 'tmp' in f
    ]


def test_split_list_and_cls_labels(tmp_path, coco_json):
    out = tmp_path / 'coco2014'
    info = convert_coco_split(coco_json, str(out), 'train', 'train2014')
    # image 3 has no object: not listed; lists are sorted
    assert (out / 'ImageSets' / 'train.txt').read_text().split() == [
        'COCO_train2014_000000000001',
        'COCO_train2014_000000000002',
    ]
    assert info['num_listed'] == 2
    labels = np.load(out / 'cls_labels.npy', allow_pickle=True).item()
    assert set(labels) == set(_expected_masks())
    for name, mask in _expected_masks().items():
        expected = [float((mask == k).any()) for k in (1, 2)]
        assert labels[name].tolist() == expected, name
    # a second split is merged into the same label file
    val = _coco_json()
    for img in val['images']:
        img['file_name'] = img['file_name'].replace('train', 'val')
    val_json = tmp_path / 'annotations' / 'instances_val2014.json'
    val_json.write_text(json.dumps(val))
    convert_coco_split(str(val_json), str(out), 'val', 'val2014', keep_empty=True)
    labels = np.load(out / 'cls_labels.npy', allow_pickle=True).item()
    assert len(labels) == 6
    assert len((out / 'ImageSets' / 'val.txt').read_text().split()) == 3


def test_resume_overwrite_and_multiprocessing(tmp_path, coco_json):
    out = tmp_path / 'coco2014'
    mask_dir = out / 'SegmentationClass' / 'train2014'
    convert_coco_split(coco_json, str(out), 'train', 'train2014')
    first = np.load(out / 'cls_labels.npy', allow_pickle=True).item()
    info = convert_coco_split(coco_json, str(out), 'train', 'train2014')
    assert info['num_written'] == 0  # resumed: every mask kept
    os.remove(mask_dir / 'COCO_train2014_000000000002.png')
    info = convert_coco_split(coco_json, str(out), 'train', 'train2014', nproc=2)
    assert info['num_written'] == 1
    info = convert_coco_split(
        coco_json, str(out), 'train', 'train2014', overwrite=True, nproc=2
    )
    assert info['num_written'] == 3
    again = np.load(out / 'cls_labels.npy', allow_pickle=True).item()
    for name, expected in _expected_masks().items():
        np.testing.assert_array_equal(_read_png(mask_dir / f'{name}.png'), expected)
        np.testing.assert_array_equal(again[name], first[name])


def test_unknown_category_is_an_error(tmp_path):
    data = _coco_json()
    data['annotations'][0]['category_id'] = 99
    path = tmp_path / 'bad.json'
    path.write_text(json.dumps(data))
    with pytest.raises(KeyError, match='annotation 10 has category_id 99'):
        convert_coco_split(str(path), str(tmp_path / 'out'), 'train', 'train2014')
    with pytest.raises(FileNotFoundError, match='missing.json'):
        convert_coco_split(str(tmp_path / 'missing.json'), str(tmp_path), 't', 't')


def _load_cli():
    return load_script('tools/dataset_converters/coco2014_to_semantic.py')


def test_cli_and_dataset_on_converted_data(tmp_path, coco_json, monkeypatch, capsys):
    root = tmp_path  # holds annotations/; the CLI writes next to it
    cli = _load_cli()
    monkeypatch.setattr(
        sys, 'argv', ['coco2014_to_semantic.py', str(root), '--splits', 'train']
    )
    cli.main()
    assert 'not the 80 COCO thing classes' in capsys.readouterr().out
    masks = _expected_masks()
    os.makedirs(root / 'train2014')
    rng = np.random.default_rng(0)
    for name, mask in masks.items():
        img = rng.integers(0, 256, size=mask.shape + (3,), dtype=np.uint8)
        cv2.imwrite(str(root / 'train2014' / f'{name}.jpg'), img)
    dataset = DATASETS.build(
        dict(
            type='WSSSCOCODataset',
            data_root=str(root),
            data_prefix=dict(
                img_path='train2014', seg_map_path='SegmentationClass/train2014'
            ),
            ann_file='ImageSets/train.txt',
            pipeline=[
                dict(type='LoadImageFromFile'),
                dict(type='LoadAnnotations'),
                dict(type='DeriveImageLabels', num_classes=80),
                dict(type='PackWSSSInputs', keep_pixel_labels=True),
            ],
        )
    )
    assert isinstance(dataset, WSSSCOCODataset)
    assert len(dataset.metainfo['classes']) == 81
    assert len(dataset.metainfo['palette']) == 81
    cls_labels = np.load(root / 'cls_labels.npy', allow_pickle=True).item()
    assert len(dataset) == 2
    for i in range(len(dataset)):
        sample = dataset[i]['data_samples']
        name = osp.splitext(osp.basename(sample.img_path))[0]
        np.testing.assert_array_equal(sample.gt_sem_seg.data[0].numpy(), masks[name])
        # derived labels of the 80-class dataset = converter labels, padded
        derived = sample.get(IMG_LABELS).numpy()
        assert derived.shape == (80,)
        np.testing.assert_array_equal(derived[:2], cls_labels[name])
        assert not derived[2:].any()
    # the base config's train pipeline on the converted data
    cfg = Config.fromfile(
        osp.join(REPO, 'configs', '_base_', 'datasets', 'coco14_wsss.py')
    )
    for key, has_pixels in [('train_dataloader', False), ('val_dataloader', True)]:
        dataset_cfg = copy.deepcopy(cfg[key]['dataset'])
        dataset_cfg.update(data_root=str(root), ann_file='ImageSets/train.txt')
        dataset_cfg['data_prefix'] = dict(
            img_path='train2014', seg_map_path='SegmentationClass/train2014'
        )
        packed = DATASETS.build(dataset_cfg)[0]
        sample = packed['data_samples']
        np.testing.assert_array_equal(
            sample.get(IMG_LABELS).numpy()[:2],
            cls_labels['COCO_train2014_000000000001'],
        )
        assert ('gt_sem_seg' in sample) == has_pixels
