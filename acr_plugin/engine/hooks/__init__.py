from .cam_visualization_hook import CAMVisualizationHook, cam_panel
from .iteration_seed_hook import IterationSeedHook
from .non_finite_loss_hook import NonFiniteLossHook
from .uniform_attention_hook import UniformAttention, UniformAttentionHook
from .weights_only_checkpoint_hook import WeightsOnlyCheckpointHook

__all__ = [
    'CAMVisualizationHook',
    'cam_panel',
    'IterationSeedHook',
    'NonFiniteLossHook',
    'UniformAttention',
    'UniformAttentionHook',
    'WeightsOnlyCheckpointHook',
]
