"""Tests of the synthetic WSSS generator and ``SyntheticWSSSDataset``."""

import os

import numpy as np
import pytest
from mmengine.dataset import Compose
from mmseg.registry import DATASETS

from acr_plugin.datasets import SyntheticWSSSDataset
from acr_plugin.datasets.synthetic import (
    SyntheticSpec,
    class_names,
    generate_sample,
    head_style,
    load_or_generate,
)
from acr_plugin.datasets.synthetic import cache as cache_module


def _check_consistent(sample: dict, num_classes: int, min_head_px: int = 12) -> None:
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


def test_determinism():
    spec = SyntheticSpec()
    a = generate_sample(spec, 0, 12)
    b = generate_sample(spec, 0, 12)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    other_index = generate_sample(spec, 0, 13)
    other_seed = generate_sample(spec, 1, 12)
    assert not np.array_equal(a['img'], other_index['img'])
    assert not np.array_equal(a['img'], other_seed['img'])
    # the design is part of the seed: same (seed, index), other images
    pretrain = generate_sample(SyntheticSpec(design='pretrain'), 0, 12)
    assert not np.array_equal(a['img'], pretrain['img'])


@pytest.mark.parametrize('design', ['wsss', 'pretrain'])
def test_labels_masks_consistent(design):
    spec = SyntheticSpec(design=design)
    counts = np.zeros(spec.num_classes)
    num_labels = []
    for index in range(40):
        sample = generate_sample(spec, 3, index)
        _check_consistent(sample, spec.num_classes)
        counts += sample['img_labels']
        num_labels.append(sample['img_labels'].sum())
    assert (counts > 0).all()  # every class shows up
    assert max(num_labels) >= 2  # multi-label images exist


def test_head_fraction():
    spec = SyntheticSpec()
    head = obj = 0
    for index in range(40):
        part = generate_sample(spec, 0, index)['gt_part_map']
        head += np.count_nonzero(part == 2)
        obj += np.count_nonzero(part > 0)
    assert 0.10 <= head / obj <= 0.20


def test_heads_have_class_hue_in_bgr():
    """Heads of class 1 (hue 0, red) are red in the *last* channel (BGR)."""
    assert head_style('wsss', 0, 6).hue == 0.0
    spec = SyntheticSpec()
    found = 0
    for index in range(60):
        sample = generate_sample(spec, 5, index)
        head = (sample['gt_seg_map'] == 1) & (sample['gt_part_map'] == 2)
        if head.any():
            mean = sample['img'][head].astype(float).mean(0)
            assert mean[2] > mean[0] + 40 and mean[2] > mean[1] + 40
            found += 1
    assert found >= 5


@pytest.mark.parametrize(
    'size, shape', [(32, (32, 32)), (96, (96, 96)), ((48, 80), (48, 80))]
)
def test_img_size(size, shape):
    spec = SyntheticSpec(img_size=size)
    for index in range(8):
        sample = generate_sample(spec, 0, index)
        assert sample['gt_seg_map'].shape == shape
        _check_consistent(sample, spec.num_classes)


def test_object_count_and_num_classes():
    spec = SyntheticSpec(num_classes=9, min_objects=2, max_objects=2)
    for index in range(10):
        sample = generate_sample(spec, 0, index)
        _check_consistent(sample, 9)
        assert 1 <= sample['img_labels'].sum() <= 2
    assert class_names('wsss', 9)[7:] == ('class_7', 'class_8', 'class_9')


def test_boundary_ignore():
    plain = generate_sample(SyntheticSpec(), 0, 4)
    voided = generate_sample(SyntheticSpec(boundary_ignore=True), 0, 4)
    np.testing.assert_array_equal(plain['img'], voided['img'])
    np.testing.assert_array_equal(plain['gt_part_map'], voided['gt_part_map'])
    seg, ref = voided['gt_seg_map'], plain['gt_seg_map']
    void = seg == 255
    assert void.any()
    np.testing.assert_array_equal(seg[~void], ref[~void])
    # every void pixel is an object pixel with a differently labelled neighbour
    pad = np.pad(ref.astype(int), 1, constant_values=-1)
    for y, x in zip(*np.nonzero(void)):
        neigh = [pad[y, x + 1], pad[y + 2, x + 1], pad[y + 1, x], pad[y + 1, x + 2]]
        assert ref[y, x] > 0
        assert any(n not in (-1, ref[y, x]) for n in neigh)
    present = set(np.unique(seg).tolist()) - {0, 255}
    assert {int(k) + 1 for k in np.flatnonzero(voided['img_labels'])} == present


def test_spec_errors():
    with pytest.raises(ValueError, match='design'):
        SyntheticSpec(design='imagenet')
    with pytest.raises(ValueError, match='img_size'):
        SyntheticSpec(img_size=16)
    with pytest.raises(ValueError, match='min_objects'):
        SyntheticSpec(min_objects=3, max_objects=2)
    with pytest.raises(ValueError, match='seed and index'):
        generate_sample(SyntheticSpec(), -1, 0)


def test_pretrain_design_differs():
    wsss = SyntheticWSSSDataset(num_samples=4)
    pretrain = SyntheticWSSSDataset(num_samples=4, design='pretrain')
    assert len(pretrain.metainfo['classes']) == 13
    assert pretrain.metainfo['classes'][0] == 'background'
    assert not set(pretrain.metainfo['classes'][1:]) & set(wsss.metainfo['classes'])
    wsss_heads = {
        (s.shape, s.hue) for s in (head_style('wsss', k, 6) for k in range(6))
    }
    for k in range(12):
        style = head_style('pretrain', k, 12)
        assert style.shape in ('ring', 'cross', 'diamond')
        assert all(abs(style.hue - hue) >= 10 for _, hue in wsss_heads)
    info = pretrain.get_data_info(0)
    assert info['img_labels'].shape == (12,)
    assert info['img_path'] == 'synthetic://pretrain/seed0/000000'


def test_registry_build_and_data_info():
    dataset = DATASETS.build(dict(type='SyntheticWSSSDataset', num_samples=7, seed=2))
    assert isinstance(dataset, SyntheticWSSSDataset)
    assert len(dataset) == 7
    assert dataset.metainfo['classes'] == (
        'background',
        'aeroplane',
        'bicycle',
        'bird',
        'boat',
        'bottle',
        'bus',
    )
    assert len(dataset.metainfo['palette']) == 7
    info = dataset.get_data_info(3)
    assert info['img_path'] == 'synthetic://wsss/seed2/000003'
    assert info['seg_map_path'] == info['img_path']
    assert info['img_shape'] == info['ori_shape'] == (64, 64)
    assert info['seg_fields'] == ['gt_seg_map', 'gt_part_map']
    assert info['reduce_zero_label'] is False and info['label_map'] is None
    assert info['sample_idx'] == 3
    _check_consistent(info, 6)
    ref = generate_sample(SyntheticSpec(), 2, 3)
    for key in ref:
        np.testing.assert_array_equal(info[key], ref[key])


@pytest.mark.parametrize('serialize_data', [True, False])
def test_indices_lazy_and_test_mode(serialize_data):
    full = SyntheticWSSSDataset(num_samples=10, seed=4)
    subset = SyntheticWSSSDataset(
        num_samples=10,
        seed=4,
        indices=[7, 2],
        serialize_data=serialize_data,
        lazy_init=True,
        test_mode=True,
    )
    assert not subset._fully_initialized
    assert subset.metainfo['classes'][1] == 'aeroplane'
    subset.full_init()
    assert len(subset) == 2
    first = subset.get_data_info(0)
    assert first['sample_idx'] == 0
    np.testing.assert_array_equal(first['img'], full.get_data_info(7)['img'])
    assert first['img_path'].endswith('000007')


def test_dataset_errors():
    with pytest.raises(ValueError, match='reduce_zero_label'):
        SyntheticWSSSDataset(num_samples=2, reduce_zero_label=True)
    with pytest.raises(ValueError, match='classes'):
        SyntheticWSSSDataset(num_samples=2, metainfo=dict(classes=('a', 'b')))
    with pytest.raises(ValueError, match='SyntheticWSSSDataset.*design'):
        SyntheticWSSSDataset(num_samples=2, design='voc')
    with pytest.raises(ValueError, match='SyntheticWSSSDataset.*img_size'):
        SyntheticWSSSDataset(num_samples=2, img_size=16)


def test_metainfo_rename():
    names = ('bg',) + tuple(f'c{k}' for k in range(6))
    dataset = SyntheticWSSSDataset(num_samples=2, metainfo=dict(classes=names))
    assert dataset.metainfo['classes'] == names
    assert dataset.label_map is None


def test_cache(tmp_path, monkeypatch):
    cache_dir = str(tmp_path / 'cache')
    dataset = SyntheticWSSSDataset(num_samples=3, seed=1, cache_dir=cache_dir)
    first = dataset.get_data_info(1)
    files = [f for _, _, names in os.walk(cache_dir) for f in names]
    assert len(files) == 1 and files[0].endswith('.npz')

    def _fail(*args, **kwargs):
        raise AssertionError('generated although the sample is cached')

    monkeypatch.setattr(cache_module, 'generate_sample', _fail)
    second = dataset.get_data_info(1)
    for key in ('img', 'gt_seg_map', 'gt_part_map', 'img_labels'):
        np.testing.assert_array_equal(first[key], second[key])
        assert first[key].dtype == second[key].dtype
    monkeypatch.undo()

    # a different spec never reads these files; corrupt files are regenerated
    other = load_or_generate(SyntheticSpec(noise_sigma=0.0), 1, 1, cache_dir)
    assert not np.array_equal(other['img'], first['img'])
    path = cache_module.cache_path(cache_dir, dataset.spec, 1, 1)
    with open(path, 'wb') as f:
        f.write(b'not a zip archive')
    again = load_or_generate(dataset.spec, 1, 1, cache_dir)
    np.testing.assert_array_equal(again['img'], first['img'])
    files = [f for _, _, names in os.walk(cache_dir) for f in names]
    assert not any(f.endswith('.tmp') for f in files)


def _find_offset(big: np.ndarray, small: np.ndarray) -> tuple:
    """Offsets at which ``small`` appears inside ``big`` (brute force)."""
    hits = []
    for y in range(big.shape[0] - small.shape[0] + 1):
        for x in range(big.shape[1] - small.shape[1] + 1):
            window = big[y : y + small.shape[0], x : x + small.shape[1]]
            if np.array_equal(window, small):
                hits.append((y, x))
    assert len(hits) == 1
    return hits[0]


def test_pipeline_moves_part_map_with_mask():
    dataset = SyntheticWSSSDataset(num_samples=4, seed=3)
    pipeline = Compose(
        [dict(type='RandomFlip', prob=1.0), dict(type='RandomCrop', crop_size=(40, 48))]
    )
    for idx in range(4):
        info = dataset.get_data_info(idx)
        ref = {k: info[k].copy() for k in ('img', 'gt_seg_map', 'gt_part_map')}
        out = pipeline(info)
        assert out['img'].shape == (40, 48, 3) and out['img_shape'] == (40, 48)
        y, x = _find_offset(ref['img'][:, ::-1], out['img'])
        for key in ('gt_seg_map', 'gt_part_map'):
            expected = ref[key][:, ::-1][y : y + 40, x : x + 48]
            np.testing.assert_array_equal(out[key], expected)
        assert out['img_labels'].shape == (6,)


def test_resize_and_pack():
    dataset = SyntheticWSSSDataset(
        num_samples=2,
        pipeline=[
            dict(
                type='RandomResize',
                scale=(96, 96),
                ratio_range=(0.5, 1.0),
                keep_ratio=True,
            ),
            dict(type='Resize', scale=(32, 32)),
            dict(type='PackSegInputs'),
        ],
    )
    packed = dataset[0]
    assert tuple(packed['inputs'].shape) == (3, 32, 32)
    sample = packed['data_samples']
    assert tuple(sample.gt_sem_seg.data.shape) == (1, 32, 32)
    assert sample.img_path == 'synthetic://wsss/seed0/000000'
    info = Compose([dict(type='Resize', scale=(32, 32))])(dataset.get_data_info(1))
    assert info['gt_part_map'].shape == (32, 32)
    np.testing.assert_array_equal(info['gt_part_map'] > 0, info['gt_seg_map'] > 0)
    assert set(np.unique(info['gt_part_map']).tolist()) <= {0, 1, 2}
