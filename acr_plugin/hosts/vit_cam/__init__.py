"""A plain ViT classifier with patch-token CAMs (the ViT-CAM host)."""

from .vit_cam import ViTCAM, split_vit_output

__all__ = ['ViTCAM', 'split_vit_output']
