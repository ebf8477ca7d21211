"""Fashion-MNIST files: IDX reading/writing and the item pools of the splits.

Fashion-MNIST (Xiao et al., 2017, arXiv:1708.07747; MIT licence) ships four IDX
files (LeCun's MNIST format: a 4-byte magic ``0x0000 <dtype> <ndim>`` then
``ndim`` big-endian int32 sizes and the raw array), gzipped or not:
``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``. Debian's
``dataset-fashion-mnist`` package installs them in :data:`DEFAULT_ROOT`.

Splits are pools of *items* (single product images), fixed by the file
position only, so no item is shared between two pools whatever the seeds:

- ``'test'``: every image of the test file (10,000 items);
- ``'val'``: training-file positions ``i % 12 == 0`` (5,000 items);
- ``'pretrain'``: positions ``i % 12 in 1..4`` (20,000 items; classification
  pretraining, the stand-in for ImageNet);
- ``'train'``: positions ``i % 12 in 5..11`` (35,000 items).

The training file is already in random order, so the residues are random
subsets with about 10 % of each class.
"""

import functools
import gzip
import os
import os.path as osp
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import numpy as np

#: where ``apt-get install dataset-fashion-mnist`` puts the files
DEFAULT_ROOT = '/usr/share/datasets/fashion-mnist'

#: the file stems of each source file (``.gz`` optional)
FILE_STEMS = {
    'train': ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte'),
    't10k': ('t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte'),
}

#: class names of Fashion-MNIST labels 0..9 (segmentation classes 1..10)
CLASS_NAMES = (
    'tshirt_top',
    'trouser',
    'pullover',
    'dress',
    'coat',
    'sandal',
    'shirt',
    'sneaker',
    'bag',
    'ankle_boot',
)
NUM_CLASSES = len(CLASS_NAMES)

#: split -> (source file, residues of ``position % SPLIT_MODULUS``; None = all)
SPLIT_RESIDUES: Dict[str, Tuple[str, Optional[Tuple[int, ...]]]] = {
    'train': ('train', tuple(range(5, 12))),
    'val': ('train', (0,)),
    'pretrain': ('train', (1, 2, 3, 4)),
    'test': ('t10k', None),
}
SPLIT_MODULUS = 12

#: IDX type codes -> numpy dtypes (big-endian where it matters)
_IDX_DTYPES = {
    0x08: np.dtype('u1'),
    0x09: np.dtype('i1'),
    0x0B: np.dtype('>i2'),
    0x0C: np.dtype('>i4'),
    0x0D: np.dtype('>f4'),
    0x0E: np.dtype('>f8'),
}

INSTALL_HINT = (
    'install them with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu; '
    f'the files go to {DEFAULT_ROOT}) or download the four IDX files of '
    "https://github.com/zalandoresearch/fashion-mnist, and set the dataset's "
    '`data_root` to their folder'
)


def _open(path: str):
    return gzip.open(path, 'rb') if path.endswith('.gz') else open(path, 'rb')


def read_idx(path: str) -> np.ndarray:
    """Read an IDX file (gzipped when the name ends with ``.gz``).

    Args:
        path (str): The file.

    Returns:
        np.ndarray: The array, in native byte order.
    """
    with _open(path) as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f'{path} is not an IDX file (magic {data[:4].hex()!r})')
    dtype, ndim = _IDX_DTYPES[data[2]], data[3]
    header = 4 + 4 * ndim
    shape = tuple(int(s) for s in np.frombuffer(data[4:header], '>u4'))
    count = int(np.prod(shape)) if shape else 1
    if len(data) != header + count * dtype.itemsize:
        raise ValueError(
            f'{path}: IDX header says shape {shape} ({count * dtype.itemsize} '
            f'bytes of data) but the file holds {len(data) - header}'
        )
    array = np.frombuffer(data, dtype, count=count, offset=header)
    return array.astype(dtype.newbyteorder('='), copy=True).reshape(shape)


def write_idx(path: str, array: np.ndarray) -> None:
    """Write ``array`` as an IDX file (gzipped when the name ends with ``.gz``).

    Args:
        path (str): The file; its folder is created.
        array (np.ndarray): Array of a dtype IDX supports (uint8 for images
            and labels).
    """
    array = np.asarray(array)
    codes = {dtype.newbyteorder('='): code for code, dtype in _IDX_DTYPES.items()}
    code = codes.get(array.dtype.newbyteorder('='))
    if code is None:
        raise ValueError(f'IDX has no type code for dtype {array.dtype}')
    big = array.astype(_IDX_DTYPES[code], copy=False)
    header = bytes([0, 0, code, array.ndim])
    header += np.asarray(array.shape, '>u4').tobytes()
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with gzip.open(path, 'wb') if path.endswith('.gz') else open(path, 'wb') as f:
        f.write(header + big.tobytes())


def find_file(root: str, stem: str) -> str:
    """``root/stem.gz`` or ``root/stem``, with an install hint when missing."""
    for name in (f'{stem}.gz', stem):
        path = osp.join(root, name)
        if osp.isfile(path):
            return path
    raise FileNotFoundError(
        f'Fashion-MNIST file {osp.join(root, stem)}[.gz] not found: ' + INSTALL_HINT
    )


@functools.lru_cache(maxsize=4)
def _load_source_cached(
    images: str, labels: str, stamp: tuple
) -> Tuple[np.ndarray, np.ndarray]:
    del stamp  # part of the cache key only
    imgs, lbls = read_idx(images), read_idx(labels)
    if imgs.ndim != 3 or imgs.dtype != np.uint8:
        raise ValueError(
            f'{images}: expected uint8 images (N, H, W), got {imgs.dtype} {imgs.shape}'
        )
    if lbls.shape != imgs.shape[:1]:
        raise ValueError(
            f'{labels}: expected {imgs.shape[0]} labels, got shape {lbls.shape}'
        )
    if lbls.size and int(lbls.max()) >= NUM_CLASSES:
        raise ValueError(f'{labels}: labels must lie in [0, {NUM_CLASSES})')
    imgs.flags.writeable = False
    lbls = lbls.astype(np.int64)
    lbls.flags.writeable = False
    return imgs, lbls


def load_source(root: str, source: str) -> Tuple[np.ndarray, np.ndarray]:
    """Images ``(N, H, W)`` uint8 and labels ``(N,)`` int64 of a source file.

    Read once per process (cached by path, size and modification time) and
    returned read-only.

    Args:
        root (str): Folder of the IDX files.
        source (str): ``'train'`` or ``'t10k'``.

    Returns:
        tuple[np.ndarray, np.ndarray]: Images and labels.
    """
    images, labels = (find_file(root, stem) for stem in FILE_STEMS[source])
    stats = [os.stat(path) for path in (images, labels)]
    stamp = tuple((st.st_size, st.st_mtime_ns) for st in stats)
    return _load_source_cached(osp.abspath(images), osp.abspath(labels), stamp)


def split_positions(split: str, num_items: int) -> np.ndarray:
    """Positions in the split's source file of the split's items.

    Args:
        split (str): ``'train'``, ``'val'``, ``'pretrain'`` or ``'test'``.
        num_items (int): Number of images of the source file.

    Returns:
        np.ndarray: int64 positions, ascending.
    """
    if split not in SPLIT_RESIDUES:
        raise ValueError(
            f'Fashion-MNIST split must be one of {sorted(SPLIT_RESIDUES)}, '
            f'got {split!r}'
        )
    positions = np.arange(num_items, dtype=np.int64)
    residues = SPLIT_RESIDUES[split][1]
    if residues is not None:
        positions = positions[np.isin(positions % SPLIT_MODULUS, residues)]
    return positions


@dataclass(frozen=True)
class ItemPool:
    """The items of one split: the source file's arrays and the split's positions.

    Args:
        split (str): Split name (see the module docstring).
        images (np.ndarray): ``(N, h, w)`` uint8 images of the whole source file.
        labels (np.ndarray): ``(N,)`` int64 labels ``0..9`` of the source file.
        positions (np.ndarray): Positions of the split's items in the file.
    """

    split: str
    images: np.ndarray
    labels: np.ndarray
    positions: np.ndarray

    def __len__(self) -> int:
        return len(self.positions)


def load_item_pool(root: str, split: str) -> ItemPool:
    """The item pool of ``split`` read from the IDX files under ``root``.

    Args:
        root (str): Folder of the IDX files.
        split (str): ``'train'``, ``'val'``, ``'pretrain'`` or ``'test'``.

    Returns:
        ItemPool: The pool (at least one item).
    """
    if split not in SPLIT_RESIDUES:
        raise ValueError(
            f'Fashion-MNIST split must be one of {sorted(SPLIT_RESIDUES)}, '
            f'got {split!r}'
        )
    images, labels = load_source(root, SPLIT_RESIDUES[split][0])
    positions = split_positions(split, len(images))
    if not len(positions):
        raise ValueError(
            f'Fashion-MNIST split {split!r} has no items: the source file under '
            f'{root} holds {len(images)} images'
        )
    positions.flags.writeable = False
    return ItemPool(split, images, labels, positions)
