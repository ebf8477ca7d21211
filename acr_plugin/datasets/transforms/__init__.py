"""WSSS data transforms (image-level labels in, pixel labels out)."""

from .derive_image_labels import DeriveImageLabels
from .load_image_labels import LoadImageLabels
from .pack_wsss_inputs import PackWSSSInputs

__all__ = ['DeriveImageLabels', 'LoadImageLabels', 'PackWSSSInputs']
