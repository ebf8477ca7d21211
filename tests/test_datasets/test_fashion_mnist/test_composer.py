"""compose_sample and FashionMNISTSpec: Fashion-MNIST WSSS scenes.

Every test reads tiny stand-in IDX files written to a temporary folder
(:func:`make_tiny_fashion_mnist`); one optional test checks the split sizes
on the real files where Debian's ``dataset-fashion-mnist`` is installed.
"""

import os.path as osp

import numpy as np
import pytest

from acr_plugin.datasets import FashionMNISTWSSSDataset
from acr_plugin.datasets.fashion_mnist import (
    DEFAULT_ROOT,
    FashionMNISTSpec,
    compose_sample,
    load_item_pool,
)

SPLITS = ('train', 'val', 'pretrain', 'test')


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


def test_samples_draw_only_their_split_items(fashion_mnist_root):
    spec = FashionMNISTSpec()
    used = {}
    for split in SPLITS:
        pool = load_item_pool(fashion_mnist_root, split)
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
    assert load_item_pool(fashion_mnist_root, 'test').images.shape[0] == 12


# ----------------------------------------------------------------- composition
def test_determinism_per_seed_and_index(fashion_mnist_root):
    pool = load_item_pool(fashion_mnist_root, 'train')
    spec = FashionMNISTSpec()
    a = compose_sample(spec, pool, 0, 7)
    b = compose_sample(spec, pool, 0, 7)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a['img'], compose_sample(spec, pool, 0, 8)['img'])
    assert not np.array_equal(a['img'], compose_sample(spec, pool, 1, 7)['img'])
    other = FashionMNISTWSSSDataset(data_root=fashion_mnist_root, split='train', seed=0)
    np.testing.assert_array_equal(other.render(7)['img'], a['img'])


@pytest.mark.parametrize('design', ['wsss', 'pretrain'])
def test_masks_match_labels(fashion_mnist_root, design):
    spec = FashionMNISTSpec(design=design)
    pool = load_item_pool(fashion_mnist_root, 'train')
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


def test_item_pixels_come_from_the_item(fashion_mnist_root):
    """Grey items: inside the mask the image follows the item's grey values."""
    pool = load_item_pool(fashion_mnist_root, 'train')
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


def test_spec_errors(fashion_mnist_root):
    with pytest.raises(ValueError, match='design'):
        FashionMNISTSpec(design='imagenet')
    with pytest.raises(ValueError, match='img_size'):
        FashionMNISTSpec(img_size=16)
    with pytest.raises(ValueError, match='min_objects'):
        FashionMNISTSpec(min_objects=3, max_objects=2)
    with pytest.raises(ValueError, match='item_size'):
        FashionMNISTSpec(item_size=(24, 80))
    with pytest.raises(ValueError, match='seed and index'):
        compose_sample(
            FashionMNISTSpec(), load_item_pool(fashion_mnist_root, 'val'), -1, 0
        )


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
