"""PackWSSSInputs: image labels packed, pixel labels dropped unless asked."""

import os
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from mmengine.runner import Runner
from mmengine.structures import BaseDataElement, PixelData
from mmseg.registry import DATASETS, TRANSFORMS

import acr_plugin  # noqa: F401 (registration)
from acr_plugin.datasets.transforms import PackWSSSInputs
from acr_plugin.structures import IMG_LABELS, PART_MAP
from tests.samples import reference_image_labels


# -------------------------------------------------------------- PackWSSSInputs
def _results(h=6, w=8):
    seg = np.arange(h * w, dtype=np.uint8).reshape(h, w) % 5
    part = (seg % 3).astype(np.uint8)
    return dict(
        img=np.zeros((h, w, 3), np.uint8),
        img_path='x.jpg',
        seg_map_path='x.png',
        ori_shape=(h, w),
        img_shape=(h, w),
        gt_seg_map=seg,
        gt_edge_map=(seg > 2).astype(np.uint8),
        gt_part_map=part,
        seg_fields=['gt_seg_map', 'gt_part_map'],
        img_labels=np.array([1, 0, 1], dtype=np.float32),
    )


def test_pack_wsss_inputs_drops_pixel_labels_by_default():
    packed = TRANSFORMS.build(dict(type='PackWSSSInputs'))(_results())
    sample = packed['data_samples']
    assert packed['inputs'].shape == (3, 6, 8)
    for key in ('gt_sem_seg', 'gt_edge_map', PART_MAP):
        assert key not in sample
    assert 'seg_map_path' not in sample.metainfo
    assert sample.img_path == 'x.jpg'
    labels = sample.get(IMG_LABELS)
    assert isinstance(labels, torch.Tensor) and labels.dtype == torch.float32
    assert labels.tolist() == [1.0, 0.0, 1.0]


def test_pack_wsss_inputs_keeps_pixel_labels_when_asked():
    results = _results()
    packed = PackWSSSInputs(keep_pixel_labels=True)(results)
    sample = packed['data_samples']
    assert sample.seg_map_path == 'x.png'
    np.testing.assert_array_equal(
        sample.gt_sem_seg.data[0].numpy(), results['gt_seg_map']
    )
    assert isinstance(sample.get(PART_MAP), PixelData)
    np.testing.assert_array_equal(
        sample.get(PART_MAP).data[0].numpy(), results[PART_MAP]
    )
    assert sample.get(IMG_LABELS).tolist() == [1.0, 0.0, 1.0]


def test_pack_wsss_inputs_requires_img_labels():
    results = _results()
    del results[IMG_LABELS]
    with pytest.raises(KeyError, match='DeriveImageLabels or LoadImageLabels'):
        PackWSSSInputs()(results)


# ------------------------------------------- a real training batch, end to end
def _write_voc_layout(root, masks):
    """VOC-layout fixture: random images, given masks, a train split list."""
    rng = np.random.default_rng(1)
    for sub in ('JPEGImages', 'SegmentationClass', 'ImageSets/Segmentation'):
        os.makedirs(osp.join(root, sub), exist_ok=True)
    for name, mask in masks.items():
        img = rng.integers(0, 256, size=mask.shape + (3,), dtype=np.uint8)
        cv2.imwrite(osp.join(root, 'JPEGImages', name + '.jpg'), img)
        cv2.imwrite(osp.join(root, 'SegmentationClass', name + '.png'), mask)
    with open(osp.join(root, 'ImageSets/Segmentation/train.txt'), 'w') as f:
        f.writelines(name + '\n' for name in masks)


def _add_part_map(results):
    """Stand-in for a dataset that provides a part map (as the synthetic one)."""
    results[PART_MAP] = (results['gt_seg_map'] > 0).astype(np.uint8) * 2
    results['seg_fields'].append(PART_MAP)
    return results


def _all_tensors(obj):
    """Every tensor/array reachable from a data sample (fields and meta)."""
    if isinstance(obj, (torch.Tensor, np.ndarray)):
        yield obj
    elif isinstance(obj, BaseDataElement):
        for value in list(obj.values()) + list(obj.metainfo_values()):
            yield from _all_tensors(value)
    elif isinstance(obj, dict):
        for value in obj.values():
            yield from _all_tensors(value)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            yield from _all_tensors(value)


@pytest.mark.parametrize('keep', [False, True])
def test_training_batch_has_no_pixel_labels(tmp_path, keep):
    rng = np.random.default_rng(2)
    masks = {}
    for i, classes in enumerate([(3, 15), (7,), (1, 2, 20)]):
        mask = rng.choice((0,) + classes, size=(24, 32)).astype(np.uint8)
        mask[0, :4] = 255
        masks[f'img_{i}'] = mask
    _write_voc_layout(str(tmp_path), masks)
    dataset = DATASETS.build(
        dict(
            type='WSSSVOCDataset',
            data_root=str(tmp_path),
            data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClass'),
            ann_file='ImageSets/Segmentation/train.txt',
            pipeline=[
                dict(type='LoadImageFromFile'),
                dict(type='LoadAnnotations'),
                dict(type='DeriveImageLabels', num_classes=20),
                _add_part_map,
                dict(type='RandomFlip', prob=0.0),
                dict(type='PackWSSSInputs', keep_pixel_labels=keep),
            ],
        )
    )
    loader = Runner.build_dataloader(
        dict(
            batch_size=3,
            num_workers=0,
            sampler=dict(type='DefaultSampler', shuffle=False),
            dataset=dataset,
        )
    )
    batch = next(iter(loader))
    assert len(batch['data_samples']) == 3
    for name, inputs, sample in zip(masks, batch['inputs'], batch['data_samples']):
        expected = reference_image_labels(masks[name], 20)
        np.testing.assert_array_equal(sample.get(IMG_LABELS).numpy(), expected)
        image = cv2.imread(str(tmp_path / 'JPEGImages' / f'{name}.jpg'))
        np.testing.assert_array_equal(inputs.numpy(), image.transpose(2, 0, 1))
        spatial = [t for t in _all_tensors(sample) if t.ndim >= 2]
        if keep:
            np.testing.assert_array_equal(
                sample.gt_sem_seg.data[0].numpy(), masks[name]
            )
            assert PART_MAP in sample and len(spatial) == 2
        else:
            for key in ('gt_sem_seg', PART_MAP, 'gt_edge_map'):
                assert key not in sample
            assert 'seg_map_path' not in sample.metainfo
            # no tensor of the sample holds pixel values: only (C,) labels
            assert spatial == []
            # and the only spatial tensor of the batch is the image itself
            assert inputs.shape[0] == 3
