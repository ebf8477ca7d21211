"""Test-time dense CRF: image alignment with mmseg's postprocess, refinement."""

import cv2
import numpy as np
import pytest
import torch
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

from acr_plugin.models.utils import crf_ops
from acr_plugin.models.utils.crf_ops import (
    check_crf_cfg,
    crf_refine_predictions,
    images_at_prediction_size,
)
from acr_plugin.utils import crf_available, dense_crf

needs_crf = pytest.mark.skipif(
    not crf_available(), reason='pydensecrf2 (requirements/runtime.txt) not built'
)
MEAN = [123.675, 116.28, 103.53]
STD = [58.395, 57.12, 57.375]


def _image(h, w, seed=0):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    img[: h // 2, : w // 2] = (200, 30, 60)  # a flat block, as in photos
    return img


def _normalised(img_rgb):
    x = (img_rgb.astype(np.float64) - np.array(MEAN)) / np.array(STD)
    return torch.from_numpy(x).permute(2, 0, 1).float()


@pytest.mark.parametrize('flip', [None, 'horizontal', 'vertical'])
def test_images_undo_normalisation_padding_and_flip(flip):
    img = _image(20, 28)
    x = _normalised(img)
    if flip == 'horizontal':
        x = x.flip(-1)
    elif flip == 'vertical':
        x = x.flip(-2)
    batch = torch.zeros(2, 3, 24, 32)  # zero padding right / bottom
    batch[0, :, :20, :28] = x
    batch[1, :, :20, :28] = x
    meta = dict(ori_shape=(20, 28), img_shape=(20, 28), padding_size=(0, 4, 0, 4))
    if flip:
        meta.update(flip=True, flip_direction=flip)
    samples = [SegDataSample(metainfo=meta), SegDataSample(metainfo=dict(meta))]
    samples[1].set_metainfo(dict(img_padding_size=(0, 4, 0, 4), padding_size=(9,) * 4))
    out = images_at_prediction_size(batch, samples, MEAN, STD)
    for got in out:
        assert got.dtype == np.uint8 and got.shape == (20, 28, 3)
        np.testing.assert_array_equal(got, img)


def test_images_are_resized_to_the_original_shape():
    img = _image(16, 24)
    samples = [SegDataSample(metainfo=dict(ori_shape=(32, 48)))]
    (got,) = images_at_prediction_size(_normalised(img)[None], samples, MEAN, STD)
    expected = cv2.resize(img, (48, 32), interpolation=cv2.INTER_LINEAR)
    assert got.shape == (32, 48, 3)
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1


@needs_crf
def test_refinement_is_dense_crf_of_the_softmax():
    img = _image(18, 22, seed=1)
    torch.manual_seed(0)
    logits = torch.randn(4, 18, 22) * 2
    sample = SegDataSample()
    sample.seg_logits = PixelData(data=logits.clone())
    sample.pred_sem_seg = PixelData(data=logits.argmax(0, keepdim=True))
    crf = dict(num_iters=5, bilateral_srgb=10.0)
    (out,) = crf_refine_predictions([sample], [img], crf)
    expected = dense_crf(img, logits.softmax(0).numpy(), **crf)
    # seg_logits are log marginals: exp and softmax both give the marginals
    got = out.seg_logits.data
    np.testing.assert_allclose(got.exp().numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(got.softmax(0).numpy(), expected, atol=1e-6)
    assert torch.equal(out.pred_sem_seg.data[0], torch.from_numpy(expected.argmax(0)))
    # the smoothing changed some labels of the noisy logits
    assert not torch.equal(out.pred_sem_seg.data, logits.argmax(0, keepdim=True))


def test_crf_config_errors_name_the_key(monkeypatch):
    assert check_crf_cfg(None, 'x') is None
    # the config checks do not need pydensecrf2 itself (an optional extra)
    monkeypatch.setattr(crf_ops, 'crf_available', lambda: True)
    assert check_crf_cfg({}, 'x') == {}
    with pytest.raises(ValueError, match=r"model.test_cfg.crf: unknown.*\['sxy'\]"):
        check_crf_cfg(dict(sxy=3), 'model.test_cfg.crf')
    with pytest.raises(TypeError, match='model.test_cfg.crf must be a dict'):
        check_crf_cfg(True, 'model.test_cfg.crf')
    monkeypatch.setattr(crf_ops, 'crf_available', lambda: False)
    with pytest.raises(ImportError, match='model.test_cfg.crf: .*pydensecrf2'):
        check_crf_cfg({}, 'model.test_cfg.crf')


def test_batch_and_sample_mismatch_is_an_error():
    with pytest.raises(ValueError, match='2 data samples for a batch of 1'):
        images_at_prediction_size(
            torch.zeros(1, 3, 4, 4), [SegDataSample(), SegDataSample()], MEAN, STD
        )


def test_samples_without_meta_keep_the_input_size():
    """mmseg's postprocess_result without data samples keeps the input size."""
    img = _image(12, 16)
    (got,) = images_at_prediction_size(
        _normalised(img)[None], [SegDataSample()], MEAN, STD
    )
    np.testing.assert_array_equal(got, img)


@pytest.mark.parametrize('flip', [None, 'horizontal'])
def test_images_align_with_mmseg_postprocess_result(flip):
    """The image goes through mmseg's own postprocess_result as if it were
    3-channel logits (padding removed, flip undone, resized to ori_shape):
    images_at_prediction_size must give the same pixels."""
    from types import SimpleNamespace

    from mmseg.models.segmentors.base import BaseSegmentor

    from acr_plugin.models.utils.image_augment import denormalize

    img = _image(15, 21, seed=3)
    x = _normalised(img)
    if flip:
        x = x.flip(-1)
    batch = torch.zeros(1, 3, 16, 24)
    batch[0, :, 1:16, 2:23] = x  # padding on every side
    meta = dict(ori_shape=(30, 35), img_shape=(15, 21), padding_size=(2, 1, 1, 0))
    if flip:
        meta.update(flip=True, flip_direction=flip)
    rgb = denormalize(batch, MEAN, STD) * 255.0
    (mmseg_out,) = BaseSegmentor.postprocess_result(
        SimpleNamespace(align_corners=False), rgb, [SegDataSample(metainfo=meta)]
    )
    expected = mmseg_out.seg_logits.data.round().clamp(0, 255).byte()
    (got,) = images_at_prediction_size(batch, [SegDataSample(metainfo=meta)], MEAN, STD)
    np.testing.assert_array_equal(got, expected.permute(1, 2, 0).numpy())
