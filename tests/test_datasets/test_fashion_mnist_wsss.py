"""FashionMNISTWSSSDataset: registry build, data infos, pipelines and errors."""

import os.path as osp

import numpy as np
import pytest
from mmseg.registry import DATASETS

from acr_plugin.datasets import FashionMNISTWSSSDataset


def test_missing_files_name_the_path_and_the_install(tmp_path):
    missing = str(tmp_path / 'nowhere')
    with pytest.raises(FileNotFoundError) as err:
        FashionMNISTWSSSDataset(data_root=missing, num_samples=2)
    message = str(err.value)
    assert 'FashionMNISTWSSSDataset' in message
    assert osp.join(missing, 'train-images-idx3-ubyte') in message
    assert 'apt-get install dataset-fashion-mnist' in message
    assert 'data_root' in message


# ----------------------------------------------------------------------- dataset
def test_registry_build_and_data_info(fashion_mnist_root):
    dataset = DATASETS.build(
        dict(
            type='FashionMNISTWSSSDataset',
            data_root=fashion_mnist_root,
            split='val',
            num_samples=5,
            seed=2,
        )
    )
    assert len(dataset) == 5
    classes = dataset.metainfo['classes']
    assert len(classes) == 11 and classes[0] == 'background'
    assert classes[1] == 'tshirt_top' and classes[10] == 'ankle_boot'
    assert len(dataset.metainfo['palette']) == 11
    info = dataset.get_data_info(3)
    assert info['img_path'] == 'fashion-mnist://wsss/val/seed2/000003'
    assert info['img_shape'] == info['ori_shape'] == (64, 64)
    assert info['seg_fields'] == ['gt_seg_map', 'gt_part_map']
    assert info['reduce_zero_label'] is False and info['label_map'] is None
    ref = dataset.render(3)
    for key in ('img', 'gt_seg_map', 'gt_part_map', 'img_labels'):
        np.testing.assert_array_equal(info[key], ref[key])


def test_pipelines_pack_labels(fashion_mnist_root):
    train = FashionMNISTWSSSDataset(
        data_root=fashion_mnist_root,
        num_samples=2,
        pipeline=[dict(type='RandomFlip', prob=1.0), dict(type='PackWSSSInputs')],
    )
    out = train[0]
    assert out['inputs'].shape == (3, 64, 64)
    sample = out['data_samples']
    assert sample.img_labels.shape == (10,)
    assert 'gt_sem_seg' not in sample and 'gt_part_map' not in sample
    test = FashionMNISTWSSSDataset(
        data_root=fashion_mnist_root,
        split='test',
        num_samples=2,
        test_mode=True,
        pipeline=[dict(type='PackWSSSInputs', keep_pixel_labels=True)],
    )
    sample = test[1]['data_samples']
    np.testing.assert_array_equal(
        sample.gt_sem_seg.data[0].numpy(), test.render(1)['gt_seg_map']
    )
    assert sample.gt_part_map.data.shape == (1, 64, 64)


def test_dataset_errors(fashion_mnist_root):
    with pytest.raises(ValueError, match='reduce_zero_label'):
        FashionMNISTWSSSDataset(data_root=fashion_mnist_root, reduce_zero_label=True)
    with pytest.raises(ValueError, match='classes'):
        FashionMNISTWSSSDataset(
            data_root=fashion_mnist_root, metainfo=dict(classes=('a', 'b'))
        )
    with pytest.raises(ValueError, match='FashionMNISTWSSSDataset.*design'):
        FashionMNISTWSSSDataset(data_root=fashion_mnist_root, design='voc')
    with pytest.raises(ValueError, match='split'):
        FashionMNISTWSSSDataset(data_root=fashion_mnist_root, split='trainval')
