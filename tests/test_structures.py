"""The WSSS sample-field helpers in acr_plugin/structures.py."""

import pytest
import torch
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

from acr_plugin.structures import (
    attach_img_logits,
    labels_for_prediction,
    stack_img_labels,
    valid_masks,
)


def labelled(*labels, **metainfo):
    sample = SegDataSample(metainfo=metainfo)
    sample.set_data({'img_labels': torch.tensor(labels, dtype=torch.uint8)})
    return sample


def test_stack_img_labels_is_float_and_names_the_missing_sample():
    stacked = stack_img_labels([labelled(1, 0, 1), labelled(0, 1, 0)])
    assert stacked.dtype == torch.float32
    assert stacked.tolist() == [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]
    with pytest.raises(KeyError, match='data sample 1 has no "img_labels"'):
        stack_img_labels([labelled(1, 0), SegDataSample()])


def test_labels_for_prediction_names_the_setting():
    torch.testing.assert_close(
        labels_for_prediction([labelled(0, 1)], 'test_cfg.', 'x'),
        torch.tensor([[0.0, 1.0]]),
    )
    for samples in (None, [labelled(1), SegDataSample()]):
        with pytest.raises(KeyError, match=r'test_cfg\.use_labels=True .* or set off'):
            labels_for_prediction(samples, 'test_cfg.', 'off')


def test_attach_img_logits_one_row_per_sample():
    samples = [SegDataSample(), SegDataSample()]
    logits = torch.tensor([[0.5, -1.0], [2.0, 3.0]])
    assert attach_img_logits(samples, logits) is samples
    assert samples[0].pred_img_logits.tolist() == [0.5, -1.0]
    assert samples[1].pred_img_logits.tolist() == [2.0, 3.0]


def test_valid_masks_from_img_shape_or_the_valid_mask_field():
    padded = SegDataSample(metainfo=dict(img_shape=(2, 3)))
    unpadded = SegDataSample()
    given = SegDataSample(metainfo=dict(img_shape=(4, 4)))
    field = torch.zeros(1, 4, 5, dtype=torch.bool)
    field[0, 1:3, 2:5] = True
    given.set_data({'valid_mask': PixelData(data=field)})
    masks = valid_masks([padded, unpadded, given], (4, 5), 'cpu')
    expected = torch.zeros(3, 4, 5, dtype=torch.bool)
    expected[0, :2, :3] = True
    expected[1] = True
    expected[2] = field[0]
    assert torch.equal(masks, expected)
    with pytest.raises(ValueError, match=r'data sample 0: valid_mask has shape'):
        valid_masks([given], (4, 6), 'cpu')
