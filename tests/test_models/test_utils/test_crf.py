"""Dense CRF (``acr_plugin.models.utils.crf``): inference, pseudo-label
refinement, CRF images aligned with mmseg's postprocess, test-time refinement."""

import cv2
import numpy as np
import pytest
import torch
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

from acr_plugin.models.utils import crf
from acr_plugin.models.utils.crf import (
    background_from_cams,
    check_crf_cfg,
    crf_available,
    crf_refine_labels,
    crf_refine_predictions,
    dense_crf,
    images_at_prediction_size,
    packed_image_for_crf,
)

needs_crf = pytest.mark.skipif(
    not crf_available(), reason='pydensecrf2 (requirements/runtime.txt) not built'
)


def _two_tone(h: int = 24, w: int = 32) -> np.ndarray:
    """Left half dark red, right half light blue."""
    img = np.zeros((h, w, 3), np.uint8)
    img[:, : w // 2] = (120, 20, 20)
    img[:, w // 2 :] = (40, 160, 230)
    return img


def test_background_from_cams():
    rng = np.random.default_rng(0)
    cams = rng.random((3, 5, 6)).astype(np.float32)
    cams[1] = 0  # an absent class
    for alpha in (1.0, 12.0):
        out = background_from_cams(cams, alpha)
        assert out.shape == (4, 5, 6) and out.dtype == np.float32
        np.testing.assert_array_equal(out[1:], cams)
        for y in range(5):
            for x in range(6):
                expected = (1.0 - max(cams[:, y, x])) ** alpha
                assert out[0, y, x] == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match='alpha'):
        background_from_cams(cams, 0.0)
    with pytest.raises(ValueError, match=r'\(C, H, W\)'):
        background_from_cams(cams[0], 1.0)


@needs_crf
def test_zero_pairwise_is_unary_softmax():
    """Without pairwise terms the marginals are the normalised scores."""
    rng = np.random.default_rng(1)
    probs = rng.random((4, 9, 11)).astype(np.float32)
    probs[2, :3] = 0.0  # clipped to eps before the log
    img = rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)
    q = dense_crf(img, probs, gaussian_compat=0.0, bilateral_compat=0.0)
    assert q.shape == probs.shape and q.dtype == np.float32
    clipped = np.maximum(probs, 1e-5)
    expected = clipped / clipped.sum(axis=0, keepdims=True)
    np.testing.assert_allclose(q, expected, atol=1e-5)
    labels = crf_refine_labels(
        img,
        np.concatenate([np.full((1, 9, 11), 0.5, np.float32), probs]),
        gaussian_compat=0.0,
        bilateral_compat=0.0,
    )
    assert labels.dtype == np.int64 and labels.shape == (9, 11)
    unary = np.concatenate([np.full((1, 9, 11), 0.5), clipped]).argmax(axis=0)
    np.testing.assert_array_equal(labels, unary)


@needs_crf
def test_crf_removes_noise_inside_colour_regions():
    img = _two_tone()
    h, w = img.shape[:2]
    # class 1 on the left, class 3 on the right; salt noise (10 % of pixels)
    # makes the other class win narrowly
    scores = np.zeros((4, h, w), np.float32)
    scores[0] = 0.3
    left = np.zeros((h, w), bool)
    left[:, : w // 2] = True
    noise = np.random.default_rng(2).random((h, w)) < 0.1
    scores[1] = np.where(left, 0.7, 0.05)
    scores[3] = np.where(left, 0.05, 0.7)
    scores[1][noise & ~left], scores[3][noise & left] = 0.5, 0.5
    scores[1][noise & left], scores[3][noise & ~left] = 0.4, 0.4
    noisy = scores.argmax(axis=0)
    assert (noisy[:, : w // 2] != 1).sum() > 5  # the noise is visible
    labels = crf_refine_labels(img, scores)
    expected = np.ones((h, w), np.int64)
    expected[:, w // 2 :] = 3
    np.testing.assert_array_equal(labels, expected)
    # class 2 is absent (all zero): it never takes part
    assert 2 not in labels


@needs_crf
def test_crf_channels_and_errors():
    img = _two_tone(8, 8)
    scores = np.zeros((3, 8, 8), np.float32)
    scores[0] = 0.2
    scores[2] = 0.9
    # restricting to the background alone gives background everywhere
    assert (crf_refine_labels(img, scores, channels=np.array([], np.int64)) == 0).all()
    assert (crf_refine_labels(img, scores) == 2).all()
    with pytest.raises(ValueError, match='uint8 image'):
        dense_crf(img.astype(np.float32), scores)
    with pytest.raises(ValueError, match='uint8 image'):
        dense_crf(img[:4], scores)
    with pytest.raises(ValueError, match=r'\(C \+ 1, H, W\)'):
        crf_refine_labels(img, scores[:1])


def test_missing_backend_message(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.startswith('pydensecrf'):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, '__import__', fake_import)
    assert not crf_available()
    with pytest.raises(ImportError, match='pydensecrf2'):
        dense_crf(_two_tone(4, 4), np.ones((2, 4, 4), np.float32))


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
    monkeypatch.setattr(crf, 'crf_available', lambda: True)
    assert check_crf_cfg({}, 'x') == {}
    with pytest.raises(ValueError, match=r"model.test_cfg.crf: unknown.*\['sxy'\]"):
        check_crf_cfg(dict(sxy=3), 'model.test_cfg.crf')
    with pytest.raises(TypeError, match='model.test_cfg.crf must be a dict'):
        check_crf_cfg(True, 'model.test_cfg.crf')
    monkeypatch.setattr(crf, 'crf_available', lambda: False)
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

    from acr_plugin.models.utils.image_norm import denormalize

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


def test_both_image_routes_give_the_same_rgb_pixels():
    """A packed BGR sample and its normalised RGB batch give one CRF image."""
    img = _image(20, 28, seed=3)
    packed = torch.from_numpy(img[..., ::-1].copy()).permute(2, 0, 1)  # BGR
    from_packed = packed_image_for_crf(packed, (20, 28))
    assert from_packed.dtype == np.uint8 and from_packed.flags.c_contiguous
    np.testing.assert_array_equal(from_packed, img)
    meta = dict(ori_shape=(20, 28), img_shape=(20, 28))
    (from_batch,) = images_at_prediction_size(
        _normalised(img)[None], [SegDataSample(metainfo=meta)], MEAN, STD
    )
    np.testing.assert_array_equal(from_batch, from_packed)
    resized = packed_image_for_crf(packed, (10, 14))
    expected = cv2.resize(
        img.astype(np.float32), (14, 10), interpolation=cv2.INTER_LINEAR
    )
    assert np.abs(resized.astype(int) - np.rint(expected).astype(int)).max() <= 1
    with pytest.raises(ValueError, match='3-channel'):
        packed_image_for_crf(packed[:1], (20, 28))
