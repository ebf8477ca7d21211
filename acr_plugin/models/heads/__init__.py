from .cls_token_grad_cam_head import ClsTokenGradCAMHead
from .grad_cam_ops import (
    GRAD_CAM_VARIANTS,
    affinity_matrix,
    grad_cam_maps,
    grad_cam_maps_batched,
    layer_scores,
)

__all__ = [
    'ClsTokenGradCAMHead',
    'GRAD_CAM_VARIANTS',
    'affinity_matrix',
    'grad_cam_maps',
    'grad_cam_maps_batched',
    'layer_scores',
]
