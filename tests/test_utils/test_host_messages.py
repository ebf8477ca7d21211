"""Tests for acr_plugin/utils/host_messages.py: the stdout and warning filters
and the import of the host modules."""

import importlib
import warnings

import pytest

from acr_plugin.utils import host_messages
from tests.host_install_hint import assert_install_hint


def test_stdout_filter_drops_only_the_exact_line(capsys):
    with host_messages.without_stdout_lines([host_messages.ONEDL_LINE]):
        print('before')
        print(host_messages.ONEDL_LINE)
        print(f'{host_messages.ONEDL_LINE} (but more)')
        print('after', end='')
    assert capsys.readouterr().out == (
        f'before\n{host_messages.ONEDL_LINE} (but more)\nafter'
    )
    with (
        pytest.raises(RuntimeError),
        host_messages.without_stdout_lines([host_messages.ONEDL_LINE]),
    ):
        print('kept when the block raises')
        raise RuntimeError
    assert capsys.readouterr().out == 'kept when the block raises\n'


def test_warning_filter_drops_only_its_warning_and_leaves_no_filter():
    filters = list(warnings.filters)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        filters = list(warnings.filters)
        with host_messages.without_warning('Fail to import', UserWarning, __name__):
            warnings.warn('Fail to import X', UserWarning, stacklevel=1)
            warnings.warn('another warning', UserWarning, stacklevel=1)
            warnings.warn('Fail to import X', DeprecationWarning, stacklevel=1)
        assert warnings.filters == filters
        warnings.warn('Fail to import X', UserWarning, stacklevel=1)
    assert [(str(w.message), w.category) for w in caught] == [
        ('another warning', UserWarning),
        ('Fail to import X', DeprecationWarning),
        ('Fail to import X', UserWarning),
    ]


def test_mmseg_without_mmcv_ops_is_the_same_error(monkeypatch):
    """Upstream mmsegmentation beside mmcv-lite fails in ``mmseg.datasets``
    (it imports ``mmcv.ops``): the check's error, naming the cause."""

    real = importlib.import_module
    missing = ModuleNotFoundError("No module named 'mmcv._ext'", name='mmcv._ext')

    def import_module(name, *args):
        if name == 'mmseg.datasets':
            raise missing
        return real(name, *args)

    monkeypatch.setattr(importlib, 'import_module', import_module)
    with pytest.raises(ImportError) as info:
        host_messages.import_host_modules()
    message = str(info.value)
    assert (
        "- mmseg.datasets: installed, but its import fails: No module named 'mmcv._ext'"
        in message
    )
    assert 'e.g. mmcv-lite; upstream mmsegmentation imports mmcv.ops' in message
    assert_install_hint(message)
    assert info.value.__cause__ is missing
