"""Read image-level labels from a label file (``cls_labels.npy`` or text)."""

import os
import os.path as osp
from typing import Dict, List, Sequence, Tuple

import numpy as np
from mmcv.transforms import BaseTransform
from mmseg.registry import TRANSFORMS

from acr_plugin.structures import IMG_LABELS

#: per-process cache: (abspath, mtime_ns, size, num_classes) -> labels
_LABEL_FILE_CACHE: Dict[Tuple[str, int, int, int], Dict[str, np.ndarray]] = {}


#: image names quoted in an error message before "and N more"
MAX_NAMES_IN_ERRORS = 5


def image_key(path_or_name: str) -> str:
    """Key of an image in a label file: its basename without extension.

    ``'data/VOC2012/JPEGImages/2007_000032.jpg'`` -> ``'2007_000032'``.
    """
    return osp.splitext(osp.basename(str(path_or_name).strip()))[0]


def _first_names(names: Sequence[str]) -> str:
    shown = ', '.join(f'"{name}"' for name in names[:MAX_NAMES_IN_ERRORS])
    more = len(names) - MAX_NAMES_IN_ERRORS
    return shown + (f' and {more} more' if more > 0 else '')


def _validate_vector(value, num_classes: int, label_file: str, key: str) -> np.ndarray:
    """Return ``value`` as a float32 ``(C,)`` multi-hot vector or raise."""
    vec = np.asarray(value, dtype=np.float32).reshape(-1)
    if vec.shape[0] != num_classes:
        raise ValueError(
            f'label file {label_file}: image "{key}" has a label vector of '
            f'length {vec.shape[0]}, expected num_classes={num_classes} '
            '(foreground classes only, no background entry)'
        )
    if not np.isin(vec, (0.0, 1.0)).all():
        raise ValueError(
            f'label file {label_file}: image "{key}" has non-binary labels '
            f'{vec.tolist()}'
        )
    return vec


def _parse_npy(label_file: str, num_classes: int) -> Dict[str, np.ndarray]:
    try:
        obj = np.load(label_file, allow_pickle=True)
        table = obj.item() if obj.dtype == object and obj.shape == () else obj
    except (OSError, ValueError) as err:
        raise ValueError(f'cannot read label file {label_file}: {err}') from err
    if not isinstance(table, dict):
        raise ValueError(
            f'label file {label_file} must hold a pickled dict '
            '{image_name: multi-hot array (C,)} (np.save of a dict), got '
            f'{type(table).__name__}'
        )
    return {
        image_key(key): _validate_vector(value, num_classes, label_file, key)
        for key, value in table.items()
    }


def _parse_txt(label_file: str, num_classes: int) -> Dict[str, np.ndarray]:
    labels: Dict[str, np.ndarray] = {}
    with open(label_file) as f:
        for line_no, line in enumerate(f, start=1):
            tokens = line.split()
            if not tokens or tokens[0].startswith('#'):
                continue
            key = image_key(tokens[0])
            vec = np.zeros(num_classes, dtype=np.float32)
            for token in tokens[1:]:
                try:
                    cls_id = int(token)
                except ValueError:
                    cls_id = -1
                if not 1 <= cls_id <= num_classes:
                    raise ValueError(
                        f'label file {label_file}, line {line_no} (image '
                        f'"{key}"): class id "{token}" is not an integer in '
                        f'1..{num_classes} (foreground ids; 0 = background is '
                        'not listed)'
                    )
                vec[cls_id - 1] = 1.0
            labels[key] = vec
    return labels


def read_image_label_file(label_file: str, num_classes: int) -> Dict[str, np.ndarray]:
    """Read a label file into ``{image_key: float32 multi-hot (C,)}``.

    The result is cached per process (keyed by path, modification time, size,
    ``num_classes``), so every dataloader worker parses the file at most once.
    The format follows the extension (``.npy``: ``npy``, anything else:
    ``txt``); formats are described in :class:`LoadImageLabels`.

    Args:
        label_file (str): Path of the ``.npy`` or text label file.
        num_classes (int): Number of foreground classes ``C``.

    Returns:
        dict[str, np.ndarray]: Labels by image key (basename, no extension).

    Raises:
        FileNotFoundError: if ``label_file`` does not exist.
        ValueError: on a vector of the wrong length or an invalid class id.
    """
    if not osp.isfile(label_file):
        raise FileNotFoundError(
            f'image-level label file {label_file} does not exist (see '
            'docs/data_preparation.md, or derive the labels from the masks '
            'with DeriveImageLabels)'
        )
    stat = os.stat(label_file)
    cache_key = (osp.abspath(label_file), stat.st_mtime_ns, stat.st_size, num_classes)
    if cache_key not in _LABEL_FILE_CACHE:
        parse = _parse_npy if label_file.endswith('.npy') else _parse_txt
        _LABEL_FILE_CACHE[cache_key] = parse(label_file, num_classes)
    return _LABEL_FILE_CACHE[cache_key]


@TRANSFORMS.register_module()
class LoadImageLabels(BaseTransform):
    """Load image-level labels of ``results['img_path']`` from a label file.

    The image key is the basename of ``img_path`` without extension
    (``.../2007_000032.jpg`` -> ``2007_000032``); keys in the file are
    normalised the same way. Supported formats, chosen by the file's
    extension (``.npy``: ``npy``, anything else: ``txt``):

    * ``npy``: the ToCo/AFA ``cls_labels.npy`` convention, a pickled dict
      ``{image_name: multi-hot array (C,)}`` saved with ``np.save`` and read
      with ``np.load(label_file, allow_pickle=True).item()``. Position
      ``k - 1`` is segmentation class ``k`` (no background entry).
    * ``txt``: no header; one image per line, ``name cls_id cls_id ...`` with
      whitespace-separated *foreground segmentation ids* ``1..C`` (VOC:
      1 = aeroplane ... 20 = tvmonitor). A line with only a name means no
      foreground class. Blank lines and lines starting with ``#`` are
      skipped; ``name`` may carry a directory and extension.

    The file is read once per process (see :func:`read_image_label_file`) when
    the transform is built, so a missing or malformed file fails early. The
    WSSS datasets (``WSSSVOCDataset``, ``WSSSCOCODataset``) also call
    :meth:`check_images` with their split when they are built, so a label
    file that lacks images of the split list fails before training, naming
    them.

    Added Keys:

    - img_labels (np.ndarray): float32 multi-hot ``(num_classes,)``.

    Args:
        label_file (str): Path of the label file.
        num_classes (int): Number of foreground classes ``C``.
        allow_empty (bool): Accept images whose label has no foreground
            class. WSSS training needs at least one class per image, so the
            training pipelines of the base dataset configs set False (see
            ``DeriveImageLabels``). Defaults to True.
    """

    def __init__(
        self,
        label_file: str,
        num_classes: int,
        allow_empty: bool = True,
    ) -> None:
        self.label_file = label_file
        self.num_classes = num_classes
        self.allow_empty = allow_empty
        self._labels = read_image_label_file(label_file, num_classes)

    def check_images(
        self, img_paths: Sequence[str], source: str = 'the image list'
    ) -> None:
        """Check that the label file covers a list of images.

        Entries of the label file that no image uses are fine (VOC's
        ``cls_labels.npy`` covers train and val). Called by the WSSS datasets
        at build time.

        Args:
            img_paths (Sequence[str]): Image paths or names.
            source (str): Where the list comes from, for the message.
                Defaults to 'the image list'.

        Raises:
            ValueError: If images have no entry in the label file, or (with
                ``allow_empty=False``) an entry without a foreground class;
                the first few are named and all are counted.
        """
        missing: List[str] = []
        empty: List[str] = []
        for path in img_paths:
            key = image_key(path)
            vec = self._labels.get(key)
            if vec is None:
                missing.append(key)
            elif not self.allow_empty and not vec.any():
                empty.append(key)
        problems = []
        if missing:
            problems.append(
                f'{len(missing)} of its {len(img_paths)} images have no entry '
                f'in the label file ({_first_names(missing)})'
            )
        if empty:
            problems.append(
                f'{len(empty)} images have no foreground label '
                f'({_first_names(empty)}; WSSS training needs at least one '
                'class per image: remove them from the split or set '
                'LoadImageLabels(allow_empty=True))'
            )
        if problems:
            raise ValueError(
                f'label file {self.label_file} ({len(self._labels)} images) '
                f'does not match {source}: ' + '; '.join(problems)
            )

    def transform(self, results: dict) -> dict:
        """Add ``img_labels`` for ``results['img_path']``.

        Args:
            results (dict): Result dict holding ``img_path``.

        Returns:
            dict: ``results`` with ``img_labels`` added.
        """
        img_path = results.get('img_path')
        if img_path is None:
            raise KeyError('LoadImageLabels needs "img_path" in the results dict')
        key = image_key(img_path)
        if key not in self._labels:
            raise KeyError(
                f'image "{key}" ({img_path}) has no entry in the label file '
                f'{self.label_file} ({len(self._labels)} images): the split '
                'and the label file do not match'
            )
        labels = self._labels[key]
        if not self.allow_empty and not labels.any():
            raise ValueError(
                f'image "{key}" ({img_path}) has no foreground label in the '
                f'label file {self.label_file}. WSSS training needs at least '
                'one class per image: remove it from the split list (or set '
                'LoadImageLabels(allow_empty=True))'
            )
        results[IMG_LABELS] = labels.copy()
        return results

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(label_file='{self.label_file}', "
            f'num_classes={self.num_classes}, allow_empty={self.allow_empty})'
        )
