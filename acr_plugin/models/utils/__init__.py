"""Tensor ops shared by several methods: CAM ops, image ops, dense-CRF refinement."""

from .cam_ops import (
    cam_from_patch_tokens,
    cams_to_seg_logits,
    global_pool,
    minmax_normalize,
    multi_scale_flip_cams,
)
from .crf import (
    background_from_cams,
    check_crf_cfg,
    crf_available,
    crf_image,
    crf_refine_labels,
    crf_refine_predictions,
    crf_scores,
    dense_crf,
    images_at_prediction_size,
    packed_image_for_crf,
)
from .image_augment import (
    blur_with_sigma,
    color_jitter,
    gaussian_blur,
    random_grayscale,
    random_hflip,
    random_resized_crop,
)
from .image_norm import denormalize, normalize

__all__ = [
    'cam_from_patch_tokens',
    'cams_to_seg_logits',
    'background_from_cams',
    'check_crf_cfg',
    'crf_available',
    'crf_image',
    'crf_refine_labels',
    'crf_refine_predictions',
    'crf_scores',
    'dense_crf',
    'images_at_prediction_size',
    'packed_image_for_crf',
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
