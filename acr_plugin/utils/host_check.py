"""Check the OpenMMLab host libraries before acr_plugin imports them.

acr_plugin installs into the environment an mmseg user already has, so its
``install_requires`` names no distribution of mmseg / mmcv / mmengine: upstream
OpenMMLab (``mmsegmentation``, ``mmcv``, ``mmengine``) and the onedl forks
(``onedl-mmsegmentation``, ...) have different distribution names but the same
import names, and pip would lay one over the other. ``import acr_plugin``
calls :func:`check_host_libraries` first instead: a missing library, one of an
unsupported version, or a set that fails to import together (upstream
mmsegmentation 1.2.x refuses mmcv >= 2.2.0) raises ONE :class:`ImportError`
that lists every problem and says what to install for either stack.

Versions come from the installed distribution's metadata (no import), under
the known upstream and onedl names; a library found under another name (a
source checkout, another fork) is imported and its ``__version__`` read.
``ACR_PLUGIN_SKIP_HOST_CHECK=1`` skips the version ranges (a fork with its own
numbering); the import of the three packages is still checked.
"""

import importlib
import importlib.metadata
import importlib.util
import os
import warnings
from typing import List, NamedTuple, Optional, Tuple

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

#: environment variable that skips the version ranges
SKIP_ENV = 'ACR_PLUGIN_SKIP_HOST_CHECK'


class HostLibrary(NamedTuple):
    """A host library: import name, supported versions, distribution names."""

    module: str
    supported: str
    upstream: Tuple[str, ...]
    onedl: Tuple[str, ...]
    other: Tuple[str, ...] = ()  # looked up only to name what is found

    @property
    def distributions(self) -> Tuple[str, ...]:
        return self.upstream + self.onedl + self.other

    def wanted(self) -> str:
        return (
            f'{self.module} {self.supported} (upstream: {" / ".join(self.upstream)}; '
            f'onedl: {" / ".join(self.onedl)})'
        )


#: in import order (mmcv imports mmengine, mmseg imports both)
HOST_LIBRARIES = (
    HostLibrary(
        'mmengine', '>=0.10.0', ('mmengine', 'mmengine-lite'), ('onedl-mmengine',)
    ),
    HostLibrary(
        'mmcv', '>=2.0.0rc4', ('mmcv', 'mmcv-lite'), ('onedl-mmcv',), ('mmcv-full',)
    ),
    HostLibrary('mmseg', '>=1.0.0,<2', ('mmsegmentation',), ('onedl-mmsegmentation',)),
)

#: what to install, for either stack (the end of the error message)
INSTALL_HINT = """\
Install ONE of the two stacks (same import names: never both):
  * upstream OpenMMLab, beside your own torch (>= 2.1):
      pip install "mmengine>=0.10" "mmsegmentation>=1.2.2" "mmcv>=2.1.0,<2.2.0"
    mmcv on PyPI is a source package that compiles its ops (slow); a prebuilt one
    for your torch/CUDA: pip install -U openmim && mim install "mmcv>=2.1.0,<2.2.0"
    (mmsegmentation 1.2.x accepts mmcv < 2.2.0 only)
  * the onedl forks (the pinned stack that reproduces this repository's numbers;
    it pins torch 2.14.1 too):
      pip install -r requirements/runtime.txt    (in a checkout of acr_plugin)
    or, beside your own torch (onedl-mmsegmentation needs numpy 2):
      pip install onedl-mmengine onedl-mmcv onedl-mmsegmentation
See docs/installation.md."""


def _supported(version: str, spec: str) -> bool:
    try:
        return SpecifierSet(spec).contains(Version(version), prereleases=True)
    except InvalidVersion:
        return False


def _installed(lib: HostLibrary) -> Tuple[Optional[str], str]:
    """``(version, where it was read)``; ``(None, '')`` when not installed.

    Raises:
        Exception: What importing the library raises, where it is found under
            no known distribution name (or under several) and so is imported.
    """
    found = []
    for name in lib.distributions:
        try:
            found.append((name, importlib.metadata.version(name)))
        except importlib.metadata.PackageNotFoundError:
            continue
    if len(found) == 1:
        return found[0][1], found[0][0]
    if len(found) > 1:
        names = ', '.join(f'{name} {version}' for name, version in found)
        warnings.warn(
            f'acr_plugin: {names} are all installed and write the same {lib.module}/ '
            f'package; uninstall them all and install one (docs/installation.md)',
            stacklevel=2,
        )
    elif importlib.util.find_spec(lib.module) is None:
        return None, ''
    module = importlib.import_module(lib.module)
    return str(getattr(module, '__version__', 'unknown')), f'{lib.module}.__version__'


def host_problems() -> List[str]:
    """One line for each missing or unsupported host library (none: [])."""
    problems = []
    skip_versions = os.environ.get(SKIP_ENV, '') not in ('', '0')
    for lib in HOST_LIBRARIES:
        try:
            version, source = _installed(lib)
        except Exception as err:  # any import failure is reported
            problems.append(f'{lib.module}: found, but its import fails: {err!r}')
            continue
        if version is None:
            problems.append(
                f'{lib.module}: not installed; acr_plugin needs {lib.wanted()}'
            )
        elif not skip_versions and not _supported(version, lib.supported):
            problems.append(
                f'{lib.module}: version {version} ({source}) is not supported; '
                f'acr_plugin needs {lib.wanted()}'
            )
    return problems


def check_host_libraries() -> None:
    """Raise one ImportError unless mmengine, mmcv and mmseg are usable.

    The versions are checked first (without importing where the metadata is
    found), then the three packages are imported in order, so that a failing
    import (e.g. mmsegmentation 1.2.x's ``AssertionError`` about mmcv >= 2.2.0)
    ends in the same message.

    Raises:
        ImportError: Every problem found, and the install commands.
    """
    problems = host_problems()
    cause = None
    if not problems:
        for lib in HOST_LIBRARIES:
            try:
                importlib.import_module(lib.module)
            except (ImportError, AssertionError) as err:
                problems.append(f'{lib.module}: installed, but its import fails: {err}')
                cause = err
                break
    if problems:
        raise host_error(problems) from cause


def host_error(problems: List[str]) -> ImportError:
    """The one error of the check: every problem, then what to install."""
    lines = '\n'.join(f'  - {problem}' for problem in problems)
    return ImportError(
        'acr_plugin needs mmseg 1.x with mmcv 2.x and mmengine, which it does '
        f'not install itself:\n{lines}\n{INSTALL_HINT}'
    )


def import_failure(module: str, err: BaseException) -> ImportError:
    """The check's error for a host submodule whose import fails (e.g.
    ``mmseg.datasets``, which acr_plugin imports next); raise it ``from err``.

    Upstream mmsegmentation imports mmcv's compiled ops (``mmcv.ops``) at
    import time, so beside ``mmcv-lite`` (no ops) it fails on ``mmcv._ext``:
    the problem line says so."""
    problem = f'{module}: installed, but its import fails: {err}'
    if 'mmcv._ext' in str(err):
        problem += (
            '\n    (mmcv without its compiled ops, e.g. mmcv-lite; upstream '
            'mmsegmentation imports mmcv.ops: install mmcv itself, see below)'
        )
    return host_error([problem])
