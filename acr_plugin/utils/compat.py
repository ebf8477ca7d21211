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


def checkpoint_getattr(obj: Any, name: str) -> Any:
    """The ``getattr`` that mmengine's runner checkpoints need, and no more.

    Pickles reach some functions through ``getattr``: a runner checkpoint
    stores each ``HistoryBuffer``'s statistics methods as
    ``getattr(HistoryBuffer, 'min')`` (``max``, ``current``, ``mean``, and any
    registered with ``HistoryBuffer.register_statistics``), and protocol-2
    pickles of older checkpoints name ``OneCycleParamScheduler``'s annealing
    functions as ``getattr(OneCycleParamScheduler, '_annealing_cos')``.
    Allowing the builtin ``getattr`` in a weights-only load would let a crafted
    file reach any attribute (``getattr(getattr, '__self__')`` is ``builtins``,
    and torch's allowed ``_rebuild_from_type_v2`` calls what it is given), so
    the allow-lists name this function as ``builtins.getattr`` instead.

    Raises:
        pickle.UnpicklingError: For any other object or name.
    """
    from mmengine.logging.history_buffer import HistoryBuffer
    from mmengine.optim.scheduler.param_scheduler import OneCycleParamScheduler

    allowed = {
        HistoryBuffer: {'min', 'max', 'current', 'mean'}
        | set(HistoryBuffer._statistics_methods),
        OneCycleParamScheduler: {'_annealing_cos', '_annealing_linear'},
    }
    if isinstance(obj, type) and name in allowed.get(obj, ()):
        return getattr(obj, name)
    raise pickle.UnpicklingError(
        f'Weights only load failed: getattr({obj!r}, {name!r}) is not allowed '
        '(only HistoryBuffer statistics and OneCycleParamScheduler annealing '
        'functions are)'
    )


#: how pickles name the builtin getattr (protocol 2 writes __builtin__)
GETATTR_NAME = 'builtins.getattr'


def mmengine_safe_globals() -> List[Any]:
    """Types of mmengine's runner checkpoints that a ``weights_only`` load
    must allow: mmengine's own list where it has one, else numpy arrays,
    dtypes and scalars and ``HistoryBuffer`` (the message hub's buffers); in
    either, ``getattr`` is :func:`checkpoint_getattr` under the name
    ``builtins.getattr`` (an ``(object, name)`` pair, as
    ``torch.serialization.safe_globals`` takes it)."""
    try:
        from mmengine.runner.checkpoint import get_torch_safe_globals
    except ImportError:
        from mmengine.logging.history_buffer import HistoryBuffer

        core = np._core if hasattr(np, '_core') else np.core
        dtypes = [type(np.dtype(t)) for t in (np.uint32, np.float64, np.int64)]
        listed = [
            slice,
            getattr,
            core.multiarray._reconstruct,
            core.multiarray.scalar,
            np.ndarray,
            np.dtype,
            *dtypes,
            HistoryBuffer,
        ]
    else:
        listed = list(get_torch_safe_globals())
    return [
        (checkpoint_getattr, GETATTR_NAME) if obj is getattr else obj for obj in listed
    ]


def _global_name(obj: Any) -> str:
    if isinstance(obj, tuple):  # (object, 'module.name')
        return obj[1]
    return f'{obj.__module__}.{obj.__qualname__}'


def _global_object(obj: Any) -> Any:
    return obj[0] if isinstance(obj, tuple) else obj


def _restricted_pickle_module(allowed: Sequence[Any]) -> types.ModuleType:
    """A ``pickle_module`` for ``torch.load`` on torch < 2.5 that, like
    torch's own weights-only unpickler, resolves only allowed globals (torch's
    weights-only ones plus ``allowed``, by ``module.qualname``), calls
    (REDUCE) only allowed functions and classes, creates (NEWOBJ) and sets the
    state of (BUILD) only instances of allowed classes, and refuses the
    opcodes that bypass these (INST, OBJ, the extension registry). Any
    refusal is an ``UnpicklingError`` worded as torch's."""
    from torch import _weights_only_unpickler

    table = dict(_weights_only_unpickler._get_allowed_globals())
    # bytes in protocol-2 pickles (numpy 1.x arrays): str -> bytes, as torch
    # >= 2.4 allows too
    table['_codecs.encode'] = _codecs.encode
    table.update((_global_name(obj), _global_object(obj)) for obj in allowed)
    callables = {id(obj) for obj in table.values()}
    classes = {id(obj) for obj in table.values() if isinstance(obj, type)}

    def refuse(what: str) -> pickle.UnpicklingError:
        return pickle.UnpicklingError(f'Weights only load failed: {what}')

    base = pickle._Unpickler  # the pure-Python unpickler: its opcodes can be checked

    class RestrictedUnpickler(base):
        dispatch = dict(base.dispatch)

        def find_class(self, module: str, name: str) -> Any:
            # Python 2 names of protocol-2 pickles (torch.save): __builtin__ ...
            module, name = _compat_pickle.NAME_MAPPING.get(
                (module, name), (module, name)
            )
            module = _compat_pickle.IMPORT_MAPPING.get(module, module)
            key = f'{module}.{name}'
            if key in table:
                return table[key]
            # numpy 2 pickles name numpy._core, numpy 1 numpy.core: either reads
            for old, new in (
                ('numpy._core', 'numpy.core'),
                ('numpy.core', 'numpy._core'),
            ):
                if module.startswith(old + '.'):
                    renamed = f'{new}{module[len(old) :]}.{name}'
                    if renamed in table:
                        return table[renamed]
            # an allowed object pickled under another path of an imported
            # module (numpy.core vs numpy._core): compared by identity, read
            # from the module's namespace (no import, no module __getattr__)
            found = (
                vars(sys.modules[module]).get(name) if module in sys.modules else None
            )
            if found is not None and id(found) in callables:
                return found
            raise refuse(f'Unsupported global: GLOBAL {key} was not an allowed global')

        def load_reduce(self) -> None:
            func = self.stack[-2]
            if id(func) not in callables:
                raise refuse(f'Unsupported call of {func!r} (REDUCE)')
            base.load_reduce(self)

        def load_newobj(self) -> None:
            cls = self.stack[-2]
            if id(cls) not in classes:
                raise refuse(f'Unsupported class {cls!r} (NEWOBJ)')
            base.load_newobj(self)

        def load_newobj_ex(self) -> None:
            cls = self.stack[-3]
            if id(cls) not in classes:
                raise refuse(f'Unsupported class {cls!r} (NEWOBJ_EX)')
            base.load_newobj_ex(self)

        def load_build(self) -> None:
            inst = self.stack[-2]
            if isinstance(inst, type) or id(type(inst)) not in classes:
                raise refuse(f'Unsupported state of {type(inst)!r} (BUILD)')
            base.load_build(self)

        def load_refused(self) -> None:
            raise refuse('unsupported pickle opcode (INST, OBJ or EXT)')

        dispatch[pickle.REDUCE[0]] = load_reduce
        dispatch[pickle.NEWOBJ[0]] = load_newobj
        dispatch[pickle.NEWOBJ_EX[0]] = load_newobj_ex
        dispatch[pickle.BUILD[0]] = load_build
        for opcode in (pickle.INST, pickle.OBJ, pickle.EXT1, pickle.EXT2, pickle.EXT4):
            dispatch[opcode[0]] = load_refused

    module = types.ModuleType('acr_plugin_restricted_pickle')
    module.Unpickler = RestrictedUnpickler
    module.load = lambda file, **kwargs: RestrictedUnpickler(file, **kwargs).load()
    return module


def weights_only_load(
    f: Any, allowed: Sequence[Any] = (), map_location: Optional[Any] = None
) -> Any:
    """``torch.load(f, weights_only=True)`` that also accepts ``allowed``
    (objects, or ``(object, 'module.name')`` pairs).

    torch >= 2.5: inside ``torch.serialization.safe_globals(allowed)``.
    Older torch (no allow-list API): the same file through a restricted
    unpickler (:func:`_restricted_pickle_module`) with torch's rules.

    Raises:
        pickle.UnpicklingError: For anything a weights-only load refuses, and
            for a file the restricted unpickler cannot read.
    """
    if hasattr(torch.serialization, 'safe_globals'):
        with torch.serialization.safe_globals(list(allowed)):
            return torch.load(f, map_location=map_location, weights_only=True)
    try:
        return torch.load(
            f,
            map_location=map_location,
            weights_only=False,
            pickle_module=_restricted_pickle_module(allowed),
        )
    except (pickle.UnpicklingError, OSError):
        raise
    except Exception as err:  # torch's own path reports these as UnpicklingError
        raise pickle.UnpicklingError(
            f'Weights only load failed: {type(err).__name__}: {err}'
        ) from err


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
