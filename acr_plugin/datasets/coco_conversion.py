"""COCO instance annotations -> WSSS semantic masks (numpy + pycocotools).

The conversion is deterministic:

* categories map to contiguous labels ``1..K`` in ascending category-id order
  (COCO 2014: the 80 thing categories, ids 1..90 with gaps); 0 is background;
* crowd annotations (``iscrowd=1``) are painted first with ``ignore_index``
  (255);
* non-crowd instances are then painted in *decreasing* pixel area (ties:
  ascending annotation id), each over the previous ones, so a smaller instance
  lying on a larger one stays visible, and instances overwrite crowd regions;
* an image's labels are the foreground classes left visible in its mask.

PNG masks are single-channel (mode ``L``, pixel = label), written atomically
(temporary file + ``os.replace``); existing masks are kept (resumable) and
read back to compute the labels.
"""

import json
import os
import os.path as osp
import warnings
from collections import defaultdict
from multiprocessing import Pool
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

#: COCO 2014/2017 thing categories in ascending category-id order.
COCO_THING_CLASSES = (
    'person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train',
    'truck', 'boat', 'traffic light', 'fire hydrant', 'stop sign',
    'parking meter', 'bench', 'bird', 'cat', 'dog', 'horse', 'sheep', 'cow',
    'elephant', 'bear', 'zebra', 'giraffe', 'backpack', 'umbrella', 'handbag',
    'tie', 'suitcase', 'frisbee', 'skis', 'snowboard', 'sports ball', 'kite',
    'baseball bat', 'baseball glove', 'skateboard', 'surfboard',
    'tennis racket', 'bottle', 'wine glass', 'cup', 'fork', 'knife', 'spoon',
    'bowl', 'banana', 'apple', 'sandwich', 'orange', 'broccoli', 'carrot',
    'hot dog', 'pizza', 'donut', 'cake', 'chair', 'couch', 'potted plant',
    'bed', 'dining table', 'toilet', 'tv', 'laptop', 'mouse', 'remote',
    'keyboard', 'cell phone', 'microwave', 'oven', 'toaster', 'sink',
    'refrigerator', 'book', 'clock', 'vase', 'scissors', 'teddy bear',
    'hair drier', 'toothbrush',
)  # fmt: skip


def _mask_api():
    try:
        from pycocotools import mask as mask_api
    except ImportError as err:  # pragma: no cover - depends on the env
        raise ImportError(
            'the COCO converter needs pycocotools: pip install pycocotools'
        ) from err
    return mask_api


def category_label_map(categories: Iterable[dict]) -> Dict[int, int]:
    """Map COCO category ids to contiguous labels ``1..K`` (sorted ids).

    Args:
        categories (Iterable[dict]): The json's ``categories`` entries.

    Returns:
        dict[int, int]: ``{category_id: label}``.
    """
    ids = sorted({int(cat['id']) for cat in categories})
    return {cat_id: label for label, cat_id in enumerate(ids, start=1)}


def annotation_mask(ann: dict, height: int, width: int) -> np.ndarray:
    """Rasterise one annotation's ``segmentation`` with pycocotools.

    Polygons (a list of ``[x0, y0, x1, y1, ...]``; degenerate ones with fewer
    than 3 points are skipped), uncompressed RLE (``counts`` a list) and
    compressed RLE are supported. pycocotools covers pixel ``(x, y)`` when the
    square ``[x, x+1) x [y, y+1)`` lies inside the polygon.

    Args:
        ann (dict): COCO annotation.
        height (int): Image height.
        width (int): Image width.

    Returns:
        np.ndarray: bool ``(height, width)``.
    """
    mask_api = _mask_api()
    seg = ann.get('segmentation')
    if isinstance(seg, list):
        polygons = [p for p in seg if len(p) >= 6]
        if not polygons:
            return np.zeros((height, width), dtype=bool)
        rle = mask_api.merge(mask_api.frPyObjects(polygons, height, width))
    elif isinstance(seg, dict) and isinstance(seg.get('counts'), list):
        rle = mask_api.frPyObjects(seg, height, width)
    elif isinstance(seg, dict):
        rle = seg
    else:
        raise ValueError(
            f'annotation {ann.get("id")} has no usable "segmentation" '
            f'({type(seg).__name__})'
        )
    with warnings.catch_warnings():
        # pycocotools 2.0.x + numpy 2: harmless __array__(copy=...) notice
        warnings.simplefilter('ignore', DeprecationWarning)
        mask = mask_api.decode(rle)
    if mask.shape != (height, width):
        raise ValueError(
            f'annotation {ann.get("id")}: mask of shape {mask.shape} for an '
            f'image of shape {(height, width)}'
        )
    return mask.astype(bool)


def semantic_mask_from_annotations(
    anns: Sequence[dict],
    height: int,
    width: int,
    label_map: Dict[int, int],
    ignore_index: int = 255,
) -> np.ndarray:
    """Paint the annotations of one image into a semantic mask.

    Crowd regions get ``ignore_index`` first; non-crowd instances follow in
    decreasing pixel area (ties: ascending annotation id), so smaller
    instances are drawn on top (see the module docstring).

    Args:
        anns (Sequence[dict]): The image's COCO annotations.
        height (int): Image height.
        width (int): Image width.
        label_map (dict[int, int]): ``category_id -> label`` (1..K).
        ignore_index (int): Label of crowd regions. Defaults to 255.

    Returns:
        np.ndarray: uint8 ``(height, width)``.

    Raises:
        KeyError: for an annotation of a category missing from ``label_map``.
    """
    semantic = np.zeros((height, width), dtype=np.uint8)
    instances: List[Tuple[int, int, np.ndarray, int]] = []
    for ann in anns:
        mask = annotation_mask(ann, height, width)
        if ann.get('iscrowd', 0):
            semantic[mask] = ignore_index
            continue
        cat_id = int(ann['category_id'])
        if cat_id not in label_map:
            raise KeyError(
                f'annotation {ann.get("id")} has category_id {cat_id}, which '
                'is not among the json\'s "categories"'
            )
        instances.append((-int(mask.sum()), int(ann.get('id', 0)), mask, cat_id))
    instances.sort(key=lambda item: (item[0], item[1]))
    for _, _, mask, cat_id in instances:
        semantic[mask] = label_map[cat_id]
    return semantic


def labels_from_mask(
    mask: np.ndarray, num_classes: int, ignore_index: int = 255
) -> np.ndarray:
    """Foreground multi-hot ``(num_classes,)`` float32 (label k -> k - 1)."""
    present = np.unique(mask)
    present = present[(present != 0) & (present != ignore_index)]
    labels = np.zeros(num_classes, dtype=np.float32)
    labels[present.astype(np.int64) - 1] = 1.0
    return labels


def write_png_atomic(path: str, array: np.ndarray) -> None:
    """Write a uint8 ``(H, W)`` array as a mode-``L`` PNG atomically."""
    tmp = f'{path}.{os.getpid()}.tmp'
    try:
        Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8)).save(
            tmp, format='PNG'
        )
        os.replace(tmp, path)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)


def save_cls_labels_atomic(path: str, labels: Dict[str, np.ndarray]) -> None:
    """Save ``{image_name: multi-hot}`` as a pickled-dict ``.npy`` atomically."""
    tmp = f'{path}.{os.getpid()}.tmp.npy'
    try:
        np.save(tmp, labels, allow_pickle=True)
        os.replace(tmp, path)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)


def write_split_list(path: str, names: Sequence[str]) -> None:
    """Write one image name per line, atomically."""
    tmp = f'{path}.{os.getpid()}.tmp'
    with open(tmp, 'w') as f:
        f.writelines(f'{name}\n' for name in names)
    os.replace(tmp, path)


def _convert_image(task: tuple) -> Tuple[str, np.ndarray, bool]:
    """Worker: write one mask (unless present) and return its labels."""
    name, height, width, anns, out_path, label_map, num_classes, overwrite = task
    if not overwrite and osp.isfile(out_path):
        with Image.open(out_path) as png:
            existing = np.asarray(png)
        if existing.shape == (height, width):
            return name, labels_from_mask(existing, num_classes), False
    mask = semantic_mask_from_annotations(anns, height, width, label_map)
    write_png_atomic(out_path, mask)
    return name, labels_from_mask(mask, num_classes), True


def convert_coco_instances(
    ann_file: str,
    mask_dir: str,
    nproc: int = 1,
    overwrite: bool = False,
) -> Tuple[Dict[str, np.ndarray], List[str], int]:
    """Convert one COCO instances json into semantic PNG masks.

    Args:
        ann_file (str): ``instances_*.json``.
        mask_dir (str): Output directory (created); mask of ``x.jpg`` is
            ``mask_dir/x.png``.
        nproc (int): Worker processes. Defaults to 1.
        overwrite (bool): Rewrite existing masks. Defaults to False (resume).

    Returns:
        tuple: ``labels`` (``{image_name: float32 multi-hot (K,)}`` for every
        image), the category names in label order (``K`` entries) and the
        number of masks written.
    """
    if not osp.isfile(ann_file):
        raise FileNotFoundError(f'COCO annotation file {ann_file} does not exist')
    with open(ann_file) as f:
        coco = json.load(f)
    label_map = category_label_map(coco['categories'])
    names_by_id = {int(c['id']): c['name'] for c in coco['categories']}
    class_names = [names_by_id[cat_id] for cat_id in sorted(label_map)]
    anns_by_image: Dict[int, List[dict]] = defaultdict(list)
    for ann in coco.get('annotations', []):
        anns_by_image[int(ann['image_id'])].append(ann)
    os.makedirs(mask_dir, exist_ok=True)
    tasks = []
    for img in sorted(coco['images'], key=lambda im: im['file_name']):
        name = osp.splitext(osp.basename(img['file_name']))[0]
        tasks.append(
            (
                name,
                int(img['height']),
                int(img['width']),
                anns_by_image.get(int(img['id']), []),
                osp.join(mask_dir, name + '.png'),
                label_map,
                len(label_map),
                overwrite,
            )
        )
    del coco, anns_by_image
    if nproc > 1:
        with Pool(nproc) as pool:
            results = list(pool.imap(_convert_image, tasks, chunksize=32))
    else:
        results = [_convert_image(task) for task in tasks]
    labels = {name: vec for name, vec, _ in results}
    written = sum(int(was_written) for _, _, was_written in results)
    return labels, class_names, written


def convert_coco_split(
    ann_file: str,
    out_root: str,
    split: str,
    image_dir_name: str,
    nproc: int = 1,
    overwrite: bool = False,
    keep_empty: bool = False,
    label_file: Optional[str] = 'cls_labels.npy',
) -> Dict[str, object]:
    """Convert a split and write its masks, split list and image labels.

    Writes ``out_root/SegmentationClass/<image_dir_name>/*.png``,
    ``out_root/ImageSets/<split>.txt`` (sorted names of the images with at
    least one visible foreground class, or every image with
    ``keep_empty=True``) and merges the split's labels into
    ``out_root/<label_file>`` (a pickled dict, ToCo ``cls_labels.npy``
    convention).

    Args:
        ann_file (str): ``instances_<image_dir_name>.json``.
        out_root (str): Dataset root (``data/coco2014``).
        split (str): Split list name (``'train'``, ``'val'``).
        image_dir_name (str): Image folder name (``'train2014'``).
        nproc (int): Worker processes. Defaults to 1.
        overwrite (bool): Rewrite existing masks. Defaults to False.
        keep_empty (bool): List images without foreground too. Defaults to
            False.
        label_file (str, optional): Label file name under ``out_root``; None
            to skip it. Defaults to 'cls_labels.npy'.

    Returns:
        dict: ``class_names``, ``num_images``, ``num_listed``, ``num_written``,
        ``split_file``.
    """
    mask_dir = osp.join(out_root, 'SegmentationClass', image_dir_name)
    labels, class_names, written = convert_coco_instances(
        ann_file, mask_dir, nproc=nproc, overwrite=overwrite
    )
    listed = sorted(name for name, vec in labels.items() if keep_empty or vec.any())
    os.makedirs(osp.join(out_root, 'ImageSets'), exist_ok=True)
    split_file = osp.join(out_root, 'ImageSets', f'{split}.txt')
    write_split_list(split_file, listed)
    if label_file is not None:
        label_path = osp.join(out_root, label_file)
        merged: Dict[str, np.ndarray] = {}
        if osp.isfile(label_path):
            merged = dict(np.load(label_path, allow_pickle=True).item())
        merged.update(labels)
        save_cls_labels_atomic(label_path, merged)
    return dict(
        class_names=class_names,
        num_images=len(labels),
        num_listed=len(listed),
        num_written=written,
        split_file=split_file,
    )
