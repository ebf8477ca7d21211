from .vit_cam import ViTCAM, split_vit_output

__all__ = ['ViTCAM', 'split_vit_output']
