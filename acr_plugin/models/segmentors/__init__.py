from .acr_segmentor import ACRSegmentor
from .vit_cam import ViTCAM, split_vit_output

__all__ = ['ACRSegmentor', 'ViTCAM', 'split_vit_output']
