"""PASCAL VOC 2012 (+ SBD aug) for weakly-supervised semantic segmentation."""

import os.path as osp
from typing import Optional

from mmseg.datasets import PascalVOCDataset
from mmseg.registry import DATASETS

from acr_plugin.datasets.split_list import SplitListMixin


@DATASETS.register_module()
class WSSSVOCDataset(SplitListMixin, PascalVOCDataset):
    """PASCAL VOC 2012 (+ SBD aug) in mmseg's directory layout, for WSSS.

    21 classes (background + 20) and the VOC palette, as mmseg's
    ``PascalVOCDataset`` (whose ``METAINFO`` is reused). The layout is the one
    mmseg's ``tools/dataset_converters/voc_aug.py`` produces::

        data/VOCdevkit/VOC2012
        ├── JPEGImages/*.jpg
        ├── SegmentationClass/*.png       # VOC masks (train + val)
        ├── SegmentationClassAug/*.png    # SBD masks (voc_aug.py)
        ├── ImageSets/Segmentation/{train,val,aug,trainaug}.txt
        └── cls_labels.npy                # optional image-level labels

    Differences from ``PascalVOCDataset``: a split list (``ann_file``) is
    required; each line's first token is the image name (DeepLab-style pair
    lists work too); missing data root, split list, images or masks raise
    ``FileNotFoundError`` naming the path; and ``seg_map_fallback`` lets one
    dataset cover ``trainaug`` (10,582 images) although ``voc_aug.py``'s
    ``SegmentationClassAug`` lacks the VOC images that SBD does not contain:
    masks missing from ``data_prefix['seg_map_path']`` are taken from the
    fallback directory (``SegmentationClass``).

    The image-level labels come from the pipeline (``DeriveImageLabels`` or
    ``LoadImageLabels``), not from the dataset. Leave ``seg_map_path`` out of
    ``data_prefix`` for an image-only dataset (labels from a file).

    Args:
        ann_file (str): Split list, relative to ``data_root``, e.g.
            ``'ImageSets/Segmentation/trainaug.txt'``.
        img_suffix (str): Image suffix. Defaults to '.jpg'.
        seg_map_suffix (str): Mask suffix. Defaults to '.png'.
        seg_map_fallback (str, optional): Mask directory (relative to
            ``data_root``) searched when a mask is missing from
            ``data_prefix['seg_map_path']``. Defaults to None.
        check_files (bool): Check at start-up that every listed image and
            mask exists (about 50 ms for 10k images). Defaults to True.
        **kwargs: ``BaseSegDataset`` arguments (``data_root``,
            ``data_prefix``, ``pipeline``, ``test_mode``, ...).
    """

    def __init__(
        self,
        ann_file: str,
        img_suffix: str = '.jpg',
        seg_map_suffix: str = '.png',
        seg_map_fallback: Optional[str] = None,
        check_files: bool = True,
        **kwargs,
    ) -> None:
        self.seg_map_fallback = seg_map_fallback
        super().__init__(
            ann_file=ann_file,
            img_suffix=img_suffix,
            seg_map_suffix=seg_map_suffix,
            check_files=check_files,
            **kwargs,
        )

    def seg_map_fallback_dir(self) -> Optional[str]:
        """``seg_map_fallback``, relative to ``data_root`` unless absolute."""
        fallback = self.seg_map_fallback
        if fallback is not None and self.data_root and not osp.isabs(fallback):
            fallback = osp.join(self.data_root, fallback)
        return fallback
