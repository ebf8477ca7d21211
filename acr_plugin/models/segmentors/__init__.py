from .acr_segmentor import ACRSegmentor
from .checkpoint_fit import CheckpointMismatchError, install_checkpoint_fit
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
    'CheckpointMismatchError',
    'install_checkpoint_fit',
]
