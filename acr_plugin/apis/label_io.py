"""Pseudo-label files: palette PNGs written atomically, read back, named.

One palette PNG per image (PIL mode ``P``, the dataset's palette, label 255 in
the VOC void colour), named after the image (``<basename>.png``; synthetic
samples by their index, ``000012.png``) and written atomically (temporary file
+ ``os.replace``), so a reader or a resumed run sees either no file or the
complete one (a killed process may leave a hidden ``.<name>.png.*.tmp`` file).
"""

import os
import os.path as osp
import tempfile
from typing import List, Sequence

import numpy as np
from PIL import Image

#: colour of label 255 (VOC "void" boundary) in the written palette
VOID_COLOR = (224, 224, 192)
#: suffix of temporary files (never left behind by a finished write)
TMP_SUFFIX = '.tmp'


def label_palette(palette: Sequence[Sequence[int]]) -> List[int]:
    """A flat 256-colour PIL palette from a dataset's ``[r, g, b]`` list.

    Entries past the dataset's classes are black, except 255 (the ignore
    label) which gets the VOC void colour.

    Args:
        palette (Sequence[Sequence[int]]): One ``[r, g, b]`` per class.

    Returns:
        list[int]: 768 values ``r0, g0, b0, r1, ...``.
    """
    if len(palette) > 255:
        raise ValueError(
            f'a palette PNG holds at most 255 classes (+ ignore), got {len(palette)}'
        )
    colors = [tuple(int(v) for v in color) for color in palette]
    if any(len(c) != 3 for c in colors):
        raise ValueError('palette entries must be [r, g, b] triples')
    colors += [(0, 0, 0)] * (256 - len(colors))
    colors[255] = VOID_COLOR
    return [v for color in colors for v in color]


def label_to_png(label: np.ndarray, palette: Sequence[Sequence[int]]) -> Image.Image:
    """An ``(H, W)`` label map as a palette-mode (``P``) PIL image.

    Args:
        label (np.ndarray): Integer labels in ``[0, 255]``.
        palette (Sequence[Sequence[int]]): One ``[r, g, b]`` per class.

    Returns:
        PIL.Image.Image: Mode ``P`` image whose pixel values are the labels.
    """
    label = np.asarray(label)
    if label.ndim != 2:
        raise ValueError(f'expected an (H, W) label map, got shape {label.shape}')
    if label.size and (int(label.min()) < 0 or int(label.max()) > 255):
        raise ValueError(
            f'labels must lie in [0, 255] for a PNG, got [{label.min()}, {label.max()}]'
        )
    image = Image.fromarray(label.astype(np.uint8))  # mode L ...
    image.putpalette(label_palette(palette))  # ... becomes P, indices kept
    return image


def save_label_png(
    label: np.ndarray, path: str, palette: Sequence[Sequence[int]]
) -> None:
    """Write a palette PNG atomically (temporary file + ``os.replace``).

    A reader (or a resumed run) sees either no file or the complete one; the
    temporary file is removed if writing fails.

    Args:
        label (np.ndarray): ``(H, W)`` labels.
        path (str): Destination ``.png``.
        palette (Sequence[Sequence[int]]): One ``[r, g, b]`` per class.
    """
    image = label_to_png(label, palette)
    folder = osp.dirname(osp.abspath(path))
    fd, tmp = tempfile.mkstemp(
        prefix=f'.{osp.basename(path)}.', suffix=TMP_SUFFIX, dir=folder
    )
    try:
        with os.fdopen(fd, 'wb') as f:
            image.save(f, format='PNG')
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise


def read_label_png(path: str) -> np.ndarray:
    """Label indices ``(H, W)`` uint8 of a palette or single-channel PNG."""
    with Image.open(path) as image:
        if image.mode not in ('P', 'L'):
            raise ValueError(
                f'{path}: expected a palette or single-channel PNG, got mode '
                f'{image.mode}'
            )
        return np.array(image, dtype=np.uint8)


def sample_name(img_path: str) -> str:
    """File stem of a sample: the image's basename without extension.

    ``'data/VOC2012/JPEGImages/2007_000032.jpg'`` gives ``'2007_000032'``;
    a synthetic id ``'synthetic://wsss/seed0/000012'`` gives ``'000012'``.
    """
    name = osp.splitext(osp.basename(str(img_path)))[0]
    if not name:
        raise ValueError(f'cannot derive a file name from img_path "{img_path}"')
    return name
