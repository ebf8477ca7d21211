"""Which interpreter tools/dist_train.sh and tools/dist_test.sh run.

``$PYTHON`` when set; else the repository's ``.venv/bin/python`` when it
exists (``make install`` creates it; ``python`` on ``PATH`` may have no
mmengine); else ``python`` from ``PATH``. Fake interpreters record their
calls, so nothing is launched.
"""

import os
import shutil
import stat
import subprocess

import pytest

from tests.scripts import ROOT

ARGS = {
    'dist_train.sh': (
        ['CFG.py', '2', '--amp'],
        ['CFG.py', '--launcher', 'pytorch', '--amp'],
    ),
    'dist_test.sh': (
        ['CFG.py', 'CKPT.pth', '2', '--out', 'o'],
        ['CFG.py', 'CKPT.pth', '--launcher', 'pytorch', '--out', 'o'],
    ),
}


def _fake_python(path, name):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'#!/bin/sh\necho "{name} $*" >> "$CALLS"\n')
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def _run(script, repo, calls, env_extra):
    env = {
        'PATH': f'{repo.parent / "bin"}:/usr/bin:/bin',
        'CALLS': str(calls),
        **env_extra,
    }
    args = ARGS[script][0]
    subprocess.run(
        ['bash', str(repo / 'tools' / script), *args],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    line = calls.read_text().splitlines()[-1]
    return line.split(' ', 1)


@pytest.mark.parametrize('script', sorted(ARGS))
def test_dist_script_interpreter(script, tmp_path):
    repo = tmp_path / 'repo'
    (repo / 'tools').mkdir(parents=True)
    shutil.copy(os.path.join(ROOT, 'tools', script), repo / 'tools' / script)
    calls = tmp_path / 'calls.txt'
    _fake_python(tmp_path / 'bin' / 'python', 'path')

    # no .venv, no PYTHON: python from PATH
    who, argv = _run(script, repo, calls, {})
    assert who == 'path'
    tool = 'train.py' if script == 'dist_train.sh' else 'test.py'
    assert argv.startswith('-m torch.distributed.run ')
    assert '--nproc_per_node=2' in argv
    assert argv.endswith(f'{repo}/tools/{tool} ' + ' '.join(ARGS[script][1]))

    # the repository's .venv wins over PATH
    _fake_python(repo / '.venv' / 'bin' / 'python', 'venv')
    assert _run(script, repo, calls, {})[0] == 'venv'

    # PYTHON wins over both
    _fake_python(tmp_path / 'other' / 'python', 'custom')
    custom = str(tmp_path / 'other' / 'python')
    assert _run(script, repo, calls, {'PYTHON': custom})[0] == 'custom'


@pytest.mark.parametrize('script', sorted(ARGS))
def test_dist_script_header_documents_python(script):
    with open(os.path.join(ROOT, 'tools', script), encoding='utf-8') as f:
        header = f.read().split('\nCONFIG=')[0]
    assert 'PYTHON' in header and '.venv/bin/python' in header
