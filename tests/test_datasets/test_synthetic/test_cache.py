"""load_or_generate: the on-disk cache of generated synthetic samples."""

import os

import numpy as np

from acr_plugin.datasets import SyntheticWSSSDataset
from acr_plugin.datasets.synthetic import (
    SyntheticSpec,
    load_or_generate,
)
from acr_plugin.datasets.synthetic import cache as cache_module


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
