"""MCTformer-V1/V2: one class token per class (Xu et al., CVPR 2022)."""

from .mct_ops import (
    class_to_patch_maps,
    class_token_logits,
    patch_affinity,
    patch_affinity_refine,
)
from .mctformer import MCTformer
from .multi_class_token_vit import MultiClassTokenViT

__all__ = [
    'MCTformer',
    'MultiClassTokenViT',
    'class_to_patch_maps',
    'class_token_logits',
    'patch_affinity',
    'patch_affinity_refine',
]
