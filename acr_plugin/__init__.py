"""acr_plugin: all-pairs consistency regularisation (ACR) for WSSS on mmseg 1.x.

Importing this package registers every component into mmseg's registries, so a
config only needs::

    custom_imports = dict(imports=['acr_plugin'], allow_failed_imports=False)
"""

from . import datasets, engine, evaluation, models  # noqa: F401 (registration)
from .version import __version__

# isort: split
from . import apis  # noqa: F401 (pseudo labels, dense CRF)

__all__ = ['__version__']
