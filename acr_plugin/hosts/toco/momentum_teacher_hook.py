"""EMA update of teacher heads after each optimiser step."""

from typing import Dict, List, Optional

import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmseg.registry import HOOKS


@HOOKS.register_module()
class MomentumTeacherHook(Hook):
    """Call ``momentum_update(momentum)`` on every submodule that has it.

    Runs after each training iteration, i.e. after the optimiser step, so the
    teacher follows the student once per step however many times the model's
    loss ran in that step (``ACRSegmentor`` runs it once per view). Used by
    ``CTCProjectionHead`` (ToCo's class-token contrast: the teacher is an EMA
    of the projection head only).

    ToCo (Ru et al., CVPR 2023) moves the teacher at the start of each
    iteration instead, before its forward, from a copy of the student: the
    teacher of every iteration is the same (its first move is a no-op, each
    later one uses the student after the previous step, as here), and a
    checkpoint (saved after this hook) holds the next iteration's teacher, so
    resuming continues identically (``test_momentum_teacher_timing.py``).

    Args:
        momentum (float): Teacher weight: ``t <- m t + (1 - m) s``.
            Defaults to 0.9 (ToCo).
        priority (str | int): Defaults to ``'ABOVE_NORMAL'`` (before
            checkpointing, so saved teachers are up to date).
    """

    def __init__(self, momentum: float = 0.9, priority='ABOVE_NORMAL') -> None:
        super().__init__()
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(
                f'MomentumTeacherHook: momentum must be in [0, 1], got {momentum}'
            )
        self.momentum = momentum
        self.priority = priority

    @staticmethod
    def targets(model: nn.Module) -> List[nn.Module]:
        if is_model_wrapper(model):
            model = model.module
        return [m for m in model.modules() if hasattr(m, 'momentum_update')]

    def before_train(self, runner) -> None:
        if not self.targets(runner.model):
            raise TypeError(
                f'MomentumTeacherHook: no submodule of '
                f'{type(runner.model).__name__} has momentum_update()'
            )

    def after_train_iter(
        self,
        runner,
        batch_idx: int,
        data_batch: Optional[Dict] = None,
        outputs: Optional[Dict] = None,
    ) -> None:
        for module in self.targets(runner.model):
            module.momentum_update(self.momentum)
