from . import transforms  # noqa: F401
from .synthetic_wsss import SyntheticWSSSDataset
from .transforms import DeriveImageLabels, LoadImageLabels, PackWSSSInputs
from .wsss_coco import WSSSCOCODataset
from .wsss_voc import WSSSVOCDataset

__all__ = [
    'SyntheticWSSSDataset',
    'WSSSVOCDataset',
    'WSSSCOCODataset',
    'DeriveImageLabels',
    'LoadImageLabels',
    'PackWSSSInputs',
]
