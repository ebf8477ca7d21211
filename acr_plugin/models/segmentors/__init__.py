from .acr_segmentor import ACRSegmentor
from .mctformer import MCTformer
from .toco import CAM_SEG_LOGITS, ToCo
from .vit_cam import ViTCAM, split_vit_output

__all__ = [
    'ACRSegmentor',
    'ViTCAM',
    'split_vit_output',
    'ToCo',
    'CAM_SEG_LOGITS',
    'MCTformer',
]
