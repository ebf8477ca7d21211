"""Load checkpoint files without unpickling arbitrary objects.

``torch.load(weights_only=False)`` runs whatever code a pickled checkpoint
names, so a downloaded checkpoint must be loaded with ``weights_only=True``
(torch's default since 2.6): tensors, plain containers, numbers, strings and
explicitly allow-listed types only. :func:`load_checkpoint_weights_only`
does that for local files and refuses, with a message naming the file and
the offending type, what it cannot load safely. Files from other back ends
(``http://``, ``s3://``, ``open-mmlab://`` ...) go through mmengine's
``CheckpointLoader``, which also tries ``weights_only=True`` first but falls
back to a full unpickle with a warning.
"""

import os.path as osp
from pickle import UnpicklingError
from typing import Callable, List, Optional, Union

import torch
from mmengine.runner import CheckpointLoader

from acr_plugin.utils.compat import mmengine_safe_globals, weights_only_load

#: suffixes loaded with the ``safetensors`` package (tensors only, no pickle)
SAFETENSORS_SUFFIXES = ('.safetensors',)


def safe_checkpoint_globals() -> List[Callable]:
    """Types a ``weights_only`` load accepts beyond torch's defaults.

    mmengine's list for its runner checkpoints (numpy arrays, dtypes and
    scalars, ``HistoryBuffer``) plus ``OneCycleParamScheduler``, whose state
    dict names its annealing function (checkpoints saved without
    ``WeightsOnlyCheckpointHook``). Loading these builds no object with side
    effects.

    Returns:
        list: Globals for ``torch.serialization.safe_globals`` (or, on torch
        without it, :func:`acr_plugin.utils.compat.weights_only_load`'s
        restricted unpickler).
    """
    from mmengine.optim.scheduler.param_scheduler import OneCycleParamScheduler

    return mmengine_safe_globals() + [OneCycleParamScheduler]


def load_checkpoint_weights_only(
    filename: str, map_location: Optional[Union[str, torch.device]] = 'cpu'
) -> dict:
    """Load a checkpoint safely (``weights_only=True`` where possible).

    * ``*.safetensors``: read with ``safetensors.torch.load_file``.
    * other local files: ``torch.load(weights_only=True)`` with
      :func:`safe_checkpoint_globals` allowed;
    * anything that is not a local file (URLs, ``s3://``, ``open-mmlab://``
      ...): mmengine's ``CheckpointLoader.load_checkpoint`` (tries
      ``weights_only=True``, falls back with a warning).

    Args:
        filename (str): Path (``~`` expanded) or URL.
        map_location (str | torch.device, optional): As in ``torch.load``.
            Defaults to 'cpu'.

    Returns:
        dict: The loaded checkpoint (a state dict or a wrapper dict).

    Raises:
        FileNotFoundError: If a path without a URL scheme does not exist.
        pickle.UnpicklingError: If the file holds objects that a
            ``weights_only`` load refuses; the message names the file.
    """
    path = osp.expanduser(filename)
    if not osp.isfile(path):
        if '://' in filename:
            return CheckpointLoader.load_checkpoint(filename, map_location=map_location)
        raise FileNotFoundError(f'checkpoint file {filename} does not exist')
    if path.endswith(SAFETENSORS_SUFFIXES):
        from safetensors.torch import load_file

        device = 'cpu' if map_location is None else str(map_location)
        return dict(load_file(path, device=device))
    try:
        return weights_only_load(path, safe_checkpoint_globals(), map_location)
    except UnpicklingError as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        reason = next((line for line in lines if 'Unsupported' in line), None)
        reason = reason or (lines[0] if lines else type(err).__name__)
        raise UnpicklingError(
            f'checkpoint {filename} holds objects that a weights_only load '
            f'refuses ({reason}); '
            'it was not loaded because unpickling them could run arbitrary '
            'code. If you trust the file, re-save its weights as a plain '
            'state dict (torch.save(torch.load(path, weights_only=False)'
            "['state_dict'], new_path)) and load that instead."
        ) from err
