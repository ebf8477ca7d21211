"""LoadImageLabels and read_image_label_file: .npy and .txt label files."""

import os
import os.path as osp

import numpy as np
import pytest
from mmseg.registry import TRANSFORMS

import acr_plugin  # noqa: F401 (registration)
from acr_plugin.datasets.transforms import LoadImageLabels
from acr_plugin.datasets.transforms.load_image_labels import read_image_label_file
from acr_plugin.structures import IMG_LABELS


# ------------------------------------------------------------- LoadImageLabels
def _write_label_files(tmp_path):
    table = {
        '2007_000032': np.eye(20, dtype=np.uint8)[[0, 14]].sum(0),
        '2007_000039': np.eye(20, dtype=np.uint8)[19],
        'empty_image': np.zeros(20, dtype=np.uint8),
    }
    npy = str(tmp_path / 'cls_labels.npy')
    np.save(npy, table)
    txt = str(tmp_path / 'cls_labels.txt')
    with open(txt, 'w') as f:
        f.write('# name then foreground ids\n')
        f.write('2007_000032 1 15\n\n')
        f.write('JPEGImages/2007_000039.jpg 20\n')
        f.write('empty_image\n')
    return table, npy, txt


def test_load_image_labels_npy_and_txt_agree(tmp_path):
    table, npy, txt = _write_label_files(tmp_path)
    for label_file in (npy, txt):
        transform = TRANSFORMS.build(
            dict(type='LoadImageLabels', label_file=label_file, num_classes=20)
        )
        for name, expected in table.items():
            img_path = osp.join('data', 'JPEGImages', name + '.jpg')
            out = transform(dict(img_path=img_path))
            assert out[IMG_LABELS].dtype == np.float32
            np.testing.assert_array_equal(out[IMG_LABELS], expected.astype(np.float32))
    # the returned vectors are copies: a pipeline may not corrupt the cache
    out = transform(dict(img_path='2007_000032.jpg'))
    out[IMG_LABELS][:] = 7
    again = transform(dict(img_path='2007_000032.jpg'))
    assert set(again[IMG_LABELS].tolist()) == {0.0, 1.0}


def test_load_image_labels_cached_per_process(tmp_path):
    _, npy, _ = _write_label_files(tmp_path)
    first = read_image_label_file(npy, 20)
    assert read_image_label_file(npy, 20) is first
    # a rewritten file is read again
    np.save(npy, {'only': np.ones(20)})
    os.utime(npy, ns=(1, 10**9))
    assert set(read_image_label_file(npy, 20)) == {'only'}


def test_load_image_labels_errors(tmp_path):
    _, npy, txt = _write_label_files(tmp_path)
    transform = LoadImageLabels(npy, num_classes=20)
    with pytest.raises(KeyError, match=r'not_listed.*cls_labels\.npy'):
        transform(dict(img_path='JPEGImages/not_listed.jpg'))
    missing = str(tmp_path / 'nope.npy')
    with pytest.raises(FileNotFoundError, match='nope.npy'):
        LoadImageLabels(missing, num_classes=20)
    # wrong length: the file holds 20-vectors, the config says 21
    with pytest.raises(ValueError, match=r'cls_labels\.npy.*2007_0000\d\d.*length 20'):
        LoadImageLabels(npy, num_classes=21)
    bad_txt = tmp_path / 'bad.txt'
    bad_txt.write_text('img_a 3\nimg_b 0 2\n')
    with pytest.raises(ValueError, match=r'bad\.txt, line 2 \(image "img_b"\)'):
        LoadImageLabels(str(bad_txt), num_classes=20)
    not_a_dict = str(tmp_path / 'array.npy')
    np.save(not_a_dict, np.zeros((3, 20)))
    with pytest.raises(ValueError, match='pickled dict'):
        LoadImageLabels(not_a_dict, num_classes=20)


def test_load_image_labels_allow_empty_option(tmp_path):
    label_file = tmp_path / 'labels.txt'
    label_file.write_text('with_cls 3\nno_cls\n')
    strict = LoadImageLabels(str(label_file), num_classes=20, allow_empty=False)
    assert strict(dict(img_path='d/with_cls.jpg'))['img_labels'][2] == 1
    with pytest.raises(ValueError, match=r'"no_cls".*no foreground label.*labels\.txt'):
        strict(dict(img_path='d/no_cls.jpg'))
    lenient = LoadImageLabels(str(label_file), num_classes=20)
    assert not lenient(dict(img_path='d/no_cls.jpg'))['img_labels'].any()
