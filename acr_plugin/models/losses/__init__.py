from .acr_terms import (
    affinity_term,
    cam_term,
    class_row_term,
    elementwise_distance,
    normalize_cams,
    patch_row_entropy,
    symmetric_kl_rows,
)
from .all_pairs_consistency_loss import AllPairsConsistencyLoss
from .efficient_consistency import (
    ChunkedConsistencyFunction,
    chunked_consistency_terms,
    qk_attention_entropy,
    qk_patch_row_entropy,
)
from .multilabel_soft_margin_loss import (
    MultiLabelSoftMarginLoss,
    multilabel_soft_margin,
)

__all__ = [
    'MultiLabelSoftMarginLoss',
    'multilabel_soft_margin',
    'AllPairsConsistencyLoss',
    'affinity_term',
    'cam_term',
    'class_row_term',
    'elementwise_distance',
    'normalize_cams',
    'patch_row_entropy',
    'symmetric_kl_rows',
    'ChunkedConsistencyFunction',
    'chunked_consistency_terms',
    'qk_attention_entropy',
    'qk_patch_row_entropy',
]
