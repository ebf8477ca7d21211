"""WSSSLoadImageFromFile: the checked image loader names bad files."""

import cv2
import numpy as np
import pytest
from mmcv.transforms import LoadImageFromFile
from mmseg.registry import TRANSFORMS

from acr_plugin.datasets.transforms import (
    WSSSLoadImageFromFile,
)


# ------------------------------------------------------ unreadable / corrupt
def test_checked_loader_matches_mmcv_on_good_images(tmp_path):
    img = np.random.default_rng(1).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    path = str(tmp_path / 'ok.png')
    cv2.imwrite(path, img)
    ours = TRANSFORMS.build(dict(type='WSSSLoadImageFromFile', to_float32=True))
    out = ours(dict(img_path=path))
    ref = LoadImageFromFile(to_float32=True)(dict(img_path=path))
    np.testing.assert_array_equal(out['img'], ref['img'])
    assert out['img'].dtype == np.float32
    assert out['img_shape'] == out['ori_shape'] == (5, 7)


def test_missing_empty_and_corrupt_images_are_named(tmp_path):
    load = WSSSLoadImageFromFile()
    missing = str(tmp_path / 'JPEGImages' / 'gone.jpg')
    with pytest.raises(FileNotFoundError, match=r'gone\.jpg does not exist'):
        load(dict(img_path=missing))
    empty = tmp_path / 'empty.jpg'
    empty.write_bytes(b'')
    with pytest.raises(OSError, match=r'empty\.jpg is empty'):
        load(dict(img_path=str(empty)))
    corrupt = tmp_path / 'corrupt.jpg'
    corrupt.write_bytes(b'<html>404 not found</html>')
    with pytest.raises(
        OSError, match=r'corrupt\.jpg \(26 bytes\) is unreadable or corrupt'
    ):
        load(dict(img_path=str(corrupt)))
    # a truncated JPEG (a download cut short) fails the same way
    good = tmp_path / 'good.jpg'
    cv2.imwrite(str(good), np.full((32, 32, 3), 127, np.uint8))
    truncated = tmp_path / 'truncated.jpg'
    truncated.write_bytes(good.read_bytes()[:20])
    with pytest.raises(OSError, match=r'truncated\.jpg .*corrupt'):
        load(dict(img_path=str(truncated)))
    with pytest.raises(KeyError, match='img_path'):
        load(dict())
    # ignore_empty keeps mmcv's semantics: skip the sample
    lenient = WSSSLoadImageFromFile(ignore_empty=True)
    assert lenient(dict(img_path=missing)) is None
    assert lenient(dict(img_path=str(corrupt))) is None
