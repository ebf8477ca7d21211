"""CAMPredictionMixin and ImageLevelLossMixin
(acr_plugin/models/segmentors/cam_prediction.py) on a tiny hand-made
segmentor, against a hand computation of the flip / scale merge."""

import pytest
import torch
import torch.nn.functional as F
from mmseg.models.segmentors.base import BaseSegmentor
from mmseg.structures import SegDataSample

from acr_plugin.models.segmentors.cam_prediction import (
    CAMPredictionMixin,
    ImageLevelLossMixin,
)

WEIGHTS = torch.tensor([1.0, 2.0, 0.5])


class SquareLoss:
    """A stand-in loss module: ``loss_name`` and ``(logits - labels)^2``."""

    def __init__(self, name):
        self.loss_name = name

    def __call__(self, logits, labels):
        return (logits - labels).square().sum()


class TinyCAMModel(CAMPredictionMixin, ImageLevelLossMixin, BaseSegmentor):
    """Maps = squared input channels (scaled), logits = their means."""

    patch_size = 1

    def __init__(self, **test_cfg):
        super().__init__()
        self.test_cfg = {**self.test_defaults, **test_cfg}
        self.loss_token = SquareLoss('loss_token')
        self.loss_patch = SquareLoss('loss_patch')
        self.forwards = []

    def cams_and_logits(self, inputs):
        self.forwards.append(tuple(inputs.shape))
        cams = inputs.square() * WEIGHTS[:, None, None]
        return cams, cams.mean((2, 3))

    def logits(self, inputs):
        return self.cams_and_logits(inputs)[1]

    def forward_outputs(self, inputs):
        logits = self.logits(inputs)
        return dict(token_logits=logits, patch_logits=2 * logits)

    def extract_feat(self, inputs):
        return inputs


def raw_cams(x):
    return x.square() * WEIGHTS[:, None, None]


def minmax(cams, eps=1e-5):
    low = cams.amin((2, 3), keepdim=True)
    high = cams.amax((2, 3), keepdim=True)
    return (cams - low) / (high - low + eps)


def samples(*labels):
    out = []
    for row in labels:
        sample = SegDataSample(metainfo=dict(img_shape=(6, 8), ori_shape=(6, 8)))
        sample.set_data({'img_labels': torch.tensor(row, dtype=torch.float32)})
        out.append(sample)
    return out


def test_flip_max_merge_and_minmax():
    x = torch.randn(2, 3, 6, 8)
    model = TinyCAMModel(flip_merge='max')
    expected = minmax(torch.maximum(raw_cams(x), raw_cams(x.flip(-1)).flip(-1)))
    torch.testing.assert_close(model.tta_cams(x), expected)
    # one forward over the plain and the mirrored batch together
    assert model.forwards == [(4, 3, 6, 8)]


def test_two_scales_flip_sum_merge():
    x = torch.randn(1, 3, 8, 8)
    model = TinyCAMModel(scales=(1.0, 0.5), flip_merge='sum')
    total = raw_cams(x) + raw_cams(x.flip(-1)).flip(-1)
    small = F.interpolate(x, size=(4, 4), mode='bilinear', align_corners=False)
    small_cams = raw_cams(small) + raw_cams(small.flip(-1)).flip(-1)
    total = total + F.interpolate(
        small_cams, size=(8, 8), mode='bilinear', align_corners=False
    )
    torch.testing.assert_close(model.tta_cams(x), minmax(total))


def test_predict_background_plane_labels_and_image_logits():
    x = torch.randn(2, 3, 6, 8)
    model = TinyCAMModel(flip=False, bg_thr=0.3)
    results = model.predict(x, samples([1, 0, 1], [0, 1, 0]))
    cams = minmax(raw_cams(x)) * torch.tensor([[1, 0, 1], [0, 1, 0]])[..., None, None]
    for b, result in enumerate(results):
        seg = result.seg_logits.data
        assert seg.shape == (4, 6, 8)
        assert torch.all(seg[0] == 0.3)
        torch.testing.assert_close(seg[1:], cams[b])
        torch.testing.assert_close(result.pred_img_logits, raw_cams(x)[b].mean((1, 2)))
        assert torch.equal(result.pred_sem_seg.data[0], seg.argmax(0))
    assert model.forwards == [(2, 3, 6, 8)]  # the logits come from the TTA pass


def test_logits_forward_when_no_scale_keeps_the_input_size():
    x = torch.randn(1, 3, 6, 8)
    model = TinyCAMModel(scales=(0.5,), flip=False, use_labels=False)
    result = model.predict(x, samples([1, 1, 1]))[0]
    torch.testing.assert_close(result.pred_img_logits, raw_cams(x)[0].mean((1, 2)))
    assert model.forwards == [(1, 3, 3, 4), (1, 3, 6, 8)]
    torch.testing.assert_close(model._forward(x), raw_cams(x).mean((2, 3)))


def test_use_labels_without_labels_is_a_clear_error():
    model = TinyCAMModel()
    with pytest.raises(KeyError, match=r'model\.test_cfg\.use_labels=False'):
        model.predict(torch.randn(1, 3, 6, 8), [SegDataSample()])
    seg = model.encode_decode(torch.randn(1, 3, 6, 8), [{}])
    assert seg.shape == (1, 4, 6, 8) and torch.all(seg[:, 0] == 0.5)


def test_image_level_losses_per_head():
    x = torch.randn(2, 3, 6, 8)
    model = TinyCAMModel()
    losses = model.loss(x, samples([1, 0, 1], [0, 1, 0]))
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    logits = raw_cams(x).mean((2, 3))
    assert set(losses) == {'loss_token', 'loss_patch'}
    torch.testing.assert_close(losses['loss_token'], (logits - labels).square().sum())
    torch.testing.assert_close(
        losses['loss_patch'], (2 * logits - labels).square().sum()
    )
