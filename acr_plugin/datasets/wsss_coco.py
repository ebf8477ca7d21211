"""MS COCO 2014 in the WSSS semantic-mask convention."""

from typing import List

from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS

from acr_plugin.datasets.coco_conversion import COCO_THING_CLASSES
from acr_plugin.datasets.split_list import SplitListMixin


def bit_interleave_palette(num_colors: int) -> List[List[int]]:
    """Deterministic RGB palette spreading the bits of the index over R, G, B.

    Index 0 is black; the first 21 colours are the PASCAL VOC ones.

    Args:
        num_colors (int): Number of colours.

    Returns:
        list[list[int]]: ``num_colors`` ``[r, g, b]`` triples.
    """
    palette = []
    for index in range(num_colors):
        rgb = [0, 0, 0]
        value = index
        for bit in range(7, -1, -1):
            for channel in range(3):
                rgb[channel] |= ((value >> channel) & 1) << bit
            value >>= 3
        palette.append(rgb)
    return palette


@DATASETS.register_module()
class WSSSCOCODataset(SplitListMixin, BaseSegDataset):
    """MS COCO 2014 for WSSS: 81 classes (background + 80 things).

    Masks follow the WSSS convention written by
    ``tools/dataset_converters/coco2014_to_semantic.py``: single-channel PNGs
    whose pixel value is the contiguous class index (0 background, ``k`` =
    the ``k``-th COCO category in ascending category-id order, 255 ignore).
    Layout::

        data/coco2014
        ├── train2014/*.jpg
        ├── val2014/*.jpg
        ├── SegmentationClass/{train2014,val2014}/*.png
        ├── ImageSets/{train,val}.txt
        └── cls_labels.npy

    Missing data root, split list, images or masks raise
    ``FileNotFoundError`` naming the path.

    Args:
        ann_file (str): Split list, relative to ``data_root``, e.g.
            ``'ImageSets/train.txt'``.
        img_suffix (str): Image suffix. Defaults to '.jpg'.
        seg_map_suffix (str): Mask suffix. Defaults to '.png'.
        check_files (bool): Check at start-up that every listed image and
            mask exists. Defaults to True.
        **kwargs: ``BaseSegDataset`` arguments (``data_root``,
            ``data_prefix``, ``pipeline``, ...).
    """

    METAINFO = dict(
        classes=('background',) + COCO_THING_CLASSES,
        palette=bit_interleave_palette(1 + len(COCO_THING_CLASSES)),
    )
