from .cls_token_grad_cam_head import ClsTokenGradCAMHead
from .ctc_projection_head import CTCProjectionHead
from .deeplabv2_head import DeepLabV2Head
from .grad_cam_ops import (
    GRAD_CAM_VARIANTS,
    affinity_matrix,
    grad_cam_maps,
    grad_cam_maps_batched,
    layer_scores,
)
from .large_fov_head import LargeFOVHead

__all__ = [
    'ClsTokenGradCAMHead',
    'GRAD_CAM_VARIANTS',
    'affinity_matrix',
    'grad_cam_maps',
    'grad_cam_maps_batched',
    'layer_scores',
    'CTCProjectionHead',
    'DeepLabV2Head',
    'LargeFOVHead',
]
