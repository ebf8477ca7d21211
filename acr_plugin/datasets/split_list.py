"""Checked loading of split lists (``ImageSets/...txt``) for WSSS datasets."""

import os.path as osp
from typing import Dict, Iterable, List, Optional

MAX_NAMES_IN_ERRORS = 5


def read_split_names(split_file: str, img_suffix: str = '.jpg') -> List[str]:
    """Read the image names of a split list.

    One image per line; only the first whitespace-separated token counts, so
    both plain lists (``2007_000032``) and DeepLab-style pair lists
    (``/JPEGImages/2007_000032.jpg /SegmentationClassAug/2007_000032.png``)
    work. A token with a directory is reduced to its basename and a trailing
    ``img_suffix`` is removed. Blank lines and ``#`` comments are skipped.

    Args:
        split_file (str): Path of the split list.
        img_suffix (str): Image suffix to strip. Defaults to '.jpg'.

    Returns:
        list[str]: Image names in file order.
    """
    names = []
    with open(split_file) as f:
        for line in f:
            tokens = line.split()
            if not tokens or tokens[0].startswith('#'):
                continue
            name = tokens[0]
            if '/' in name:
                name = osp.basename(name)
            if img_suffix and name.endswith(img_suffix):
                name = name[: -len(img_suffix)]
            names.append(name)
    return names


def _missing_error(what: str, split_file: str, missing: List[tuple]) -> str:
    shown = ', '.join(
        f'"{name}" ({path})' for name, path in missing[:MAX_NAMES_IN_ERRORS]
    )
    more = len(missing) - MAX_NAMES_IN_ERRORS
    tail = f' and {more} more' if more > 0 else ''
    return (
        f'{len(missing)} name(s) of split list {split_file} have no {what}: '
        f'{shown}{tail} (see docs/data_preparation.md)'
    )


def build_split_data_list(
    split_file: str,
    img_dir: str,
    img_suffix: str = '.jpg',
    seg_map_dir: Optional[str] = None,
    seg_map_suffix: str = '.png',
    seg_map_fallback_dir: Optional[str] = None,
    data_root: Optional[str] = None,
    check_files: bool = True,
    extra_info: Optional[Dict] = None,
) -> List[dict]:
    """Build mmseg ``data_list`` entries from a split list, with clear errors.

    Args:
        split_file (str): Split list path (already joined with the data root).
        img_dir (str): Image directory.
        img_suffix (str): Image suffix. Defaults to '.jpg'.
        seg_map_dir (str, optional): Mask directory; None for an image-only
            dataset (labels from a label file). Defaults to None.
        seg_map_suffix (str): Mask suffix. Defaults to '.png'.
        seg_map_fallback_dir (str, optional): Directory searched for masks
            missing from ``seg_map_dir``. Defaults to None.
        data_root (str, optional): Checked for existence first, for a clear
            message. Defaults to None.
        check_files (bool): Check that every image (and mask) exists.
            Defaults to True.
        extra_info (dict, optional): Entries copied into every data info
            (``label_map``, ``reduce_zero_label``). Defaults to None.

    Returns:
        list[dict]: One dict per image with ``img_path``, ``seg_map_path``
        (when masks are used), ``seg_fields`` and ``extra_info``'s entries.

    Raises:
        FileNotFoundError: for a missing data root, split list, image
            directory, image or mask; the message names the path.
    """
    hint = 'see docs/data_preparation.md'
    if data_root and not osp.isdir(data_root):
        raise FileNotFoundError(f'data root {data_root} does not exist ({hint})')
    if not split_file:
        raise ValueError(f'a split list (ann_file) is required ({hint})')
    if not osp.isfile(split_file):
        raise FileNotFoundError(f'split list {split_file} does not exist ({hint})')
    if check_files and not osp.isdir(img_dir):
        raise FileNotFoundError(f'image directory {img_dir} does not exist ({hint})')

    data_list = []
    missing_img, missing_seg = [], []
    for name in read_split_names(split_file, img_suffix):
        info = dict(img_path=osp.join(img_dir, name + img_suffix))
        if check_files and not osp.isfile(info['img_path']):
            missing_img.append((name, info['img_path']))
        if seg_map_dir is not None:
            seg_path = osp.join(seg_map_dir, name + seg_map_suffix)
            if seg_map_fallback_dir is not None and not osp.isfile(seg_path):
                fallback = osp.join(seg_map_fallback_dir, name + seg_map_suffix)
                if osp.isfile(fallback):
                    seg_path = fallback
            if check_files and not osp.isfile(seg_path):
                missing_seg.append((name, seg_path))
            info['seg_map_path'] = seg_path
        info.update(extra_info or {})
        info['seg_fields'] = []
        data_list.append(info)
    if missing_img:
        raise FileNotFoundError(_missing_error('image', split_file, missing_img))
    if missing_seg:
        raise FileNotFoundError(
            _missing_error('segmentation mask', split_file, missing_seg)
        )
    if not data_list:
        raise ValueError(f'split list {split_file} lists no image')
    return data_list


def check_pipeline_label_files(
    pipeline: Iterable, data_list: List[dict], split_file: str
) -> None:
    """Let the label-file transforms of a pipeline check a split's images.

    Every transform with a ``check_images(img_paths, source)`` method (e.g.
    ``LoadImageLabels``) is asked whether its label file covers the images
    of ``data_list``, so a label file that disagrees with the split list
    fails when the dataset is built rather than at some iteration.

    Args:
        pipeline (Iterable): The dataset's pipeline (mmengine ``Compose``,
            whose ``transforms`` are searched, or a list of transforms).
        data_list (list[dict]): Data infos with ``img_path``.
        split_file (str): The split list, for the message.
    """
    transforms = getattr(pipeline, 'transforms', pipeline) or []
    checkers = [t for t in transforms if callable(getattr(t, 'check_images', None))]
    if not checkers:
        return
    img_paths = [info['img_path'] for info in data_list]
    for transform in checkers:
        transform.check_images(img_paths, source=f'split list {split_file}')


class SplitListMixin:
    """Checked split-list loading for an mmseg dataset class.

    Mixed in before the mmseg class (``class D(SplitListMixin,
    BaseSegDataset)``): the data list holds the images of the split list
    ``ann_file`` (:func:`build_split_data_list`: missing files raise
    ``FileNotFoundError`` naming them), their masks from
    ``data_prefix['seg_map_path']`` (or :meth:`seg_map_fallback_dir`), and a
    label file in the pipeline must cover every listed image
    (:func:`check_pipeline_label_files`).

    Args:
        ann_file (str): Split list, relative to ``data_root``.
        img_suffix (str): Image suffix. Defaults to '.jpg'.
        seg_map_suffix (str): Mask suffix. Defaults to '.png'.
        check_files (bool): Check at start-up that every listed image and
            mask exists. Defaults to True.
        **kwargs: Arguments of the mmseg dataset class.
    """

    def __init__(
        self,
        ann_file: str,
        img_suffix: str = '.jpg',
        seg_map_suffix: str = '.png',
        check_files: bool = True,
        **kwargs,
    ) -> None:
        self.check_files = check_files
        super().__init__(
            ann_file=ann_file,
            img_suffix=img_suffix,
            seg_map_suffix=seg_map_suffix,
            **kwargs,
        )

    def seg_map_fallback_dir(self) -> Optional[str]:
        """Mask folder searched when a mask is missing (None: no fallback)."""
        return None

    def load_data_list(self) -> List[dict]:
        """Load the split list, checking that every file exists.

        Returns:
            list[dict]: Data infos with ``img_path`` and ``seg_map_path``.
        """
        data_list = build_split_data_list(
            split_file=self.ann_file,
            img_dir=self.data_prefix.get('img_path', '') or '',
            img_suffix=self.img_suffix,
            seg_map_dir=self.data_prefix.get('seg_map_path', None),
            seg_map_suffix=self.seg_map_suffix,
            seg_map_fallback_dir=self.seg_map_fallback_dir(),
            data_root=self.data_root,
            check_files=self.check_files,
            extra_info=dict(
                label_map=self.label_map, reduce_zero_label=self.reduce_zero_label
            ),
        )
        # a label file in the pipeline must cover every listed image
        check_pipeline_label_files(self.pipeline, data_list, self.ann_file)
        return data_list
