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
from .bg_fg_balanced_ce_loss import BgFgBalancedCELoss, bg_fg_balanced_cross_entropy
from .class_token_contrast_loss import ClassTokenContrastLoss, class_token_contrast
from .dense_energy_loss import DenseEnergyFunction, DenseEnergyLoss, dense_energy
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
from .patch_token_contrast_loss import PatchTokenContrastLoss, patch_token_contrast

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
    'PatchTokenContrastLoss',
    'patch_token_contrast',
    'ClassTokenContrastLoss',
    'class_token_contrast',
    'BgFgBalancedCELoss',
    'bg_fg_balanced_cross_entropy',
    'DenseEnergyFunction',
    'DenseEnergyLoss',
    'dense_energy',
]
