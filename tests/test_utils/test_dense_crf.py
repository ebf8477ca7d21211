"""Dense CRF refinement of pseudo labels (``acr_plugin.utils.dense_crf``)."""

import numpy as np
import pytest

from acr_plugin.utils import (
    background_from_cams,
    crf_available,
    crf_refine_labels,
    dense_crf,
)

needs_crf = pytest.mark.skipif(not crf_available(), reason='pydensecrf2 missing')


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
