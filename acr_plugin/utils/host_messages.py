"""Import the host libraries without their known start-up messages.

Every command would otherwise begin with output that is not about the run:

* ``Could not import OneDL`` (twice, on stdout): onedl-mmsegmentation's
  ``mmseg.datasets`` and ``mmseg.datasets.transforms`` try the optional OneDL
  data package and report its absence with ``print_log(..., level=DEBUG)``,
  which, without a logger, is a plain ``print``.
* ``UserWarning: Fail to import ``MultiScaleDeformableAttention`` ... install
  ``mmcv`` rather than ``mmcv-lite```` (``mmcv.cnn.bricks.transformer``):
  the pure-Python mmcv has no compiled ops; no acr_plugin component uses
  this one.
* ``ImportWarning: ``MultiScaleDeformableAttention`` has been moved to
  ``mmcv.ops.multi_scale_deform_attn`` ...`` (same module, upstream mmcv 2.1
  with compiled ops): mmcv's own re-export; Python hides ImportWarning by
  default, ``-W default`` shows it.

:func:`import_host_modules` imports those modules with exactly these
messages dropped: any other line printed or warning raised meanwhile is
passed on, and no filter stays installed afterwards. ``import acr_plugin``
calls it first, so the tools (and any script that imports acr_plugin before
``mmseg.datasets``) start quietly; mmseg's own tools import ``mmseg.datasets``
first and still print them (harmless, see docs/troubleshooting.md).
"""

import contextlib
import importlib
import io
import sys
import warnings
from typing import Iterator, Sequence

from acr_plugin.utils.host_check import import_failure

#: modules whose import prints / warns (imported in this order)
HOST_MODULES = ('mmcv.cnn.bricks.transformer', 'mmseg.datasets')
#: the exact stdout line of onedl-mmsegmentation
ONEDL_LINE = 'Could not import OneDL'
#: start of mmcv-lite's warning (a ``warnings`` message regex)
MMCV_LITE_WARNING = (
    r'Fail to import ``MultiScaleDeformableAttention`` from '
    r'``mmcv\.ops\.multi_scale_deform_attn``'
)
#: the module that raises it (a ``warnings`` module regex)
MMCV_LITE_MODULE = r'mmcv\.cnn\.bricks\.transformer$'
#: start of upstream mmcv's ImportWarning (same module, compiled ops)
MMCV_MOVED_WARNING = r'``MultiScaleDeformableAttention`` has been moved to '


@contextlib.contextmanager
def without_stdout_lines(dropped: Sequence[str]) -> Iterator[None]:
    """Drop the stdout lines equal to one of ``dropped``; keep the others.

    The output of the block is held back and written when it ends (also
    when it raises), minus the dropped lines.

    Args:
        dropped (Sequence[str]): Whole lines (without the newline).
    """
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer):
            yield
    finally:
        kept = [
            line
            for line in buffer.getvalue().splitlines(keepends=True)
            if line.rstrip('\r\n') not in dropped
        ]
        if kept:
            sys.stdout.write(''.join(kept))
            sys.stdout.flush()


@contextlib.contextmanager
def without_warning(message: str, category: type, module: str) -> Iterator[None]:
    """Ignore one warning (``warnings.filterwarnings`` arguments) in a block.

    Unlike ``warnings.catch_warnings`` it removes only its own filter at the
    end, so filters that the block installs stay in place.
    """
    warnings.filterwarnings('ignore', message=message, category=category, module=module)
    entry = warnings.filters[0]
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            warnings.filters.remove(entry)
        mutated = getattr(warnings, '_filters_mutated', None)
        if mutated is not None:  # invalidate the per-module warning caches
            mutated()


def import_host_modules() -> None:
    """Import :data:`HOST_MODULES` without their known messages.

    A module imported before is not imported again (and printed then).

    Raises:
        ImportError: The host check's error (what to install) if one of
            them fails to import.
    """
    with (
        without_stdout_lines([ONEDL_LINE]),
        without_warning(MMCV_LITE_WARNING, UserWarning, MMCV_LITE_MODULE),
        without_warning(MMCV_MOVED_WARNING, ImportWarning, MMCV_LITE_MODULE),
    ):
        for name in HOST_MODULES:
            try:
                importlib.import_module(name)
            except ImportError as err:
                raise import_failure(name, err) from err
