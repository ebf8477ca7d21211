"""Generic training hooks (method-specific hooks live with their method)."""

from .cam_visualization_hook import CAMVisualizationHook, cam_panel
from .iteration_seed_hook import IterationSeedHook
from .non_finite_loss_hook import NonFiniteLossHook
from .train_phase_hook import TrainPhaseHook, phase_at
from .weights_only_checkpoint_hook import WeightsOnlyCheckpointHook

__all__ = [
    'CAMVisualizationHook',
    'cam_panel',
    'IterationSeedHook',
    'NonFiniteLossHook',
    'WeightsOnlyCheckpointHook',
    'TrainPhaseHook',
    'phase_at',
]
