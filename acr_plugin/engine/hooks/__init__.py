from .cam_visualization_hook import CAMVisualizationHook, cam_panel
from .iteration_seed_hook import IterationSeedHook
from .momentum_teacher_hook import MomentumTeacherHook
from .non_finite_loss_hook import NonFiniteLossHook
from .train_phase_hook import TrainPhaseHook, phase_at
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
    'MomentumTeacherHook',
    'TrainPhaseHook',
    'phase_at',
]
