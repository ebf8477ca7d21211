"""acr_plugin: all-pairs consistency regularisation (ACR) for WSSS on mmseg 1.x.

Importing this package registers every component into mmseg's registries, so a
config only needs::

    custom_imports = dict(imports=['acr_plugin'], allow_failed_imports=False)
"""

# the host libraries first: mmseg / mmcv / mmengine at supported versions (else
# one ImportError saying what to install), then imported without their start-up
# noise (OneDL, mmcv-lite)
from .utils.compat import register_config_packages
from .utils.host_check import check_host_libraries
from .utils.host_messages import import_host_modules

check_host_libraries()
import_host_modules()
register_config_packages()  # `mmseg::` config bases on the onedl forks

# isort: split
from . import (  # noqa: E402, F401 (registration)  # noqa: E402, F401 (registration: the method, its hosts)
    acr,
    datasets,
    engine,
    evaluation,
    hosts,
    models,
)
from .version import __version__  # noqa: E402

# isort: split
from . import apis  # noqa: E402, F401 (pseudo labels, dense CRF)

__all__ = ['__version__']
