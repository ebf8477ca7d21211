from .cam_ops import (
    cam_from_patch_tokens,
    cams_to_seg_logits,
    global_pool,
    minmax_normalize,
    multi_scale_flip_cams,
)

__all__ = [
    'cam_from_patch_tokens',
    'cams_to_seg_logits',
    'global_pool',
    'minmax_normalize',
    'multi_scale_flip_cams',
]
