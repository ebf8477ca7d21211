"""High-level entry points (pseudo labels for the second stage)."""

from .builders import build_model, build_split_dataset
from .label_io import label_to_png, read_label_png, sample_name, save_label_png
from .pseudo_labels import (
    generate_pseudo_labels,
    labels_from_seg_logits,
    search_bg_threshold,
)
from .sharding import shard_indices

__all__ = [
    'build_model',
    'build_split_dataset',
    'generate_pseudo_labels',
    'label_to_png',
    'labels_from_seg_logits',
    'read_label_png',
    'sample_name',
    'save_label_png',
    'search_bg_threshold',
    'shard_indices',
]
