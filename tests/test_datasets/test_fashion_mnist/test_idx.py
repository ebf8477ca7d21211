"""IDX files, the split pools and the item pools of the Fashion-MNIST files."""

import gzip
import os.path as osp

import numpy as np
import pytest

from acr_plugin.datasets.fashion_mnist import (
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
