from . import transforms  # noqa: F401
from .fashion_mnist_wsss import FashionMNISTWSSSDataset
from .synthetic_wsss import SyntheticWSSSDataset
from .transforms import DeriveImageLabels, LoadImageLabels, PackWSSSInputs
from .wsss_coco import WSSSCOCODataset
from .wsss_voc import WSSSVOCDataset

__all__ = [
    'FashionMNISTWSSSDataset',
    'SyntheticWSSSDataset',
    'WSSSVOCDataset',
    'WSSSCOCODataset',
    'DeriveImageLabels',
    'LoadImageLabels',
    'PackWSSSInputs',
]
