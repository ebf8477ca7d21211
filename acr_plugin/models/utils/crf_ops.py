"""Dense-CRF post-processing of segmentation predictions at test time.

ToCo refines its decoder's test predictions with a dense CRF (Ru et al., CVPR 2023,
"Seg test: scales + flip; CRF"). The CRF needs the image at the size of the
prediction, so :func:`images_at_prediction_size` undoes the padding, flip and
resize exactly as mmseg's ``BaseSegmentor.postprocess_result`` does for the
logits; :func:`crf_refine_predictions` then replaces ``seg_logits`` by the
log of the CRF marginals of ``softmax(seg_logits)`` (so a softmax of the new
logits, as mmseg's TTA merge takes, gives the marginals back) and
``pred_sem_seg`` by their argmax.
"""

import inspect
from typing import List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.structures import PixelData
from mmseg.utils import SampleList
from torch import Tensor

from acr_plugin.models.utils.image_augment import denormalize
from acr_plugin.utils.dense_crf import CRF_INSTALL_HINT, crf_available, dense_crf

#: keyword arguments of :func:`acr_plugin.utils.dense_crf` a CRF config may set
CRF_KEYS = tuple(inspect.signature(dense_crf).parameters)[2:]  # after img, probs


def check_crf_cfg(crf: Optional[dict], where: str) -> Optional[dict]:
    """Validate a test-time CRF config (None = no CRF).

    Args:
        crf (dict, optional): Keyword arguments of ``dense_crf`` (all
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


def images_at_prediction_size(
    inputs: Tensor,
    data_samples: SampleList,
    mean: Sequence[float],
    std: Sequence[float],
    align_corners: bool = False,
) -> List[np.ndarray]:
    """uint8 RGB images aligned pixel for pixel with mmseg's predictions.

    For each sample: undo the normalisation, remove the batch padding
    (``img_padding_size``, else ``padding_size``), undo a recorded flip
    (``flip`` / ``flip_direction``) and resize (bilinear) to ``ori_shape`` -
    the steps of ``BaseSegmentor.postprocess_result`` (which, without a
    meta, leaves the prediction at the input size: so does this).

    Args:
        inputs (Tensor): ``(B, 3, H, W)`` normalised RGB batch.
        data_samples (list[SegDataSample]): Their samples (metainfo).
        mean (Sequence[float]): Normalisation mean (0..255, RGB).
        std (Sequence[float]): Normalisation std (0..255, RGB).
        align_corners (bool): As the model's postprocess. Defaults to False.

    Returns:
        list[np.ndarray]: ``ori_shape + (3,)`` uint8 images.
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
        size = tuple(int(v) for v in meta.get('ori_shape', img.shape[-2:])[:2])
        if tuple(img.shape[-2:]) != size:
            img = F.interpolate(
                img[None], size=size, mode='bilinear', align_corners=align_corners
            )[0]
        img = img.round().clamp(0, 255).byte().permute(1, 2, 0)
        out.append(np.ascontiguousarray(img.cpu().numpy()))
    return out


def crf_refine_predictions(
    results: SampleList, images: Sequence[np.ndarray], crf: dict
) -> SampleList:
    """Replace each prediction by the dense-CRF marginals of its softmax.

    Args:
        results (list[SegDataSample]): Post-processed predictions with
            ``seg_logits`` ``(C + 1, H, W)`` (logits of all classes).
        images (Sequence[np.ndarray]): ``H x W x 3`` uint8 images
            (:func:`images_at_prediction_size`).
        crf (dict): Keyword arguments of ``dense_crf``.

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
