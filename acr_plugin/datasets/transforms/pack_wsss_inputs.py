"""Pack WSSS inputs: image-level labels in, pixel labels out (for training)."""

from typing import Sequence, Set

import numpy as np
import torch
from mmcv.transforms import to_tensor
from mmengine.structures import PixelData
from mmseg.datasets.transforms import PackSegInputs
from mmseg.registry import TRANSFORMS

from acr_plugin.structures import IMG_LABELS, PART_MAP

#: results keys holding pixel-level labels, on top of ``results['seg_fields']``
PIXEL_LABEL_KEYS = ('gt_seg_map', 'gt_edge_map', 'gt_depth_map', PART_MAP)
#: meta keys that point at pixel labels
PIXEL_LABEL_META_KEYS = ('seg_map_path',)


@TRANSFORMS.register_module()
class PackWSSSInputs(PackSegInputs):
    """Pack an image, its image-level labels and (optionally) pixel labels.

    Works like mmseg's ``PackSegInputs`` and additionally stores
    ``img_labels`` as a data field of the ``SegDataSample`` (a float
    ``torch.Tensor`` of shape ``(C,)``).

    With ``keep_pixel_labels=False`` (the default, for *training* samples of
    weakly-supervised methods) every pixel-level label is kept out of the
    sample: ``gt_seg_map``/``gt_edge_map``/``gt_depth_map``/``gt_part_map``,
    every key listed in ``results['seg_fields']`` and the ``seg_map_path``
    meta, so no model can read them. With ``keep_pixel_labels=True``
    (validation/test samples) ``gt_sem_seg`` (and ``gt_edge_map``,
    ``gt_depth_map``) are packed as by ``PackSegInputs`` and ``gt_part_map``,
    when present, as a ``PixelData`` field of the same name.

    Required Keys:

    - img
    - img_labels (np.ndarray | Sequence[float]): multi-hot ``(C,)``.

    Args:
        keep_pixel_labels (bool): Whether to pack pixel labels. Defaults to
            False.
        meta_keys (Sequence[str]): Meta keys to pack. Defaults to mmseg's
            ``PackSegInputs`` defaults ``('img_path', 'seg_map_path',
            'ori_shape', 'img_shape', 'pad_shape', 'scale_factor', 'flip',
            'flip_direction', 'reduce_zero_label')``; ``seg_map_path`` is
            dropped when ``keep_pixel_labels=False``.
    """

    def __init__(
        self,
        keep_pixel_labels: bool = False,
        meta_keys: Sequence[str] = (
            'img_path',
            'seg_map_path',
            'ori_shape',
            'img_shape',
            'pad_shape',
            'scale_factor',
            'flip',
            'flip_direction',
            'reduce_zero_label',
        ),
    ) -> None:
        super().__init__(meta_keys=meta_keys)
        self.keep_pixel_labels = keep_pixel_labels

    @staticmethod
    def _pixel_label_keys(results: dict) -> Set[str]:
        """Keys of ``results`` that hold pixel labels or point at them."""
        keys = set(PIXEL_LABEL_KEYS) | set(PIXEL_LABEL_META_KEYS)
        keys.update(results.get('seg_fields', ()))
        return keys

    def transform(self, results: dict) -> dict:
        """Pack ``results`` into ``inputs`` and a ``SegDataSample``.

        Args:
            results (dict): Result dict from the data pipeline.

        Returns:
            dict: ``inputs`` (``torch.Tensor`` ``(3, H, W)``) and
            ``data_samples`` (``SegDataSample`` with ``img_labels``).
        """
        if results.get(IMG_LABELS) is None:
            raise KeyError(
                f'PackWSSSInputs needs "{IMG_LABELS}" (image '
                f'{results.get("img_path")}): add DeriveImageLabels or '
                'LoadImageLabels to the pipeline before it'
            )
        img_labels = np.asarray(results[IMG_LABELS], dtype=np.float32)
        if img_labels.ndim != 1:
            raise ValueError(
                f'"{IMG_LABELS}" must be a 1-D multi-hot vector, got shape '
                f'{img_labels.shape} (image {results.get("img_path")})'
            )

        if self.keep_pixel_labels:
            packed = super().transform(results)
        else:
            hidden = self._pixel_label_keys(results)
            packed = super().transform(
                {k: v for k, v in results.items() if k not in hidden}
            )
        data_sample = packed['data_samples']
        data_sample.set_data({IMG_LABELS: torch.from_numpy(img_labels.copy())})

        if self.keep_pixel_labels:
            part_map = results.get(PART_MAP)
            if part_map is not None:
                part = to_tensor(np.asarray(part_map)[None].astype(np.int64))
                data_sample.set_data({PART_MAP: PixelData(data=part)})
        else:
            # Defensive sweep: no pixel-level ground truth may survive.
            for key in list(data_sample.keys()):
                if key.startswith('gt_') and isinstance(
                    data_sample.get(key), PixelData
                ):
                    delattr(data_sample, key)
        return packed

    def __repr__(self) -> str:
        return (
            f'{self.__class__.__name__}(keep_pixel_labels='
            f'{self.keep_pixel_labels}, meta_keys={self.meta_keys})'
        )
