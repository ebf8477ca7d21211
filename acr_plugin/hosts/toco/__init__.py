"""ToCo, token contrast for single-stage WSSS (Ru et al., CVPR 2023).

``toco.ToCo`` is the segmentor (the losses of one iteration and their
schedule in ``toco_training_step.ToCoTrainingStep``); beside it its losses
(PTC, CTC, the background/foreground-balanced CE, the dense energy loss), the
CTC projection head, pixel-adaptive refinement (PAR), the CTC views and pseudo-label ops
(``toco_ops``), the momentum-teacher hook and the colour-jitter transform.
"""

from .bg_fg_balanced_ce_loss import BgFgBalancedCELoss, bg_fg_balanced_cross_entropy
from .class_token_contrast_loss import ClassTokenContrastLoss, class_token_contrast
from .ctc_projection_head import CTCProjectionHead
from .dense_energy_loss import DenseEnergyFunction, DenseEnergyLoss, dense_energy
from .momentum_teacher_hook import MomentumTeacherHook
from .par import PixelAdaptiveRefinement
from .patch_token_contrast_loss import PatchTokenContrastLoss, patch_token_contrast
from .random_color_jitter import RandomColorJitter
from .toco import CAM_SEG_LOGITS, ToCo
from .toco_ops import (
    ignore_band_labels,
    refine_cams_with_par,
    roi_map,
    sample_local_crops,
    token_band_labels,
)

__all__ = [
    'ToCo',
    'CAM_SEG_LOGITS',
    'BgFgBalancedCELoss',
    'bg_fg_balanced_cross_entropy',
    'ClassTokenContrastLoss',
    'class_token_contrast',
    'CTCProjectionHead',
    'DenseEnergyFunction',
    'DenseEnergyLoss',
    'dense_energy',
    'MomentumTeacherHook',
    'PixelAdaptiveRefinement',
    'PatchTokenContrastLoss',
    'patch_token_contrast',
    'RandomColorJitter',
    'ignore_band_labels',
    'refine_cams_with_par',
    'roi_map',
    'sample_local_crops',
    'token_band_labels',
]
