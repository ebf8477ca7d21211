"""Dense-CRF refinement: the CRF itself, its inputs and its two uses.

The one place for the fully connected CRF (Krähenbühl & Koltun) of the
package: mean-field inference through the ``pydensecrf2`` package (PyPI, MIT;
import name ``pydensecrf``), the scores and images it refines, and the two
refinements built on it - pseudo labels from CAMs (:func:`crf_refine_labels`,
used by :mod:`acr_plugin.apis`) and ToCo's test-time refinement of
segmentation predictions (:func:`crf_refine_predictions`; Ru et al., CVPR
2023, "Seg test: scales + flip; CRF").

Image convention: every CRF image is an ``H x W x 3`` **uint8 RGB** array at
the size of the scores it refines (the prediction size). One function makes
it, :func:`crf_image` (bilinear resize of a ``(3, h, w)`` RGB tensor in
0..255, then round and clamp); its two routes are
:func:`images_at_prediction_size` (a normalised RGB batch after the data
preprocessor: undo normalisation, padding and flip as mmseg's
``BaseSegmentor.postprocess_result`` does for the logits) and
:func:`packed_image_for_crf` (one sample as ``PackSegInputs`` packs it, BGR
0..255, before the preprocessor).

Defaults are the ACR pseudo-label parameters (Sun et al., arXiv 2308.04321): a
Gaussian kernel (``sxy`` 3, compatibility 3), a bilateral kernel (``sxy`` 80,
``srgb`` 13, compatibility 10) and 10 iterations; the background score of CAMs
is ``(1 - max_c M_c) ** alpha``.
"""

import inspect
from typing import List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.structures import PixelData
from mmseg.utils import SampleList
from torch import Tensor

from acr_plugin.models.utils.image_norm import denormalize

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


#: keyword arguments of :func:`dense_crf` a CRF config may set
CRF_KEYS = tuple(inspect.signature(dense_crf).parameters)[2:]  # after img, probs


def check_crf_cfg(crf: Optional[dict], where: str) -> Optional[dict]:
    """Validate a test-time CRF config (None = no CRF).

    Args:
        crf (dict, optional): Keyword arguments of :func:`dense_crf` (all
            optional: ``{}`` runs the defaults).
        where (str): The config key, quoted by the errors.

    Returns:
        dict | None: A copy of ``crf``.

    Raises:
        TypeError: ``crf`` is neither a dict nor None.
        ValueError: An unknown key.
        ImportError: ``pydensecrf2`` is not installed.
    """
    if crf is None:
        return None
    if not isinstance(crf, dict):
        raise TypeError(
            f'{where} must be a dict of dense-CRF arguments or None, got '
            f'{type(crf).__name__}'
        )
    unknown = sorted(set(crf) - set(CRF_KEYS))
    if unknown:
        raise ValueError(
            f'{where}: unknown dense-CRF keys {unknown}; valid keys: {list(CRF_KEYS)}'
        )
    if not crf_available():
        raise ImportError(f'{where}: {CRF_INSTALL_HINT}')
    return dict(crf)


def crf_scores(
    seg_logits: Tensor, bg_thr: Optional[float] = None, alpha: Optional[float] = None
) -> np.ndarray:
    """Per-class scores (background first) that a dense CRF refines.

    Args:
        seg_logits (Tensor): ``(C + 1, H, W)`` with CAMs in ``[0, 1]``.
        bg_thr (float, optional): Constant background score. Defaults to None
            (channel 0 as predicted).
        alpha (float, optional): If given, the background score is
            ``(1 - max_c M_c) ** alpha`` instead (Sun et al., arXiv
            2308.04321; ``bg_thr`` is then unused). Defaults to None.

    Returns:
        np.ndarray: float32 ``(C + 1, H, W)``.
    """
    scores = seg_logits.detach().float().cpu()
    if alpha is not None:
        return background_from_cams(scores[1:].numpy(), alpha)
    scores = scores.clone()
    if bg_thr is not None:
        scores[0] = bg_thr
    return scores.numpy()


# ------------------------------------------------------------------ images
def crf_image(
    img: Tensor, size: Sequence[int], align_corners: bool = False
) -> np.ndarray:
    """The CRF image convention: ``H x W x 3`` uint8 RGB at ``size``.

    Args:
        img (Tensor): ``(3, h, w)`` RGB image in 0..255 (float).
        size (Sequence[int]): ``(H, W)`` of the scores the CRF refines.
        align_corners (bool): Of the bilinear resize (only when ``(h, w)``
            differs from ``size``). Defaults to False.

    Returns:
        np.ndarray: The rounded and clamped image, C-contiguous.
    """
    size = (int(size[0]), int(size[1]))
    if tuple(img.shape[-2:]) != size:
        img = F.interpolate(
            img[None], size=size, mode='bilinear', align_corners=align_corners
        )[0]
    img = img.round().clamp(0, 255).byte().permute(1, 2, 0)
    return np.ascontiguousarray(img.cpu().numpy())


def packed_image_for_crf(inputs: Tensor, ori_shape: Sequence[int]) -> np.ndarray:
    """CRF image (:func:`crf_image`) of one sample as ``PackSegInputs`` packs it.

    Args:
        inputs (Tensor): ``(3, h, w)`` image before the data preprocessor
            (BGR 0..255, as mmcv loads images).
        ori_shape (Sequence[int]): ``(H, W)`` of the seg logits.

    Returns:
        np.ndarray: ``ori_shape + (3,)`` uint8 RGB image, resized (bilinear)
        when ``(h, w)`` differs.
    """
    img = inputs.detach().cpu()
    if img.dim() != 3 or img.shape[0] != 3:
        raise ValueError(
            f'dense CRF needs a 3-channel image (3, H, W), got {tuple(img.shape)}'
        )
    return crf_image(img.float().flip(0), ori_shape)  # BGR -> RGB


def images_at_prediction_size(
    inputs: Tensor,
    data_samples: SampleList,
    mean: Sequence[float],
    std: Sequence[float],
    align_corners: bool = False,
) -> List[np.ndarray]:
    """CRF images (:func:`crf_image`) aligned pixel for pixel with mmseg's predictions.

    For each sample of a normalised batch: undo the normalisation, remove the
    batch padding (``img_padding_size``, else ``padding_size``), undo a
    recorded flip (``flip`` / ``flip_direction``) and resize (bilinear) to
    ``ori_shape`` - the steps of ``BaseSegmentor.postprocess_result`` (which,
    without a meta, leaves the prediction at the input size: so does this).

    Args:
        inputs (Tensor): ``(B, 3, H, W)`` normalised RGB batch.
        data_samples (list[SegDataSample]): Their samples (metainfo).
        mean (Sequence[float]): Normalisation mean (0..255, RGB).
        std (Sequence[float]): Normalisation std (0..255, RGB).
        align_corners (bool): As the model's postprocess. Defaults to False.

    Returns:
        list[np.ndarray]: ``ori_shape + (3,)`` uint8 RGB images.
    """
    if inputs.dim() != 4 or inputs.shape[1] != 3:
        raise ValueError(f'expected a (B, 3, H, W) batch, got {tuple(inputs.shape)}')
    if len(data_samples) != inputs.shape[0]:
        raise ValueError(
            f'{len(data_samples)} data samples for a batch of {inputs.shape[0]}'
        )
    images = denormalize(inputs.detach().float(), mean, std) * 255.0
    height, width = images.shape[-2:]
    out = []
    for img, sample in zip(images, data_samples):
        meta = sample.metainfo
        if 'img_padding_size' in meta:
            padding = meta['img_padding_size']
        else:
            padding = meta.get('padding_size', (0, 0, 0, 0))
        left, right, top, bottom = (int(v) for v in padding)
        img = img[:, top : height - bottom, left : width - right]
        if meta.get('flip'):
            direction = meta.get('flip_direction')
            if direction not in ('horizontal', 'vertical'):
                raise ValueError(
                    'flip_direction must be "horizontal" or "vertical", got '
                    f'{direction!r}'
                )
            img = img.flip(-1 if direction == 'horizontal' else -2)
        # no ori_shape (predict without data samples): mmseg keeps the size
        size = meta.get('ori_shape', img.shape[-2:])[:2]
        out.append(crf_image(img, size, align_corners))
    return out


# ------------------------------------------------------------------ predictions
def crf_refine_predictions(
    results: SampleList, images: Sequence[np.ndarray], crf: dict
) -> SampleList:
    """Replace each prediction by the dense-CRF marginals of its softmax.

    ``seg_logits`` become the log of the marginals (so a softmax of the new
    logits, as mmseg's TTA merge takes, gives the marginals back) and
    ``pred_sem_seg`` their argmax.

    Args:
        results (list[SegDataSample]): Post-processed predictions with
            ``seg_logits`` ``(C + 1, H, W)`` (logits of all classes).
        images (Sequence[np.ndarray]): CRF images
            (:func:`images_at_prediction_size`).
        crf (dict): Keyword arguments of :func:`dense_crf`.

    Returns:
        list[SegDataSample]: ``results``, with ``seg_logits`` = log marginals
        ``(C + 1, H, W)`` (``softmax`` of them = the marginals, which sum to
        one per pixel) and ``pred_sem_seg`` their argmax.
    """
    for sample, img in zip(results, images):
        logits = sample.seg_logits.data
        probs = logits.float().softmax(dim=0)
        marginals = dense_crf(img, probs.cpu().numpy(), **crf)
        marginals = logits.new_tensor(marginals)
        log_marginals = marginals.clamp(min=torch.finfo(marginals.dtype).tiny).log()
        sample.set_data(
            {
                'seg_logits': PixelData(data=log_marginals),
                'pred_sem_seg': PixelData(data=marginals.argmax(dim=0, keepdim=True)),
            }
        )
    return results
