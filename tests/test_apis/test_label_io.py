"""Pseudo-label files (``acr_plugin.apis.label_io``): palette PNGs, names."""

import os

import numpy as np
import pytest
from PIL import Image

from acr_plugin.apis import label_to_png, read_label_png, sample_name, save_label_png
from acr_plugin.apis.label_io import label_palette


def test_sample_name():
    assert sample_name('data/VOC2012/JPEGImages/2007_000032.jpg') == '2007_000032'
    assert sample_name('synthetic://wsss/seed0/000012') == '000012'
    with pytest.raises(ValueError, match='file name'):
        sample_name('a/')


def test_palette_png_roundtrip(tmp_path):
    palette = [[0, 0, 0], [128, 0, 0], [0, 128, 0]]
    label = np.array([[0, 1, 2], [2, 255, 0]], np.uint8)
    path = str(tmp_path / 'x.png')
    save_label_png(label, path, palette)
    with Image.open(path) as img:
        assert img.mode == 'P'
        flat = img.getpalette()
        assert flat[:9] == [v for c in palette for v in c]
        assert flat[255 * 3 : 255 * 3 + 3] == [224, 224, 192]
    np.testing.assert_array_equal(read_label_png(path), label)
    assert os.listdir(tmp_path) == ['x.png']
    with pytest.raises(ValueError, match=r'\[0, 255\]'):
        label_to_png(np.array([[256]]), palette)


def test_palette_and_read_errors(tmp_path):
    with pytest.raises(ValueError, match='at most 255'):
        label_palette([[0, 0, 0]] * 256)
    with pytest.raises(ValueError, match='triples'):
        label_palette([[0, 0]])
    with pytest.raises(ValueError, match=r'\(H, W\)'):
        label_to_png(np.zeros((1, 2, 2), np.uint8), [[0, 0, 0]])
    rgb = str(tmp_path / 'rgb.png')
    Image.new('RGB', (2, 2)).save(rgb)
    with pytest.raises(ValueError, match='mode RGB'):
        read_label_png(rgb)


def test_atomic_write_leaves_nothing_on_failure(tmp_path, monkeypatch):
    def broken_save(self, fp, *args, **kwargs):
        fp.write(b'partial')
        raise OSError('disk full')

    monkeypatch.setattr(Image.Image, 'save', broken_save)
    with pytest.raises(OSError, match='disk full'):
        save_label_png(np.zeros((2, 2), np.uint8), str(tmp_path / 'y.png'), [[0] * 3])
    assert os.listdir(tmp_path) == []
