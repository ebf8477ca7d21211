"""A plain ViT classifier with patch-token CAMs (the ViT-CAM host)."""

from .vit_cam import ViTCAM

__all__ = ['ViTCAM']
