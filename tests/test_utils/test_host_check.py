"""The import-time check of mmseg / mmcv / mmengine (``acr_plugin.utils.host_check``).

The environment is faked by patching ``importlib.metadata.version`` (what the
check reads first), ``importlib.util.find_spec`` and ``importlib.import_module``.
"""

import importlib
import importlib.metadata
import importlib.util
import os
import subprocess
import sys

import pytest

from acr_plugin.utils import host_check
from tests.host_install_hint import (
    assert_install_hint,
)
from tests.scripts import ROOT


def _fake_metadata(monkeypatch, **versions):
    """Distribution name -> version (None: not installed). The other known
    distributions of a library named here are hidden (so the fake is the same
    on the onedl and the upstream stack); other libraries stay as they are."""
    real = importlib.metadata.version
    for lib in host_check.HOST_LIBRARIES:
        if any(name in versions for name in lib.distributions):
            versions = {**dict.fromkeys(lib.distributions), **versions}

    def version(name):
        if name in versions:
            if versions[name] is None:
                raise importlib.metadata.PackageNotFoundError(name)
            return versions[name]
        return real(name)

    monkeypatch.setattr(importlib.metadata, 'version', version)


def _no_known_distribution(monkeypatch, module):
    lib = next(lib for lib in host_check.HOST_LIBRARIES if lib.module == module)
    _fake_metadata(monkeypatch, **dict.fromkeys(lib.distributions))


def test_this_environment_passes():
    assert host_check.host_problems() == []
    host_check.check_host_libraries()


def test_every_library_is_named_for_both_stacks():
    names = {lib.module: lib.distributions for lib in host_check.HOST_LIBRARIES}
    assert list(names) == ['mmengine', 'mmcv', 'mmseg']  # import order
    assert {'mmengine', 'onedl-mmengine'} <= set(names['mmengine'])
    assert {'mmcv', 'mmcv-lite', 'onedl-mmcv'} <= set(names['mmcv'])
    assert {'mmsegmentation', 'onedl-mmsegmentation'} <= set(names['mmseg'])


@pytest.mark.parametrize(
    'dist,version,module',
    [
        ('onedl-mmsegmentation', '0.30.0', 'mmseg'),
        ('onedl-mmsegmentation', '2.0.0', 'mmseg'),
        ('onedl-mmcv', '1.7.2', 'mmcv'),
        ('onedl-mmengine', '0.9.1', 'mmengine'),
    ],
)
def test_unsupported_version_raises_one_clear_error(monkeypatch, dist, version, module):
    _fake_metadata(monkeypatch, **{dist: version})
    with pytest.raises(ImportError) as info:
        host_check.check_host_libraries()
    message = str(info.value)
    lib = next(lib for lib in host_check.HOST_LIBRARIES if lib.module == module)
    assert f'{module}: version {version} ({dist}) is not supported' in message
    assert lib.supported in message
    assert message.count('is not supported') == 1  # the other two are fine
    assert_install_hint(message)
    assert info.value.__cause__ is None


def test_upstream_distribution_names_are_read(monkeypatch):
    """An upstream stack (its distribution names) of an old version."""
    _fake_metadata(
        monkeypatch,
        **{'onedl-mmcv': None, 'mmcv-full': '1.7.2', 'onedl-mmengine': None},
        mmengine='0.10.4',
    )
    problems = host_check.host_problems()
    assert problems == [
        'mmcv: version 1.7.2 (mmcv-full) is not supported; acr_plugin needs mmcv '
        '>=2.0.0rc4 (upstream: mmcv / mmcv-lite; onedl: onedl-mmcv)'
    ]


def test_missing_library_raises_one_clear_error(monkeypatch):
    _no_known_distribution(monkeypatch, 'mmseg')
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        'find_spec',
        lambda name, *a: None if name == 'mmseg' else real(name, *a),
    )
    with pytest.raises(ImportError) as info:
        host_check.check_host_libraries()
    message = str(info.value)
    assert message.startswith('acr_plugin needs mmseg 1.x with mmcv 2.x and mmengine')
    assert '- mmseg: not installed; acr_plugin needs mmseg >=1.0.0,<2' in message
    assert 'upstream: mmsegmentation; onedl: onedl-mmsegmentation' in message
    assert_install_hint(message)


def test_unknown_distribution_falls_back_to_the_module_version(monkeypatch):
    """A fork under another name (or a source checkout): ``__version__``."""
    _no_known_distribution(monkeypatch, 'mmseg')
    assert host_check.host_problems() == []
    import mmseg

    monkeypatch.setattr(mmseg, '__version__', '0.30.0')
    assert host_check.host_problems() == [
        'mmseg: version 0.30.0 (mmseg.__version__) is not supported; acr_plugin '
        'needs mmseg >=1.0.0,<2 (upstream: mmsegmentation; onedl: onedl-mmsegmentation)'
    ]


def test_two_distributions_of_one_package_warn(monkeypatch):
    """Upstream and onedl both installed: the files are one of them; warn."""
    _fake_metadata(
        monkeypatch, mmsegmentation='1.2.2', **{'onedl-mmsegmentation': '1.4.2'}
    )
    with pytest.warns(
        UserWarning, match='mmsegmentation 1.2.2, onedl-mmsegmentation 1.4.2'
    ):
        assert host_check.host_problems() == []  # the imported module's version


def test_failing_import_is_the_same_error(monkeypatch):
    """mmsegmentation 1.2.x asserts mmcv < 2.2.0 when imported."""
    real = importlib.import_module
    refusal = AssertionError(
        'MMCV==2.2.0 is used but incompatible. Please install mmcv>=2.0.0rc4, <2.2.0.'
    )

    def import_module(name, *args):
        if name == 'mmseg':
            raise refusal
        return real(name, *args)

    monkeypatch.setattr(importlib, 'import_module', import_module)
    with pytest.raises(ImportError) as info:
        host_check.check_host_libraries()
    message = str(info.value)
    assert '- mmseg: installed, but its import fails: MMCV==2.2.0 is used' in message
    assert_install_hint(message)
    assert info.value.__cause__ is refusal


def test_skip_variable_skips_the_versions_only(monkeypatch):
    _fake_metadata(monkeypatch, **{'onedl-mmsegmentation': '0.30.0'})
    monkeypatch.setenv(host_check.SKIP_ENV, '1')
    assert host_check.host_problems() == []
    monkeypatch.setenv(host_check.SKIP_ENV, '0')
    assert len(host_check.host_problems()) == 1


def test_import_acr_plugin_raises_only_this_error():
    """``import acr_plugin`` checks before it imports mmseg: one ImportError."""
    code = (
        'import importlib.metadata as m\n'
        'real = m.version\n'
        'def version(n):\n'
        "    if n == 'mmsegmentation':\n"
        '        raise m.PackageNotFoundError(n)\n'
        "    return '0.30.0' if n == 'onedl-mmsegmentation' else real(n)\n"
        'm.version = version\n'
        'import acr_plugin\n'
    )
    env = dict(os.environ, OMP_NUM_THREADS='1')
    env.pop(host_check.SKIP_ENV, None)
    proc = subprocess.run(
        [sys.executable, '-c', code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert proc.stderr.count('Traceback') == 1, proc.stderr
    assert 'ImportError: acr_plugin needs mmseg 1.x' in proc.stderr
    assert (
        'mmseg: version 0.30.0 (onedl-mmsegmentation) is not supported' in proc.stderr
    )
    assert_install_hint(proc.stderr)
    assert proc.stdout == ''


def test_docs_show_the_message_as_it_is():
    """docs/installation.md quotes the error: its install commands, verbatim."""
    with open(os.path.join(ROOT, 'docs', 'installation.md'), encoding='utf-8') as f:
        docs = f.read()
    assert host_check.INSTALL_HINT in docs
    for lib in host_check.HOST_LIBRARIES:
        assert f'- {lib.module}: not installed; acr_plugin needs {lib.wanted()}' in docs
