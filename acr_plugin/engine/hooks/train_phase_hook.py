"""Iteration schedule of loss weights (and other training switches)."""

from typing import Dict, List, Optional, Sequence

import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmseg.registry import HOOKS


def phase_at(phases: Sequence[dict], iteration: int) -> dict:
    """Settings in force at ``iteration`` (0-based): every phase whose
    ``begin`` is ``<= iteration`` applied in order, later keys winning.

    ``loss_weights`` dicts are merged key by key; other keys are replaced.

    Args:
        phases (Sequence[dict]): Phases sorted by ``begin``.
        iteration (int): The iteration about to run.

    Returns:
        dict: The merged settings without ``begin`` (empty before the first
        phase).
    """
    merged: dict = {}
    for phase in phases:
        if phase['begin'] > iteration:
            break
        for key, value in phase.items():
            if key == 'begin':
                continue
            if key == 'loss_weights':
                merged.setdefault('loss_weights', {}).update(value)
            else:
                merged[key] = value
    return merged


@HOOKS.register_module()
class TrainPhaseHook(Hook):
    """Switch loss weights and model settings at given iterations.

    Before every training iteration the settings of the current phase are
    passed to ``set_train_phase(**settings)`` of every submodule that has that
    method (e.g. ``ToCo``, also when wrapped by ``ACRSegmentor`` or DDP). The
    settings are a pure function of the iteration, so a resumed run continues
    in the right phase.

    Example (ToCo on VOC: no segmentation / dense energy loss for the first
    2,000 iterations)::

        custom_hooks = [dict(type='TrainPhaseHook', phases=[
            dict(begin=0, loss_weights=dict(loss_seg=0.0, loss_reg=0.0)),
            dict(begin=2000, loss_weights=dict(loss_seg=0.1, loss_reg=0.05)),
        ])]

    Args:
        phases (Sequence[dict]): Each has ``begin`` (0-based iteration, the
            first phase must begin at 0) and the keyword arguments of the
            model's ``set_train_phase`` (``loss_weights`` maps loss names to
            weights; later phases update earlier ones key by key).
        priority (str | int): Hook priority. Runs before the optimizer step
            and the logger. Defaults to ``'NORMAL'``.
    """

    def __init__(self, phases: Sequence[dict], priority='NORMAL') -> None:
        super().__init__()
        phases = [dict(p) for p in phases]
        if not phases:
            raise ValueError('TrainPhaseHook: phases must not be empty')
        for i, phase in enumerate(phases):
            if 'begin' not in phase:
                raise KeyError(f'TrainPhaseHook: phases[{i}] has no "begin"')
            if int(phase['begin']) < 0:
                raise ValueError(
                    f'TrainPhaseHook: phases[{i}].begin must be >= 0, got '
                    f'{phase["begin"]}'
                )
        begins = [int(p['begin']) for p in phases]
        if begins != sorted(begins) or len(set(begins)) != len(begins):
            raise ValueError(
                f'TrainPhaseHook: phase begins must increase strictly, got {begins}'
            )
        if begins[0] != 0:
            raise ValueError(
                f'TrainPhaseHook: the first phase must begin at 0, got {begins[0]}'
            )
        self.phases = phases
        self.priority = priority
        self._current: Optional[dict] = None

    @staticmethod
    def targets(model: nn.Module) -> List[nn.Module]:
        """Submodules with ``set_train_phase``."""
        if is_model_wrapper(model):
            model = model.module
        return [m for m in model.modules() if hasattr(m, 'set_train_phase')]

    def before_train(self, runner) -> None:
        if not self.targets(runner.model):
            raise TypeError(
                f'TrainPhaseHook: no submodule of {type(runner.model).__name__} '
                'has set_train_phase(); remove the hook or use a model that '
                'supports phases (e.g. ToCo)'
            )

    def before_train_iter(
        self, runner, batch_idx: int, data_batch: Optional[Dict] = None
    ) -> None:
        settings = phase_at(self.phases, runner.iter)
        if settings == self._current:
            return
        for module in self.targets(runner.model):
            module.set_train_phase(**settings)
        print_log(
            f'TrainPhaseHook: iteration {runner.iter}: {settings}', logger='current'
        )
        self._current = settings
