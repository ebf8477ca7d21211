"""Fully connected CRF refinement of CAM pseudo labels (pure numpy functions).

The mean-field inference is Krähenbühl & Koltun's dense CRF through the
``pydensecrf2`` package (PyPI, MIT; import name ``pydensecrf``). Defaults are
the ACR pseudo-label parameters (Sun et al., arXiv 2308.04321): a Gaussian kernel
(``sxy`` 3, compatibility 3), a bilateral kernel (``sxy`` 80, ``srgb`` 13,
compatibility 10) and 10 iterations; the background score of CAMs is
``(1 - max_c M_c) ** alpha``.
"""

from typing import Optional

import numpy as np

#: how to install the optional dependency (quoted by the error messages)
CRF_INSTALL_HINT = (
    'dense CRF needs the "pydensecrf2" package (pip install pydensecrf2==1.1, '
    'pinned in requirements/runtime.txt; it compiles in ~40 s and needs a C++ '
    'compiler)'
)


def crf_available() -> bool:
    """Whether the dense CRF backend (``pydensecrf``) can be imported."""
    try:
        import pydensecrf.densecrf  # noqa: F401
    except ImportError:
        return False
    return True


def _densecrf_module():
    try:
        import pydensecrf.densecrf as dcrf
    except ImportError as err:
        raise ImportError(CRF_INSTALL_HINT) from err
    return dcrf


def background_from_cams(cams: np.ndarray, alpha: float) -> np.ndarray:
    """Prepend the background score ``(1 - max_c M_c) ** alpha`` to CAMs.

    Args:
        cams (np.ndarray): Foreground CAMs ``(C, H, W)`` in ``[0, 1]``
            (absent classes all zero).
        alpha (float): Power of the background score (ACR/PSA use 1 and 12;
            a larger power gives a weaker background).

    Returns:
        np.ndarray: float32 scores ``(C + 1, H, W)``, channel 0 the
        background.
    """
    cams = np.asarray(cams, dtype=np.float32)
    if cams.ndim != 3 or cams.shape[0] < 1:
        raise ValueError(f'expected CAMs of shape (C, H, W), got {cams.shape}')
    if alpha <= 0:
        raise ValueError(f'background power alpha must be > 0, got {alpha}')
    fg_max = np.clip(cams.max(axis=0), 0.0, 1.0)
    background = np.power(1.0 - fg_max, alpha, dtype=np.float32)
    return np.concatenate([background[None], cams], axis=0)


def dense_crf(
    img: np.ndarray,
    probs: np.ndarray,
    num_iters: int = 10,
    gaussian_sxy: float = 3.0,
    gaussian_compat: float = 3.0,
    bilateral_sxy: float = 80.0,
    bilateral_srgb: float = 13.0,
    bilateral_compat: float = 10.0,
    eps: float = 1e-5,
) -> np.ndarray:
    """Mean-field marginals of a fully connected CRF over ``K`` labels.

    The unary energy is ``-log(clip(probs, eps, 1))`` (scores need not sum to
    one); the pairwise terms are Potts models weighted by a Gaussian kernel on
    pixel positions and a bilateral kernel on positions and colours. With both
    compatibilities 0 the marginals are ``softmax(log probs)`` over labels.

    Args:
        img (np.ndarray): ``H x W x 3`` uint8 image (colour order only has to
            match across pixels).
        probs (np.ndarray): Scores ``(K, H, W)``, K >= 1.
        num_iters (int): Mean-field iterations. Defaults to 10.
        gaussian_sxy (float): Spatial std of the Gaussian kernel (pixels).
            Defaults to 3.0.
        gaussian_compat (float): Potts weight of the Gaussian kernel.
            Defaults to 3.0.
        bilateral_sxy (float): Spatial std of the bilateral kernel.
            Defaults to 80.0.
        bilateral_srgb (float): Colour std of the bilateral kernel.
            Defaults to 13.0.
        bilateral_compat (float): Potts weight of the bilateral kernel.
            Defaults to 10.0.
        eps (float): Lower clip of the scores before the log. Defaults to 1e-5.

    Returns:
        np.ndarray: float32 marginals ``(K, H, W)`` (each pixel sums to one).
    """
    img = np.asarray(img)
    probs = np.asarray(probs, dtype=np.float32)
    if probs.ndim != 3 or probs.shape[0] < 1:
        raise ValueError(f'expected scores of shape (K, H, W), got {probs.shape}')
    num_labels, h, w = probs.shape
    if img.shape != (h, w, 3) or img.dtype != np.uint8:
        raise ValueError(
            f'expected an uint8 image of shape {(h, w, 3)} for scores of shape '
            f'{probs.shape}, got {img.dtype} {img.shape}'
        )
    if num_iters < 0:
        raise ValueError(f'num_iters must be >= 0, got {num_iters}')
    dcrf = _densecrf_module()
    crf = dcrf.DenseCRF2D(w, h, num_labels)
    unary = -np.log(np.clip(probs, eps, 1.0)).reshape(num_labels, -1)
    crf.setUnaryEnergy(np.ascontiguousarray(unary, dtype=np.float32))
    crf.addPairwiseGaussian(sxy=gaussian_sxy, compat=gaussian_compat)
    crf.addPairwiseBilateral(
        sxy=bilateral_sxy,
        srgb=bilateral_srgb,
        rgbim=np.ascontiguousarray(img),
        compat=bilateral_compat,
    )
    marginals = np.asarray(crf.inference(num_iters), dtype=np.float32)
    return marginals.reshape(num_labels, h, w)


def crf_refine_labels(
    img: np.ndarray,
    scores: np.ndarray,
    channels: Optional[np.ndarray] = None,
    **crf_kwargs,
) -> np.ndarray:
    """Dense-CRF label map from per-class scores (background = channel 0).

    Only the background and the classes that are active somewhere (any score
    above zero) take part, as in the usual WSSS pseudo-label scripts, so
    absent classes can never appear and inference cost scales with the
    classes present.

    Args:
        img (np.ndarray): ``H x W x 3`` uint8 image.
        scores (np.ndarray): ``(C + 1, H, W)`` scores in ``[0, 1]``, channel 0
            the background (e.g. :func:`background_from_cams`, or a constant
            threshold plane).
        channels (np.ndarray, optional): Class indices taking part (channel 0
            is always added). Defaults to None (those with a positive score).
        **crf_kwargs: Arguments of :func:`dense_crf`.

    Returns:
        np.ndarray: int64 ``(H, W)`` labels in ``[0, C]``.
    """
    scores = np.asarray(scores, dtype=np.float32)
    if scores.ndim != 3 or scores.shape[0] < 2:
        raise ValueError(
            f'expected scores of shape (C + 1, H, W) with C >= 1, got {scores.shape}'
        )
    if channels is None:
        channels = np.flatnonzero(
            scores[1:].reshape(scores.shape[0] - 1, -1).max(1) > 0
        )
        channels = channels + 1
    channels = np.unique(np.concatenate([[0], np.asarray(channels, dtype=np.int64)]))
    marginals = dense_crf(img, scores[channels], **crf_kwargs)
    return channels[marginals.argmax(axis=0)]
