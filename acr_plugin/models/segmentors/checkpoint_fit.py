"""Checkpoints fit the segmentor they are loaded into, or are refused.

mmengine's ``Runner`` loads ``load_from`` and ``--resume`` checkpoints with
``strict=False``: keys that do not fit are only logged and the run goes on
from the initialisation (and, on resume, later fails on the optimiser state).
:func:`install_checkpoint_fit` gives a segmentor two ``load_state_dict``
hooks, so that every loading route (mmengine's ``load_checkpoint``,
``Runner.load_checkpoint`` / ``Runner.resume``, ``init_cfg`` ``Pretrained``
of the whole model, torch's ``load_state_dict``) behaves the same:

* a pre-hook remaps keys (:func:`wrapper_key_map`): a checkpoint key that the
  model lacks is renamed when adding or removing ``ACRSegmentor``'s prefix
  ``model.`` gives a key the model has. A baseline checkpoint thus loads into
  the model its ACR config wraps, and an ACR checkpoint into its baseline
  config (the wrapped model's weights);
* a post-hook checks the fit: missing weights (but batch norm's
  ``num_batches_tracked``), unexpected keys and shape mismatches raise
  :class:`CheckpointMismatchError`, which names the model, the checkpoint file
  (when the loader has one) and examples of the keys.

Only a load into the segmentor itself (key prefix ``''``) is remapped and
checked; a segmentor inside another module (the model an ``ACRSegmentor``
wraps, an EMA copy, DDP's ``module``) is left to the module loaded. Set
``strict_checkpoint_fit = False`` on a model to log the mismatch as a warning
instead (e.g. to fine-tune from a checkpoint with another number of classes).
"""

import inspect
import logging
from typing import Collection, Dict, Iterable, List, NamedTuple, Optional, Sequence

import torch.nn as nn
from mmengine.logging import print_log

from acr_plugin.utils.compat import register_load_state_dict_pre_hook

#: key prefix of the model wrapped by ``ACRSegmentor`` (its attribute ``model``)
WRAPPER_PREFIX = 'model.'
#: keys named per kind of mismatch in the error message
NUM_EXAMPLES = 5
#: missing buffers that a checkpoint may lack (mmengine ignores them too)
OPTIONAL_KEYS = ('num_batches_tracked',)
#: functions whose local ``filename`` names the checkpoint being loaded
LOADER_FUNCTIONS = ('load_checkpoint', '_load_checkpoint', 'resume')
_RECORD = '_checkpoint_fit_load'


class CheckpointMismatchError(RuntimeError):
    """A checkpoint whose weights do not fit the model it is loaded into."""


class _LoadRecord(NamedTuple):
    """What the pre-hook of a top-level load hands to the post-hook."""

    missing_keys: List[str]
    error_msgs: List[str]
    checkpoint_keys: List[str]
    source: Optional[str]


def wrapper_key_map(
    checkpoint_keys: Iterable[str],
    model_keys: Collection[str],
    prefix: str = WRAPPER_PREFIX,
) -> Dict[str, str]:
    """Renames that make a wrapper's or a wrapped model's checkpoint fit.

    A checkpoint key that is not a model key is renamed to ``prefix + key``
    (a baseline checkpoint loaded into its ``ACRSegmentor``) or to ``key``
    without ``prefix`` (an ``ACRSegmentor`` checkpoint loaded into its
    baseline) when that is a model key that no other checkpoint key takes.

    Args:
        checkpoint_keys (Iterable[str]): Keys of the checkpoint's state dict.
        model_keys (Collection[str]): Keys of the model's state dict.
        prefix (str): Key prefix of the wrapped model. Defaults to
            ``'model.'``.

    Returns:
        dict: ``{checkpoint key: new key}`` of the keys to rename (empty if
        the checkpoint fits as it is or cannot be made to fit).
    """
    model_keys = set(model_keys)
    checkpoint_keys = list(checkpoint_keys)
    taken = set(checkpoint_keys) & model_keys
    renames = {}
    for key in checkpoint_keys:
        if key in model_keys:
            continue
        if prefix + key in model_keys:
            new = prefix + key
        elif key.startswith(prefix) and key[len(prefix) :] in model_keys:
            new = key[len(prefix) :]
        else:
            continue
        if new not in taken:
            renames[key] = new
            taken.add(new)
    return renames


def _examples(keys: Sequence[str]) -> str:
    shown = ', '.join(keys[:NUM_EXAMPLES])
    more = len(keys) - NUM_EXAMPLES
    return shown + (f', ... ({more} more)' if more > 0 else '')


def _top_level(keys: Iterable[str]) -> str:
    """Top-level module names (inside the wrapped model for ``model.*``)."""
    names = []
    for key in keys:
        depth = 2 if key.startswith(WRAPPER_PREFIX) else 1
        name = '.'.join(key.split('.')[:depth])
        if name not in names:
            names.append(name)
    return ', '.join(names) or '(none)'


def describe_mismatch(
    model_name: str,
    source: Optional[str],
    missing_keys: Sequence[str],
    unexpected_keys: Sequence[str],
    error_msgs: Sequence[str],
    checkpoint_keys: Sequence[str],
    model_keys: Sequence[str],
) -> str:
    """The message of :class:`CheckpointMismatchError`.

    Args:
        model_name (str): Class name of the model loaded into.
        source (str, optional): Checkpoint file, if known.
        missing_keys (Sequence[str]): Model keys the checkpoint lacks.
        unexpected_keys (Sequence[str]): Checkpoint keys the model lacks.
        error_msgs (Sequence[str]): Other load errors (shape mismatches).
        checkpoint_keys (Sequence[str]): Keys of the checkpoint (after
            :func:`wrapper_key_map`).
        model_keys (Sequence[str]): Keys of the model.

    Returns:
        str: Names the checkpoint and the model and gives examples.
    """
    checkpoint = f'checkpoint "{source}"' if source else 'state dict'
    lines = [f'The {checkpoint} does not fit the model {model_name}:']
    if missing_keys:
        lines.append(
            f"- {len(missing_keys)} of the model's {len(model_keys)} weights are "
            f'not in the checkpoint, e.g. {_examples(missing_keys)}'
        )
    if unexpected_keys:
        lines.append(
            f"- {len(unexpected_keys)} of the checkpoint's {len(checkpoint_keys)} "
            f'keys are not in the model, e.g. {_examples(unexpected_keys)}'
        )
    for msg in list(error_msgs)[:NUM_EXAMPLES]:
        lines.append(f'- {msg.strip()}')
    lines += [
        f'Top-level modules of the checkpoint: {_top_level(checkpoint_keys)}; '
        f'of the model: {_top_level(model_keys)}.',
        'A checkpoint of the same model config, or of its ACR config or baseline '
        '(the ACRSegmentor prefix "model." is added or removed), fits. Refusing '
        'to go on with weights left at their initialisation: check load_from, '
        'the checkpoint given, or the work dir that --resume resumes from '
        '(its last_checkpoint file).',
    ]
    return '\n'.join(lines)


def _loading_file() -> Optional[str]:
    """The checkpoint file being loaded, from the loader's frame, if any.

    The hooks only see the state dict; mmengine's loaders
    (``load_checkpoint``, ``Runner.load_checkpoint`` / ``resume``) hold the
    file name in their local ``filename``. Only used for the error message.
    """
    frame = inspect.currentframe()
    try:
        while frame is not None:
            if frame.f_code.co_name in LOADER_FUNCTIONS:
                filename = frame.f_locals.get('filename')
                if isinstance(filename, str):
                    return filename
            frame = frame.f_back
        return None
    finally:
        del frame


def _remap_keys_hook(
    module: nn.Module,
    state_dict: dict,
    prefix: str,
    local_metadata: dict,
    strict: bool,
    missing_keys: List[str],
    unexpected_keys: List[str],
    error_msgs: List[str],
) -> None:
    """Load pre-hook: remap wrapper keys and record the load for the check."""
    if prefix:  # nested in the module loaded: its load is checked there
        return
    model_keys = list(module.state_dict(keep_vars=True))
    renames = wrapper_key_map(list(state_dict), model_keys)
    for old, new in renames.items():
        state_dict[new] = state_dict.pop(old)
    metadata = getattr(state_dict, '_metadata', None)
    if renames and metadata:  # per-module versions follow their modules
        module_names = [name for name, _ in module.named_modules()]
        for old, new in wrapper_key_map(list(metadata), module_names).items():
            metadata[new] = metadata.pop(old)
    if renames:
        old, new = next(iter(renames.items()))
        if new.startswith(WRAPPER_PREFIX) and not old.startswith(WRAPPER_PREFIX):
            what = 'of the model it wraps: its weights load into'
        else:
            what = 'of an ACRSegmentor: the weights of its wrapped model load from'
        print_log(
            f'{type(module).__name__}: the checkpoint is {what} '
            f'"{WRAPPER_PREFIX}" ({len(renames)} keys renamed, e.g. {old} -> {new})',
            logger='current',
            level=logging.INFO,
        )
    module.__dict__[_RECORD] = _LoadRecord(
        missing_keys, error_msgs, list(state_dict), _loading_file()
    )


def _check_fit_hook(module: nn.Module, incompatible_keys) -> None:
    """Load post-hook: refuse a checkpoint that does not fit (top level)."""
    record = module.__dict__.pop(_RECORD, None)
    if record is None or record.missing_keys is not incompatible_keys.missing_keys:
        return  # a nested load, or one the pre-hook did not see
    missing = [
        key
        for key in incompatible_keys.missing_keys
        if key.rsplit('.', 1)[-1] not in OPTIONAL_KEYS
    ]
    unexpected = list(incompatible_keys.unexpected_keys)
    if not (missing or unexpected or record.error_msgs):
        return
    message = describe_mismatch(
        type(module).__name__,
        record.source,
        missing,
        unexpected,
        record.error_msgs,
        record.checkpoint_keys,
        list(module.state_dict(keep_vars=True)),
    )
    if getattr(module, 'strict_checkpoint_fit', True):
        raise CheckpointMismatchError(message)
    print_log(message, logger='current', level=logging.WARNING)


def install_checkpoint_fit(module: nn.Module) -> None:
    """Remap wrapper keys and refuse misfits on loads into ``module``.

    Call once in the segmentor's ``__init__`` (after ``nn.Module``'s). Works
    with every route that ends in ``_load_from_state_dict`` (mmengine's
    loaders, torch's ``load_state_dict``).

    Args:
        module (nn.Module): The segmentor.
    """
    register_load_state_dict_pre_hook(module, _remap_keys_hook)
    module.register_load_state_dict_post_hook(_check_fit_hook)
