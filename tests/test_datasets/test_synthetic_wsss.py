"""SyntheticWSSSDataset: registry build, data infos, pipelines, pseudo labels."""

import numpy as np
import pytest
from mmengine.dataset import Compose
from mmseg.registry import DATASETS
from PIL import Image

from acr_plugin.apis import save_label_png
from acr_plugin.datasets import SyntheticWSSSDataset
from acr_plugin.datasets.synthetic import (
    SyntheticSpec,
    generate_sample,
    head_style,
)
from tests.synthetic_checks import check_consistent


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
    check_consistent(info, 6)
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


def _write_labels(folder, dataset, indices):
    """Pseudo labels that differ from the ground truth: (gt + 1) mod 7."""
    written = {}
    for index in indices:
        gt = dataset.render(index)['gt_seg_map']
        label = ((gt.astype(np.int64) + 1) % 7).astype(np.uint8)
        save_label_png(
            label, str(folder / f'{index:06d}.png'), dataset.metainfo['palette']
        )
        written[index] = label
    return written


def test_reads_pseudo_labels(tmp_path):
    real = SyntheticWSSSDataset(num_samples=5, seed=3, img_size=32)
    labels = _write_labels(tmp_path, real, range(5))
    pseudo = SyntheticWSSSDataset(
        num_samples=5, seed=3, img_size=32, pseudo_label_dir=str(tmp_path)
    )
    for index in range(5):
        info, ref = pseudo.get_data_info(index), real.get_data_info(index)
        np.testing.assert_array_equal(info['gt_seg_map'], labels[index])
        assert info['gt_seg_map'].dtype == np.uint8
        assert not np.array_equal(info['gt_seg_map'], ref['gt_seg_map'])
        # image, part map and image-level labels stay real
        np.testing.assert_array_equal(info['img'], ref['img'])
        np.testing.assert_array_equal(info['gt_part_map'], ref['gt_part_map'])
        np.testing.assert_array_equal(info['img_labels'], ref['img_labels'])
        assert info['seg_map_path'] == str(tmp_path / f'{index:06d}.png')


def test_single_channel_png_and_indices(tmp_path):
    label = np.full((32, 32), 4, np.uint8)
    Image.fromarray(label).save(tmp_path / '000003.png')  # mode L
    dataset = SyntheticWSSSDataset(
        num_samples=5,
        seed=0,
        img_size=32,
        indices=[3],
        pseudo_label_dir=str(tmp_path),
    )
    assert len(dataset) == 1
    np.testing.assert_array_equal(dataset.get_data_info(0)['gt_seg_map'], label)


def test_pipeline_packs_pseudo_labels(tmp_path):
    real = SyntheticWSSSDataset(num_samples=2, seed=0, img_size=32)
    labels = _write_labels(tmp_path, real, range(2))
    dataset = SyntheticWSSSDataset(
        num_samples=2,
        seed=0,
        img_size=32,
        pseudo_label_dir=str(tmp_path),
        pipeline=[dict(type='PackSegInputs')],
    )
    out = dataset[1]
    np.testing.assert_array_equal(
        out['data_samples'].gt_sem_seg.data[0].numpy(), labels[1]
    )
    # a training pipeline moves the pseudo label with the image
    flip = Compose([dict(type='RandomFlip', prob=1.0)])
    flipped = flip(dataset.get_data_info(1))
    np.testing.assert_array_equal(flipped['gt_seg_map'], labels[1][:, ::-1])


def test_errors_name_the_file(tmp_path):
    dataset = SyntheticWSSSDataset(
        num_samples=2, seed=0, img_size=32, pseudo_label_dir=str(tmp_path)
    )
    with pytest.raises(FileNotFoundError, match='000001.png'):
        dataset.get_data_info(1)
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / '000000.png')
    with pytest.raises(ValueError, match=r'000000\.png has shape \(16, 16\)'):
        dataset.get_data_info(0)
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / '000001.png')
    with pytest.raises(ValueError, match='000001.png must be a palette'):
        dataset.get_data_info(1)
