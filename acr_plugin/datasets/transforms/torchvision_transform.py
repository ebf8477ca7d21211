"""Apply ``torchvision.transforms.v2`` operations inside an mmseg pipeline."""

import inspect
from typing import List, Sequence, Tuple

import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmseg.registry import TRANSFORMS
from torch import nn
from torchvision import tv_tensors
from torchvision.transforms import v2

#: torchvision ops that cannot transform masks (they raise on ``Mask`` inputs)
AUTO_AUGMENT_OPS = (v2.AutoAugment, v2.RandAugment, v2.TrivialAugmentWide, v2.AugMix)
#: ops that never move pixels but that torchvision would warn about on masks:
#: they get the image alone, the maps are left unchanged
IMAGE_ONLY_OPS = (v2.RandomErasing,)
#: map value where a geometric op has no source pixel (mmseg's ignore index)
SEG_FILL = 255


def build_torchvision_op(cfg: dict) -> nn.Module:
    """Build one ``torchvision.transforms.v2`` op from a config dict.

    ``type`` names a class of ``torchvision.transforms.v2``; the other keys
    are its arguments (``interpolation`` may be a string such as
    ``'bicubic'``; resizing ops antialias unless ``antialias`` is given, as
    torchvision >= 0.17 does by default, on every torchvision). For ops with
    a ``fill`` argument the fill becomes a per-type dict: the configured value
    (default 0) for the image and :data:`SEG_FILL` for the segmentation maps.

    Args:
        cfg (dict): e.g. ``dict(type='RandAugment', num_ops=2, magnitude=9)``.

    Returns:
        nn.Module: The op.

    Raises:
        TypeError: If ``cfg`` is not a dict with a string ``type``.
        KeyError: If ``torchvision.transforms.v2`` has no such op.
    """
    if not isinstance(cfg, dict) or not isinstance(cfg.get('type'), str):
        raise TypeError(
            'TorchvisionTransforms: every transform must be a dict with a '
            f'"type" naming a torchvision.transforms.v2 class, got {cfg!r}'
        )
    args = dict(cfg)
    name = args.pop('type')
    op_cls = getattr(v2, name, None)
    if not (inspect.isclass(op_cls) and issubclass(op_cls, nn.Module)):
        raise KeyError(
            f'TorchvisionTransforms: torchvision.transforms.v2 has no transform '
            f'"{name}"'
        )
    params = inspect.signature(op_cls).parameters
    if isinstance(args.get('interpolation'), str):
        # torchvision < 0.17 accepts the enum only
        args['interpolation'] = v2.InterpolationMode(args['interpolation'])
    if 'antialias' in params and 'antialias' not in args:
        # the default of torchvision >= 0.17 (and of PIL, which DeiT's
        # recipes resized with); 0.16 defaulted to no antialiasing on tensors
        args['antialias'] = True
    if 'fill' in params:
        image_fill = args.pop('fill', None)
        args['fill'] = {
            tv_tensors.Image: 0 if image_fill is None else image_fill,
            tv_tensors.Mask: SEG_FILL,
        }
    return op_cls(**args)


def image_to_tensor(img: np.ndarray) -> tv_tensors.Image:
    """``(H, W, 3)`` BGR (or ``(H, W)`` grey) uint8 array -> RGB ``Image``."""
    if img.dtype != np.uint8 or img.ndim not in (2, 3):
        raise ValueError(
            'TorchvisionTransforms expects results["img"] as an (H, W, 3) or '
            f'(H, W) uint8 array, got {img.dtype} of shape {img.shape}'
        )
    if img.ndim == 2:
        img = img[:, :, None]
    elif img.shape[2] == 3:
        img = img[:, :, ::-1]  # BGR -> RGB
    else:
        raise ValueError(
            f'TorchvisionTransforms expects 1 or 3 image channels, got {img.shape[2]}'
        )
    return tv_tensors.Image(
        torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)
    )


def tensor_to_image(image: torch.Tensor, grey: bool) -> np.ndarray:
    """Inverse of :func:`image_to_tensor`: RGB ``(3, H, W)`` -> BGR HWC."""
    array = image.permute(1, 2, 0).numpy()
    array = array[:, :, 0] if grey else array[:, :, ::-1]
    return np.ascontiguousarray(array)


@TRANSFORMS.register_module()
class TorchvisionTransforms(BaseTransform):
    """Run ``torchvision.transforms.v2`` ops on ``results['img']`` and its maps.

    Each op in ``transforms`` is a config dict naming a
    ``torchvision.transforms.v2`` class (e.g. MCTformer's / DeiT's
    ``RandomResizedCrop``, ``RandomHorizontalFlip``, ``RandAugment``,
    ``RandomErasing``). The ops run in order, each called once on the image
    together with every map of ``results['seg_fields']`` (as
    ``tv_tensors.Mask``), so random parameters are shared and geometric ops
    move the maps with the image (nearest interpolation, 255 (ignore) where
    there is no source pixel); photometric ops leave the maps unchanged.

    Colour order: ``results['img']`` is mmcv's HWC uint8 **BGR**. It is
    converted to RGB for the ops (torchvision assumes RGB: saturation,
    greyscale and hue use RGB weights) and back to BGR afterwards, so the
    pipeline still sees BGR. ``img_shape`` is updated.

    Special cases:

    * ``RandomErasing`` gets the image alone (it never moves pixels). It
      runs on the uint8 image before normalisation, so its default
      ``value=0`` erases to black (DeiT erases normalised tensors with
      Gaussian noise).
    * Auto-augment ops (``RandAugment``, ``AutoAugment``,
      ``TrivialAugmentWide``, ``AugMix``) mix geometric and colour ops and
      torchvision cannot apply them to masks: with maps present they raise,
      unless ``drop_seg_maps=True`` removed the maps first.

    Required keys: ``img``. Modified keys: ``img``, ``img_shape`` and the
    maps in ``seg_fields`` (removed, with ``seg_fields`` emptied, when
    ``drop_seg_maps``).

    Args:
        transforms (Sequence[dict]): Op configs, e.g.
            ``[dict(type='RandomResizedCrop', size=224, scale=(0.08, 1.0)),
            dict(type='RandAugment', num_ops=2, magnitude=9),
            dict(type='RandomErasing', p=0.25)]``.
        drop_seg_maps (bool): Delete every map of ``seg_fields`` before the
            ops, for training pipelines that only use image-level labels
            (derived before this transform). Defaults to False.
    """

    def __init__(
        self,
        transforms: Sequence[dict],
        drop_seg_maps: bool = False,
    ) -> None:
        super().__init__()
        if isinstance(transforms, dict) or not isinstance(transforms, Sequence):
            raise TypeError(
                'TorchvisionTransforms: transforms must be a list of op '
                f'configs, got {type(transforms).__name__}'
            )
        self.ops: List[nn.Module] = [build_torchvision_op(cfg) for cfg in transforms]
        self.transform_cfgs = [dict(cfg) for cfg in transforms]
        self.drop_seg_maps = drop_seg_maps

    def _maps(self, results: dict, shape: Tuple[int, int]) -> List[str]:
        keys = [k for k in results.get('seg_fields', []) if k in results]
        for key in keys:
            if tuple(results[key].shape[:2]) != shape or results[key].ndim != 2:
                raise ValueError(
                    f'TorchvisionTransforms: map "{key}" of shape '
                    f'{results[key].shape} does not match the {shape} image'
                )
        return keys

    def transform(self, results: dict) -> dict:
        """Apply the ops to ``results['img']`` and its maps."""
        if 'img' not in results:
            raise KeyError('TorchvisionTransforms needs results["img"]')
        grey = results['img'].ndim == 2
        image = image_to_tensor(results['img'])
        if self.drop_seg_maps:
            for key in results.get('seg_fields', []):
                results.pop(key, None)
            results['seg_fields'] = []
        keys = self._maps(results, tuple(image.shape[-2:]))
        dtypes = [results[k].dtype for k in keys]
        masks = [
            tv_tensors.Mask(torch.from_numpy(np.ascontiguousarray(results[k])))
            for k in keys
        ]
        for op in self.ops:
            if masks and isinstance(op, AUTO_AUGMENT_OPS):
                raise TypeError(
                    f'TorchvisionTransforms: {type(op).__name__} cannot transform '
                    f'the segmentation maps {keys} (torchvision applies it to '
                    'images only); set drop_seg_maps=True if the pipeline needs '
                    'no pixel labels after it (image-level labels derived '
                    'before), or remove the op'
                )
            if masks and not isinstance(op, IMAGE_ONLY_OPS):
                image, *masks = op(image, *masks)
            else:
                image = op(image)
        img = tensor_to_image(image, grey)
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        for key, mask, dtype in zip(keys, masks, dtypes):
            results[key] = np.ascontiguousarray(mask.numpy()).astype(dtype, copy=False)
        return results

    def __repr__(self) -> str:
        return (
            f'{type(self).__name__}(transforms={self.transform_cfgs}, '
            f'drop_seg_maps={self.drop_seg_maps})'
        )
