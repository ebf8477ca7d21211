"""Derive image-level labels from a semantic segmentation map."""

from typing import Optional

import numpy as np
from mmcv.transforms import BaseTransform
from mmseg.registry import TRANSFORMS

from acr_plugin.structures import IMG_LABELS


def image_labels_from_seg_map(
    seg_map: np.ndarray,
    num_classes: int,
    ignore_index: int = 255,
    source: Optional[str] = None,
) -> np.ndarray:
    """Multi-hot image-level labels of the foreground classes in a mask.

    Segmentation ids run over ``0..num_classes`` (background 0 and
    ``num_classes`` foreground classes); foreground class ``k`` >= 1 is
    position ``k - 1``. ``ignore_index`` and the background are skipped.

    Args:
        seg_map (np.ndarray): Integer segmentation map of any shape.
        num_classes (int): Number of foreground classes ``C``.
        ignore_index (int): Label ignored. Defaults to 255.
        source (str, optional): Name of the map (a file path) used in error
            messages. Defaults to None.

    Returns:
        np.ndarray: float32 multi-hot vector of shape ``(C,)``.

    Raises:
        ValueError: if the map holds a label that is neither ``ignore_index``
            nor in ``0..num_classes``.
    """
    present = np.unique(np.asarray(seg_map))
    present = present[present != ignore_index]
    bad = present[(present < 0) | (present > num_classes)]
    if bad.size:
        where = f' in {source}' if source else ''
        raise ValueError(
            f'segmentation map{where} holds class ids {bad.tolist()} outside '
            f'0..{num_classes} (num_classes={num_classes} foreground classes '
            f'+ background 0, ignore {ignore_index}): check '
            'num_classes and the dataset'
        )
    present = present[present != 0].astype(np.int64)
    labels = np.zeros(num_classes, dtype=np.float32)
    labels[present - 1] = 1.0
    return labels


@TRANSFORMS.register_module()
class DeriveImageLabels(BaseTransform):
    """Set ``img_labels`` from the classes present in ``gt_seg_map``.

    Image-level labels describe the *whole* image, so this transform must run
    right after ``LoadAnnotations`` and before any geometric transform
    (``RandomResize``, ``RandomCrop``, ``Pad``, ...): a crop can remove a class
    from the mask while the image-level label keeps it. A mask whose shape
    differs from the image's ``ori_shape`` is rejected for this reason.

    Required Keys:

    - gt_seg_map
    - ori_shape (optional, checked when present)
    - seg_map_path / img_path (optional, for error messages)

    Added Keys:

    - img_labels (np.ndarray): float32 multi-hot ``(num_classes,)`` over the
      foreground classes (class ``k`` >= 1 is position ``k - 1``).

    Args:
        num_classes (int): Number of foreground classes ``C`` (20 for VOC,
            80 for COCO), i.e. the dataset's class count minus background.
        ignore_index (int): Label ignored when deriving. Defaults to 255.
        allow_empty (bool): Accept images without any foreground class (an
            all-zero label). WSSS *training* needs at least one class per
            image (a background-only image teaches the classifier nothing
            and its CAM is undefined; VOC trainaug and the COCO train list
            have none), so the training pipelines of the base dataset
            configs set False and such an image raises ``ValueError`` naming
            it. Evaluation pipelines may keep True. Defaults to True.
    """

    def __init__(
        self,
        num_classes: int,
        ignore_index: int = 255,
        allow_empty: bool = True,
    ) -> None:
        if num_classes < 1:
            raise ValueError(f'num_classes must be >= 1, got {num_classes}')
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.allow_empty = allow_empty

    def transform(self, results: dict) -> dict:
        """Add ``img_labels`` derived from ``results['gt_seg_map']``.

        Args:
            results (dict): Result dict with a loaded ``gt_seg_map``.

        Returns:
            dict: ``results`` with ``img_labels`` added.
        """
        source = results.get('seg_map_path') or results.get('img_path')
        if results.get('gt_seg_map') is None:
            raise KeyError(
                f'DeriveImageLabels needs "gt_seg_map" (image {source}): put '
                'LoadAnnotations before it in the pipeline, or use '
                'LoadImageLabels to read labels from a file'
            )
        seg_map = results['gt_seg_map']
        ori_shape = results.get('ori_shape')
        if ori_shape is not None and tuple(seg_map.shape[:2]) != tuple(ori_shape[:2]):
            raise ValueError(
                f'DeriveImageLabels got a gt_seg_map of shape '
                f'{tuple(seg_map.shape[:2])} for an image of original shape '
                f'{tuple(ori_shape[:2])} ({source}): it must run right after '
                'LoadAnnotations, before any geometric transform, because '
                'image-level labels describe the whole image (or the mask does '
                'not match its image)'
            )
        labels = image_labels_from_seg_map(
            seg_map,
            self.num_classes,
            ignore_index=self.ignore_index,
            source=source,
        )
        if not self.allow_empty and not labels.any():
            image = results.get('img_path') or source
            raise ValueError(
                f'image {image} has no foreground label: its mask '
                f'{results.get("seg_map_path") or "(in memory)"} holds only '
                f'background (0) and ignore '
                f'({self.ignore_index}) pixels. WSSS training needs at least '
                'one class per image: remove it from the split list (or set '
                'DeriveImageLabels(allow_empty=True))'
            )
        results[IMG_LABELS] = labels
        return results

    def __repr__(self) -> str:
        return (
            f'{self.__class__.__name__}(num_classes={self.num_classes}, '
            f'ignore_index={self.ignore_index}, '
            f'allow_empty={self.allow_empty})'
        )
