"""Tensor ops shared by several methods: CAM ops, image ops, dense-CRF refinement."""

from .cam_ops import (
    cam_from_patch_tokens,
    cams_to_seg_logits,
    global_pool,
    minmax_normalize,
    multi_scale_flip_cams,
)
from .crf_ops import (
    check_crf_cfg,
    crf_refine_predictions,
    images_at_prediction_size,
)
from .image_augment import (
    blur_with_sigma,
    color_jitter,
    denormalize,
    gaussian_blur,
    normalize,
    random_grayscale,
    random_hflip,
    random_resized_crop,
)

__all__ = [
    'cam_from_patch_tokens',
    'cams_to_seg_logits',
    'check_crf_cfg',
    'crf_refine_predictions',
    'images_at_prediction_size',
    'global_pool',
    'minmax_normalize',
    'multi_scale_flip_cams',
    'blur_with_sigma',
    'color_jitter',
    'denormalize',
    'gaussian_blur',
    'normalize',
    'random_grayscale',
    'random_hflip',
    'random_resized_crop',
]
