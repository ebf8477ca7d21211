from .cam_visualization_hook import CAMVisualizationHook, cam_panel
from .uniform_attention_hook import UniformAttention, UniformAttentionHook

__all__ = [
    'CAMVisualizationHook',
    'cam_panel',
    'UniformAttention',
    'UniformAttentionHook',
]
