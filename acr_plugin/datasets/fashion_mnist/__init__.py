"""Fashion-MNIST items composed into a WSSS benchmark (numpy + PIL)."""

from .composer import (
    DESIGN_IDS,
    FashionMNISTSpec,
    class_names,
    class_palette,
    compose_sample,
)
from .idx import (
    CLASS_NAMES,
    DEFAULT_ROOT,
    ItemPool,
    load_item_pool,
    read_idx,
    split_positions,
    write_idx,
)
from .testing import make_tiny_fashion_mnist

__all__ = [
    'CLASS_NAMES',
    'DEFAULT_ROOT',
    'DESIGN_IDS',
    'FashionMNISTSpec',
    'ItemPool',
    'class_names',
    'class_palette',
    'compose_sample',
    'load_item_pool',
    'make_tiny_fashion_mnist',
    'read_idx',
    'split_positions',
    'write_idx',
]
