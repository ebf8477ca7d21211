"""Argument checks shared by the procedural benchmark specs.

``SyntheticSpec`` (:mod:`acr_plugin.datasets.synthetic.spec`) and
``FashionMNISTSpec`` (:mod:`acr_plugin.datasets.fashion_mnist.composer`) both
name a design and a canvas size; their errors name the spec class and field.
"""

from typing import Any, Collection, Tuple

import numpy as np


def check_design(owner: str, design: str, design_ids: Collection[str]) -> None:
    """Refuse a design name outside ``design_ids``.

    Args:
        owner (str): The spec class, quoted by the error.
        design (str): The requested design.
        design_ids (Collection[str]): The valid designs.

    Raises:
        ValueError: ``design`` is not one of them.
    """
    if design not in design_ids:
        raise ValueError(
            f'{owner}.design must be one of {sorted(design_ids)}, got {design!r}'
        )


def canvas_size(owner: str, img_size: Any) -> Tuple[int, int]:
    """``(h, w)`` of an ``img_size`` given as an int or a pair, sides >= 32.

    Args:
        owner (str): The spec class, quoted by the error.
        img_size (int | Sequence[int]): The requested size.

    Returns:
        tuple[int, int]: ``(h, w)``.

    Raises:
        ValueError: Not one or two sides, or a side below 32.
    """
    size = img_size
    if isinstance(size, (int, np.integer)):
        size = (int(size), int(size))
    size = tuple(int(s) for s in size)
    if len(size) != 2 or min(size) < 32:
        raise ValueError(
            f'{owner}.img_size must be an int or (h, w) with sides '
            f'>= 32, got {img_size!r}'
        )
    return size
