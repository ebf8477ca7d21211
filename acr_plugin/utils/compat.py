"""Version shims for the host stacks acr_plugin supports (one place for them).

The pinned stack (torch 2.14, onedl-mmengine 0.10.12) has everything; the
classic research stack (torch 2.1, upstream mmengine 0.10.x) lacks:

* ``torch.serialization.safe_globals`` (torch >= 2.5): a ``weights_only``
  load there accepts torch's default types only (tensors, containers,
  numbers, strings), which covers plain state dicts (pretrained backbones);
  :func:`safe_globals` is then a no-op context.
* ``mmengine.runner.checkpoint.get_torch_safe_globals`` (onedl-mmengine and
  upstream mmengine after 0.10.7): :func:`mmengine_safe_globals` lists the same
  kinds of types itself (numpy arrays, dtypes and scalars, ``HistoryBuffer``).
"""

import contextlib
from typing import Callable, ContextManager, List, Sequence

import numpy as np
import torch


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


def safe_globals(allowed: Sequence[Callable]) -> ContextManager:
    """``torch.serialization.safe_globals(allowed)`` where torch has it
    (>= 2.5), else a context that changes nothing."""
    context = getattr(torch.serialization, 'safe_globals', None)
    if context is None:
        return contextlib.nullcontext()
    return context(list(allowed))
