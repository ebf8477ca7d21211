"""Keep runner checkpoints loadable with ``torch.load(weights_only=True)``."""

from typing import Any, List, Tuple

from mmengine.hooks import Hook
from mmseg.registry import HOOKS


def without_callables(state: Any, path: str = '') -> Tuple[Any, List[str]]:
    """Copy of nested dicts/lists without the dict entries that are callable.

    Functions and classes stored as dict values are left out; containers are
    copied and other leaves shared, so ``state`` itself is not modified (a
    scheduler's ``state_dict`` shares nested objects with the scheduler).

    Args:
        state (Any): A (nested) state: dicts, lists and tuples are searched.
        path (str): Name of ``state`` for the returned paths. Defaults to ''.

    Returns:
        tuple: The cleaned state and the dotted paths of the removed entries.
    """
    removed: List[str] = []
    if isinstance(state, dict):
        out = {}
        for key, value in state.items():
            name = f'{path}.{key}' if path else str(key)
            if callable(value):
                removed.append(name)
                continue
            out[key], sub = without_callables(value, name)
            removed += sub
        return out, removed
    if isinstance(state, (list, tuple)):
        items = []
        for index, value in enumerate(state):
            item, sub = without_callables(
                value, f'{path}.{index}' if path else str(index)
            )
            items.append(item)
            removed += sub
        return (items if isinstance(state, list) else tuple(items)), removed
    return state, removed


@HOOKS.register_module()
class WeightsOnlyCheckpointHook(Hook):
    """Strip function references from the saved scheduler states.

    ``torch.load`` defaults to ``weights_only=True`` since torch 2.6: only
    tensors, containers and allow-listed types are unpickled, never arbitrary
    code. mmengine's loader allow-lists what its runner checkpoints hold
    (numpy arrays, ``HistoryBuffer``) but the state dict of
    ``OneCycleLR`` (``OneCycleParamScheduler``) stores its annealing
    *function*; such a checkpoint fails the safe load and mmengine falls back
    to ``weights_only=False`` with a warning. This hook removes callables
    from ``checkpoint['param_schedulers']`` before saving: schedulers rebuild
    them from the config on resume (``load_state_dict`` only updates the
    saved attributes), so resuming is unchanged and every checkpoint loads
    with ``weights_only=True`` plus mmengine's safe globals.

    Enabled by default in ``configs/_base_/default_runtime.py``
    (``default_hooks.weights_only_checkpoint``).
    """

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Drop callables from the scheduler states of ``checkpoint``."""
        if 'param_schedulers' in checkpoint:
            checkpoint['param_schedulers'], _ = without_callables(
                checkpoint['param_schedulers'], 'param_schedulers'
            )
