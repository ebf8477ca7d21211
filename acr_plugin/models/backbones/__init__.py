from .multi_class_token_vit import MultiClassTokenViT
from .timm_vit import TimmViT

__all__ = ['TimmViT', 'MultiClassTokenViT']
