"""GeneratedWSSSDataset (acr_plugin/datasets/generated_wsss.py) through a
tiny subclass that renders a stripe per sample."""

import dataclasses

import numpy as np
import pytest

from acr_plugin.datasets.generated_wsss import GeneratedWSSSDataset

CLASSES = ('background', 'stripe', 'dot')
PALETTE = [[0, 0, 0], [255, 0, 0], [0, 255, 0]]


@dataclasses.dataclass
class StripeSpec:
    width: int = 6

    def __post_init__(self):
        if self.width < 2:
            raise ValueError(f'width must be >= 2, got {self.width}')


class StripeDataset(GeneratedWSSSDataset):
    """Sample ``i``: a 4 x width image whose column ``i % width`` is class 1."""

    def __init__(self, num_samples=3, seed=0, metainfo=None, width=6, **kwargs):
        self.check_generated_args(kwargs, num_samples, seed)
        self.spec = self.build_spec(StripeSpec, width=width)
        self.rendered = []
        meta = self.merge_metainfo(CLASSES, PALETTE, metainfo)
        super().__init__(metainfo=meta, pipeline=[], **kwargs)

    def sample_id(self, index):
        return f'stripe://seed{self.seed}/{index}'

    def render(self, index):
        self.rendered.append(index)
        seg = np.zeros((4, self.spec.width), np.uint8)
        seg[:, index % self.spec.width] = 1
        img = np.full((4, self.spec.width, 3), self.seed + index, np.uint8)
        return dict(
            img=img,
            gt_seg_map=seg,
            gt_part_map=seg * 2,
            img_labels=np.array([1.0, 0.0], np.float32),
        )


def test_data_list_holds_identifiers_and_info_the_render():
    dataset = StripeDataset(num_samples=3, seed=7, data_root='/nowhere', ann_file='x')
    assert len(dataset) == 3 and dataset.rendered == []
    assert dataset.metainfo['classes'] == CLASSES
    info = dataset.get_data_info(2)
    assert dataset.rendered == [2]
    assert info['img_path'] == info['seg_map_path'] == 'stripe://seed7/2'
    assert info[StripeDataset.INDEX_KEY] == 2
    assert info['img_shape'] == info['ori_shape'] == (4, 6)
    assert info['seg_fields'] == ['gt_seg_map', 'gt_part_map']
    assert info['reduce_zero_label'] is False
    assert np.all(info['img'] == 9)
    assert (
        info['gt_seg_map'][:, 2].tolist() == [1] * 4 and info['gt_seg_map'].sum() == 4
    )
    assert info['gt_part_map'].max() == 2
    assert info['img_labels'].tolist() == [1.0, 0.0]
    assert StripeDataset.get_label_map(['a']) is None


def test_metainfo_overrides_keep_the_class_count():
    names = ('bg', 'line', 'point')
    dataset = StripeDataset(metainfo=dict(classes=names))
    assert dataset.metainfo['classes'] == names
    assert dataset.metainfo['palette'] == PALETTE
    with pytest.raises(ValueError, match=r'StripeDataset: metainfo\["classes"\]'):
        StripeDataset(metainfo=dict(classes=('bg', 'line')))
    with pytest.raises(ValueError, match=r'one colour per class \(3\), got 1'):
        StripeDataset(metainfo=dict(palette=[[0, 0, 0]]))


@pytest.mark.parametrize(
    'kwargs,match',
    [
        (dict(reduce_zero_label=True), 'reduce_zero_label=True is not supported'),
        (dict(num_samples=-1), 'num_samples must be >= 0, got -1'),
        (dict(seed=-2), 'seed must be >= 0, got -2'),
        (dict(width=1), 'StripeDataset: width must be >= 2, got 1'),
        (dict(length=3), "StripeDataset: .*unexpected keyword argument 'length'"),
    ],
)
def test_argument_errors_name_the_dataset(kwargs, match):
    if 'length' in kwargs:  # a spec field the spec does not know
        with pytest.raises(ValueError, match=match):
            StripeDataset().build_spec(StripeSpec, **kwargs)
        return
    with pytest.raises(ValueError, match=match):
        StripeDataset(**kwargs)
