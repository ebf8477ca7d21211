"""Tests of the Fashion-MNIST composer and ``FashionMNISTWSSSDataset``.

Every test reads tiny stand-in IDX files written to a temporary folder
(:func:`make_tiny_fashion_mnist`); one optional test checks the split sizes
on the real files where Debian's ``dataset-fashion-mnist`` is installed.
"""

import gzip
import os.path as osp

import numpy as np
import pytest
from mmseg.registry import DATASETS

from acr_plugin.datasets import FashionMNISTWSSSDataset
from acr_plugin.datasets.fashion_mnist import (
    DEFAULT_ROOT,
    FashionMNISTSpec,
    compose_sample,
    load_item_pool,
    make_tiny_fashion_mnist,
    read_idx,
    split_positions,
    write_idx,
)
from acr_plugin.datasets.fashion_mnist.idx import FILE_STEMS

SPLITS = ('train', 'val', 'pretrain', 'test')


@pytest.fixture(scope='module')
def root(tmp_path_factory) -> str:
    return make_tiny_fashion_mnist(str(tmp_path_factory.mktemp('fashion_mnist')))


def _check_consistent(sample: dict, spec: FashionMNISTSpec) -> None:
    """Image labels, mask, part map and instance map tell the same story."""
    img, seg = sample['img'], sample['gt_seg_map']
    part, labels = sample['gt_part_map'], sample['img_labels']
    inst, classes = sample['gt_instance_map'], sample['item_classes']
    assert img.shape == spec.img_size + (3,) and img.dtype == np.uint8
    assert seg.dtype == part.dtype == inst.dtype == np.uint8
    assert labels.shape == (10,) and labels.dtype == np.float32
    assert set(np.unique(labels).tolist()) <= {0.0, 1.0}
    present = set(np.unique(seg).tolist()) - {0}
    assert present == {int(k) + 1 for k in np.flatnonzero(labels)}
    assert present == {int(c) + 1 for c in classes}
    np.testing.assert_array_equal(part, (seg > 0).astype(np.uint8))
    np.testing.assert_array_equal(inst > 0, seg > 0)
    assert spec.min_objects <= len(classes) <= spec.max_objects
    for number, cls in enumerate(classes, 1):
        visible = inst == number
        assert np.count_nonzero(visible) >= spec.min_item_pixels
        assert (seg[visible] == cls + 1).all()


# --------------------------------------------------------------------- IDX files
@pytest.mark.parametrize('name', ['a-idx3-ubyte', 'a-idx3-ubyte.gz'])
@pytest.mark.parametrize('dtype', [np.uint8, np.int32, np.float32])
def test_idx_round_trip(tmp_path, name, dtype):
    array = (np.arange(2 * 3 * 5) - 7).reshape(2, 3, 5).astype(dtype)
    if dtype == np.uint8:
        array = np.arange(30, dtype=np.uint8).reshape(2, 3, 5)
    path = str(tmp_path / name)
    write_idx(path, array)
    out = read_idx(path)
    assert out.dtype == array.dtype and out.shape == array.shape
    np.testing.assert_array_equal(out, array)


def test_idx_header_is_the_mnist_format(tmp_path):
    path = str(tmp_path / 'labels-idx1-ubyte.gz')
    write_idx(path, np.array([3, 1, 4], np.uint8))
    with gzip.open(path, 'rb') as f:
        raw = f.read()
    assert raw == bytes([0, 0, 8, 1, 0, 0, 0, 3, 3, 1, 4])


def test_idx_errors(tmp_path):
    bad = tmp_path / 'bad'
    bad.write_bytes(b'\x01\x02\x03\x04')
    with pytest.raises(ValueError, match='not an IDX file'):
        read_idx(str(bad))
    short = tmp_path / 'short'
    short.write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 5, 1, 2]))
    with pytest.raises(ValueError, match='shape'):
        read_idx(str(short))


def test_raw_and_gz_files_give_the_same_samples(tmp_path):
    gz = make_tiny_fashion_mnist(str(tmp_path / 'gz'))
    raw = make_tiny_fashion_mnist(str(tmp_path / 'raw'), gz=False)
    assert osp.isfile(osp.join(raw, FILE_STEMS['train'][0]))
    spec = FashionMNISTSpec()
    a = compose_sample(spec, load_item_pool(gz, 'train'), 0, 5)
    b = compose_sample(spec, load_item_pool(raw, 'train'), 0, 5)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def test_missing_files_name_the_path_and_the_install(tmp_path):
    missing = str(tmp_path / 'nowhere')
    with pytest.raises(FileNotFoundError) as err:
        FashionMNISTWSSSDataset(data_root=missing, num_samples=2)
    message = str(err.value)
    assert 'FashionMNISTWSSSDataset' in message
    assert osp.join(missing, 'train-images-idx3-ubyte') in message
    assert 'apt-get install dataset-fashion-mnist' in message
    assert 'data_root' in message


# ------------------------------------------------------------------------ splits
def test_split_pools_are_disjoint_and_cover_the_files():
    train_file = {s: set(split_positions(s, 60000).tolist()) for s in SPLITS[:3]}
    sizes = {s: len(p) for s, p in train_file.items()}
    assert sizes == dict(train=35000, val=5000, pretrain=20000)
    assert not train_file['train'] & train_file['val']
    assert not train_file['train'] & train_file['pretrain']
    assert not train_file['val'] & train_file['pretrain']
    assert set.union(*train_file.values()) == set(range(60000))
    assert len(split_positions('test', 10000)) == 10000
    with pytest.raises(ValueError, match='split'):
        split_positions('trainval', 10)


def test_samples_draw_only_their_split_items(root):
    spec = FashionMNISTSpec()
    used = {}
    for split in SPLITS:
        pool = load_item_pool(root, split)
        used[split] = set()
        for index in range(12):
            sample = compose_sample(spec, pool, 0, index)
            positions = sample['item_positions']
            assert set(positions.tolist()) <= set(pool.positions.tolist())
            np.testing.assert_array_equal(
                sample['item_classes'], pool.labels[positions]
            )
            used[split] |= set(positions.tolist())
    # train / val / pretrain share a file: their items never meet
    assert not used['train'] & used['val']
    assert not used['train'] & used['pretrain']
    assert not used['val'] & used['pretrain']
    # the test split reads the other file
    assert load_item_pool(root, 'test').images.shape[0] == 12


# ----------------------------------------------------------------- composition
def test_determinism_per_seed_and_index(root):
    pool = load_item_pool(root, 'train')
    spec = FashionMNISTSpec()
    a = compose_sample(spec, pool, 0, 7)
    b = compose_sample(spec, pool, 0, 7)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a['img'], compose_sample(spec, pool, 0, 8)['img'])
    assert not np.array_equal(a['img'], compose_sample(spec, pool, 1, 7)['img'])
    other = FashionMNISTWSSSDataset(data_root=root, split='train', seed=0)
    np.testing.assert_array_equal(other.render(7)['img'], a['img'])


@pytest.mark.parametrize('design', ['wsss', 'pretrain'])
def test_masks_match_labels(root, design):
    spec = FashionMNISTSpec(design=design)
    pool = load_item_pool(root, 'train')
    counts = np.zeros(10)
    num_items = []
    for index in range(30):
        sample = compose_sample(spec, pool, 3, index)
        _check_consistent(sample, spec)
        counts += sample['img_labels']
        num_items.append(len(sample['item_classes']))
    assert (counts > 0).sum() >= 8
    if design == 'wsss':
        assert max(num_items) >= 2  # multi-item images exist
    else:
        assert set(num_items) == {1}


def test_item_pixels_come_from_the_item(root):
    """Grey items: inside the mask the image follows the item's grey values."""
    pool = load_item_pool(root, 'train')
    spec = FashionMNISTSpec(
        colourise=False, noise_sigma=0.0, gain=(1.0, 1.0), max_objects=1
    )
    sample = compose_sample(spec, pool, 0, 0)
    img = sample['img'].astype(int)
    mask = sample['gt_seg_map'] > 0
    assert mask.any()
    # grey items: equal channels inside the mask; the background is tinted
    assert (img[mask].max(1) - img[mask].min(1) <= 1).all()
    assert (img[~mask].max(1) - img[~mask].min(1)).mean() > 1


def test_spec_errors(root):
    with pytest.raises(ValueError, match='design'):
        FashionMNISTSpec(design='imagenet')
    with pytest.raises(ValueError, match='img_size'):
        FashionMNISTSpec(img_size=16)
    with pytest.raises(ValueError, match='min_objects'):
        FashionMNISTSpec(min_objects=3, max_objects=2)
    with pytest.raises(ValueError, match='item_size'):
        FashionMNISTSpec(item_size=(24, 80))
    with pytest.raises(ValueError, match='seed and index'):
        compose_sample(FashionMNISTSpec(), load_item_pool(root, 'val'), -1, 0)


# ----------------------------------------------------------------------- dataset
def test_registry_build_and_data_info(root):
    dataset = DATASETS.build(
        dict(
            type='FashionMNISTWSSSDataset',
            data_root=root,
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


def test_pipelines_pack_labels(root):
    train = FashionMNISTWSSSDataset(
        data_root=root,
        num_samples=2,
        pipeline=[dict(type='RandomFlip', prob=1.0), dict(type='PackWSSSInputs')],
    )
    out = train[0]
    assert out['inputs'].shape == (3, 64, 64)
    sample = out['data_samples']
    assert sample.img_labels.shape == (10,)
    assert 'gt_sem_seg' not in sample and 'gt_part_map' not in sample
    test = FashionMNISTWSSSDataset(
        data_root=root,
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


def test_dataset_errors(root):
    with pytest.raises(ValueError, match='reduce_zero_label'):
        FashionMNISTWSSSDataset(data_root=root, reduce_zero_label=True)
    with pytest.raises(ValueError, match='classes'):
        FashionMNISTWSSSDataset(data_root=root, metainfo=dict(classes=('a', 'b')))
    with pytest.raises(ValueError, match='FashionMNISTWSSSDataset.*design'):
        FashionMNISTWSSSDataset(data_root=root, design='voc')
    with pytest.raises(ValueError, match='split'):
        FashionMNISTWSSSDataset(data_root=root, split='trainval')


@pytest.mark.skipif(
    not osp.isdir(DEFAULT_ROOT), reason='dataset-fashion-mnist is not installed'
)
def test_real_files_split_sizes():
    sizes = {s: len(load_item_pool(DEFAULT_ROOT, s)) for s in SPLITS}
    assert sizes == dict(train=35000, val=5000, pretrain=20000, test=10000)
    train = load_item_pool(DEFAULT_ROOT, 'train')
    assert train.images.shape == (60000, 28, 28)
    # about a tenth of every class in each pool
    for split in ('train', 'val', 'pretrain'):
        pool = load_item_pool(DEFAULT_ROOT, split)
        share = np.bincount(pool.labels[pool.positions], minlength=10) / len(pool)
        assert np.abs(share - 0.1).max() < 0.02
    sample = compose_sample(FashionMNISTSpec(), train, 0, 0)
    _check_consistent(sample, FashionMNISTSpec())
