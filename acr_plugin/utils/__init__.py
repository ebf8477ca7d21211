from .dense_crf import (
    background_from_cams,
    crf_available,
    crf_refine_labels,
    dense_crf,
)

__all__ = ['background_from_cams', 'crf_available', 'crf_refine_labels', 'dense_crf']
