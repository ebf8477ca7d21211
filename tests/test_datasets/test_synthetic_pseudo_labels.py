"""``SyntheticWSSSDataset(pseudo_label_dir=...)``: the second-stage option."""

import numpy as np
import pytest
from mmengine.dataset import Compose
from PIL import Image

from acr_plugin.apis import save_label_png
from acr_plugin.datasets import SyntheticWSSSDataset


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
