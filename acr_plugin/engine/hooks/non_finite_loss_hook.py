"""Stop training at the first non-finite loss, before the update is applied."""

import math
from typing import Callable, Dict, Mapping, Optional, Sequence

import torch
from mmengine.dist import get_dist_info
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmseg.registry import HOOKS
from torch import Tensor

#: attribute marking a ``parse_losses`` wrapped by :class:`NonFiniteLossHook`
_WRAPPED_FLAG = '_acr_non_finite_check'


def non_finite_losses(log_vars: Mapping[str, Tensor]) -> Dict[str, float]:
    """The loss entries of parsed log variables that are not finite.

    Only keys containing ``'loss'`` count (the ones mmengine sums into the
    training loss); the total ``'loss'`` itself is skipped.

    Args:
        log_vars (Mapping[str, Tensor]): ``log_vars`` of mmengine's
            ``BaseModel.parse_losses`` (one scalar per key).

    Returns:
        dict[str, float]: Offending keys and their values (nan or +-inf),
        in the order of ``log_vars``.
    """
    bad = {}
    for name, value in log_vars.items():
        if name == 'loss' or 'loss' not in name:
            continue
        value = float(torch.as_tensor(value).detach().float().mean())
        if not math.isfinite(value):
            bad[name] = value
    return bad


def describe_non_finite_loss(
    log_vars: Mapping[str, Tensor],
    iteration: int,
    max_iters: Optional[int] = None,
    rank: int = 0,
    world_size: int = 1,
    img_paths: Sequence[str] = (),
) -> str:
    """Error message naming the iteration and the non-finite loss keys.

    Args:
        log_vars (Mapping[str, Tensor]): Parsed losses of the iteration.
        iteration (int): 1-based iteration (as the logger prints it).
        max_iters (int, optional): Length of the run. Defaults to None.
        rank (int): Process rank. Defaults to 0.
        world_size (int): Number of processes. Defaults to 1.
        img_paths (Sequence[str]): Images of the batch, if known.
            Defaults to ().

    Returns:
        str: The message.
    """
    bad = non_finite_losses(log_vars)
    where = f'iteration {iteration}' + (f'/{max_iters}' if max_iters else '')
    if world_size > 1:
        where += f' on rank {rank}'
    if bad:
        culprit = ', '.join(f'{name}={value}' for name, value in bad.items())
    else:
        total = float(torch.as_tensor(log_vars['loss']).detach().float())
        culprit = (
            f'the total loss is {total} although every term is finite '
            '(their sum overflowed)'
        )
    finite = [
        f'{name}={float(torch.as_tensor(value).detach().float().mean()):.4g}'
        for name, value in log_vars.items()
        if name != 'loss' and 'loss' in name and name not in bad
    ]
    message = (
        f'Non-finite loss at {where}: {culprit}. Training stopped before this '
        'update was applied, so the weights are those of the previous '
        'iteration.'
    )
    if finite:
        message += f' Finite terms: {", ".join(finite)}.'
    if img_paths:
        shown = ', '.join(img_paths[:4])
        more = f' and {len(img_paths) - 4} more' if len(img_paths) > 4 else ''
        message += f' Batch images: {shown}{more}.'
    return message + (
        ' Check the learning rate, the loss weights and the batch; resume from '
        'the last checkpoint with --resume after fixing the cause.'
    )


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Raise ``FloatingPointError`` at the first non-finite training loss.

    mmengine's ``train_step`` parses the loss dict (``model.parse_losses``)
    and then calls ``optim_wrapper.update_params`` (backward + step), also
    under ``MMDistributedDataParallel``. This hook wraps the unwrapped
    model's ``parse_losses`` for the duration of training: when the summed
    loss is not finite it raises *before* the backward pass and the step, so
    no update is ever computed from a nan/inf loss. The message names the
    iteration (1-based, as the logger prints it), the offending loss keys
    (e.g. ``loss_acr_aff=nan``), the finite ones, the rank and the batch's
    image paths when the samples carry them.

    The check costs one host synchronisation per iteration (the finiteness
    of the total loss); the per-key analysis only runs on failure. With
    ``AmpOptimWrapper`` the loss scaler still handles overflowing *gradients*;
    a non-finite *loss* is an error there too. In a distributed run the
    failing rank raises and ``torchrun`` stops the others.

    Enabled by default in ``configs/_base_/default_runtime.py``
    (``default_hooks.non_finite_loss``).
    """

    priority = 'VERY_HIGH'

    def __init__(self) -> None:
        self._img_paths: Sequence[str] = ()

    @staticmethod
    def _model(runner) -> torch.nn.Module:
        model = runner.model
        return model.module if is_model_wrapper(model) else model

    def before_train(self, runner) -> None:
        """Wrap ``parse_losses`` of the (unwrapped) model."""
        model = self._model(runner)
        original = model.parse_losses
        if getattr(original, _WRAPPED_FLAG, False):
            original = original.__wrapped__
        model.parse_losses = self._checked(original, runner)

    def after_train(self, runner) -> None:
        """Restore the model's own ``parse_losses``."""
        model = self._model(runner)
        if getattr(model.__dict__.get('parse_losses'), _WRAPPED_FLAG, False):
            del model.parse_losses

    def before_train_iter(
        self, runner, batch_idx: int, data_batch: Optional[dict] = None
    ) -> None:
        """Remember the batch's image paths for the error message."""
        paths = []
        samples = (data_batch or {}).get('data_samples') or []
        for sample in samples:
            path = getattr(sample, 'metainfo', {}).get('img_path')
            if path:
                paths.append(str(path))
        self._img_paths = paths

    def _checked(self, parse_losses: Callable, runner) -> Callable:
        def parse_losses_checked(losses):
            loss, log_vars = parse_losses(losses)
            if not bool(torch.isfinite(loss).all()):
                rank, world_size = get_dist_info()
                raise FloatingPointError(
                    describe_non_finite_loss(
                        log_vars,
                        iteration=runner.iter + 1,
                        max_iters=runner.max_iters,
                        rank=rank,
                        world_size=world_size,
                        img_paths=self._img_paths,
                    )
                )
            return loss, log_vars

        parse_losses_checked.__wrapped__ = parse_losses
        setattr(parse_losses_checked, _WRAPPED_FLAG, True)
        return parse_losses_checked
