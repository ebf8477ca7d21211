"""Tiny stand-in Fashion-MNIST files for tests and smoke runs (no download)."""

import os.path as osp
from typing import Dict

import numpy as np

from acr_plugin.datasets.fashion_mnist.idx import FILE_STEMS, NUM_CLASSES, write_idx


def tiny_items(num: int, seed: int = 0, side: int = 28) -> Dict[str, np.ndarray]:
    """``num`` item images: a bright filled ellipse per image, labels cycling.

    Args:
        num (int): Number of items.
        seed (int): Seed of the shapes and intensities. Defaults to 0.
        side (int): Image side. Defaults to 28 (Fashion-MNIST's).

    Returns:
        dict: ``images`` ``(num, side, side)`` uint8 (background 0, items
        80-255) and ``labels`` ``(num,)`` uint8 (``i % 10``).
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:side, :side] + 0.5
    images = np.zeros((num, side, side), np.uint8)
    for i in range(num):
        cy, cx = rng.uniform(0.4, 0.6, 2) * side
        a, b = rng.uniform(0.25, 0.45, 2) * side
        inside = ((yy - cy) / a) ** 2 + ((xx - cx) / b) ** 2 <= 1.0
        texture = rng.integers(80, 256, (side, side))
        images[i][inside] = texture[inside]
    labels = (np.arange(num) % NUM_CLASSES).astype(np.uint8)
    return dict(images=images, labels=labels)


def make_tiny_fashion_mnist(
    root: str, num_train: int = 48, num_test: int = 12, gz: bool = True
) -> str:
    """Write the four Fashion-MNIST IDX files of tiny stand-in items to ``root``.

    With the default 48 training items the pools hold 28 train, 4 val and 16
    pretrain items (see :mod:`.idx`).

    Args:
        root (str): Output folder (created).
        num_train (int): Items of the training file. Defaults to 48.
        num_test (int): Items of the test file. Defaults to 12.
        gz (bool): Write gzipped files. Defaults to True.

    Returns:
        str: ``root``.
    """
    suffix = '.gz' if gz else ''
    for source, num, seed in (('train', num_train, 0), ('t10k', num_test, 1)):
        items = tiny_items(num, seed)
        images_stem, labels_stem = FILE_STEMS[source]
        write_idx(osp.join(root, images_stem + suffix), items['images'])
        write_idx(osp.join(root, labels_stem + suffix), items['labels'])
    return root
