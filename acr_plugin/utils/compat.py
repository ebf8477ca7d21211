"""Version shims for the host stacks acr_plugin supports (one place for them).

The pinned stack (torch 2.14, onedl-mmengine 0.10.12) has everything; the
classic research stack (torch 2.1, upstream mmengine 0.10.x) lacks:

* ``torch.serialization.safe_globals`` (torch >= 2.5), the allow-list of a
  ``weights_only`` load: :func:`weights_only_load` loads through a restricted
  unpickler there instead, which resolves only torch's own weights-only
  globals and the allowed ones (and so calls nothing else).
* ``nn.Module.register_load_state_dict_pre_hook`` (torch >= 2.3; before, the
  private ``_register_load_state_dict_pre_hook(hook, with_module=True)`` calls
  the hook with the same arguments): :func:`register_load_state_dict_pre_hook`.
* ``mmengine.runner.checkpoint.get_torch_safe_globals`` (onedl-mmengine and
  upstream mmengine after 0.10.7): :func:`mmengine_safe_globals` lists the same
  kinds of types itself (numpy arrays, dtypes and scalars, ``HistoryBuffer``).

and the onedl forks' mmengine keeps upstream's package names for the
``mmseg::`` / ``mmcv::`` / ... prefixes of config bases, so a config with
``_base_ = ['mmseg::_base_/default_runtime.py']`` fails there with
"mmsegmentation is not installed": :func:`register_config_packages` points each
prefix at the fork's distribution where only the fork is installed.
"""

import _codecs
import _compat_pickle
import importlib.metadata
import pickle
import sys
import types
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import nn


def mmengine_safe_globals() -> List[Callable]:
    """Types of mmengine's runner checkpoints that a ``weights_only`` load
    must allow: mmengine's own list where it has one, else numpy arrays,
    dtypes and scalars and ``HistoryBuffer`` (the message hub's buffers)."""
    try:
        from mmengine.runner.checkpoint import get_torch_safe_globals
    except ImportError:
        from mmengine.logging.history_buffer import HistoryBuffer

        core = np._core if hasattr(np, '_core') else np.core
        dtypes = [type(np.dtype(t)) for t in (np.uint32, np.float64, np.int64)]
        return [
            slice,
            getattr,
            core.multiarray._reconstruct,
            core.multiarray.scalar,
            np.ndarray,
            np.dtype,
            *dtypes,
            HistoryBuffer,
        ]
    return list(get_torch_safe_globals())


def _global_name(obj: Callable) -> str:
    return f'{obj.__module__}.{obj.__qualname__}'


def _restricted_pickle_module(allowed: Sequence[Callable]) -> types.ModuleType:
    """A ``pickle_module`` for ``torch.load`` whose unpickler resolves only
    torch's weights-only globals plus ``allowed`` (by ``module.qualname``);
    any other global is an ``UnpicklingError`` worded as torch's."""
    from torch import _weights_only_unpickler

    table = dict(_weights_only_unpickler._get_allowed_globals())
    # bytes in protocol-2 pickles (numpy 1.x arrays): str -> bytes, as torch
    # >= 2.4 allows too
    table['_codecs.encode'] = _codecs.encode
    table.update((_global_name(obj), obj) for obj in allowed)
    allowed_ids = {id(obj) for obj in table.values()}

    class RestrictedUnpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            # Python 2 names of protocol-2 pickles (torch.save): __builtin__ ...
            module, name = _compat_pickle.NAME_MAPPING.get(
                (module, name), (module, name)
            )
            module = _compat_pickle.IMPORT_MAPPING.get(module, module)
            key = f'{module}.{name}'
            if key in table:
                return table[key]
            # an allowed object pickled under another path of an imported
            # module (numpy.core vs numpy._core): compared by identity; nothing
            # is imported
            found = getattr(sys.modules.get(module), name, None)
            if found is not None and id(found) in allowed_ids:
                return found
            raise pickle.UnpicklingError(
                f'Weights only load failed: Unsupported global: GLOBAL {key} '
                'was not an allowed global'
            )

    module = types.ModuleType('acr_plugin_restricted_pickle')
    module.Unpickler = RestrictedUnpickler
    module.load = lambda file, **kwargs: RestrictedUnpickler(file, **kwargs).load()
    return module


def weights_only_load(
    f: Any, allowed: Sequence[Callable] = (), map_location: Optional[Any] = None
) -> Any:
    """``torch.load(f, weights_only=True)`` that also accepts ``allowed``.

    torch >= 2.5: inside ``torch.serialization.safe_globals(allowed)``.
    Older torch (no allow-list API): the same file through a restricted
    unpickler (:func:`_restricted_pickle_module`), which, like torch's, builds
    only allowed types and calls only allowed functions.

    Raises:
        pickle.UnpicklingError: For any other global ("Unsupported global").
    """
    if hasattr(torch.serialization, 'safe_globals'):
        with torch.serialization.safe_globals(list(allowed)):
            return torch.load(f, map_location=map_location, weights_only=True)
    return torch.load(
        f,
        map_location=map_location,
        weights_only=False,
        pickle_module=_restricted_pickle_module(allowed),
    )


def register_load_state_dict_pre_hook(module: nn.Module, hook: Callable):
    """``module.register_load_state_dict_pre_hook(hook)`` on every torch: the
    hook is called as ``hook(module, state_dict, prefix, local_metadata,
    strict, missing_keys, unexpected_keys, error_msgs)``; returns the handle."""
    register = getattr(module, 'register_load_state_dict_pre_hook', None)
    if register is not None:
        return register(hook)
    return module._register_load_state_dict_pre_hook(hook, with_module=True)


def _distribution_installed(name: str) -> bool:
    try:
        importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def register_config_packages(prefix: str = 'onedl-') -> Dict[str, str]:
    """Let the ``<scope>::`` prefixes of config bases (``mmseg::`` ...) find
    the onedl forks' distributions (``onedl-mmsegmentation`` ...).

    mmengine resolves ``mmseg::path`` through its module -> distribution table
    (``mmengine.config.utils.MODULE2PACKAGE``: ``mmseg`` -> ``mmsegmentation``)
    and then the distribution's files. Where the upstream distribution is
    missing but ``prefix + name`` is installed, the table entry is pointed at
    the fork (the table is edited in place; upstream installs are left as
    they are). It acts only when acr_plugin is imported before the config is
    parsed (acr_plugin's ``tools/``; ``custom_imports`` come too late, after
    the bases are read).

    Returns:
        dict: the entries changed, module -> distribution.
    """
    try:
        from mmengine.config.utils import MODULE2PACKAGE
    except ImportError:  # an mmengine without external config bases
        return {}
    changed = {}
    for module, package in list(MODULE2PACKAGE.items()):
        fork = prefix + package
        if _distribution_installed(package) or not _distribution_installed(fork):
            continue
        MODULE2PACKAGE[module] = fork
        changed[module] = fork
    return changed
