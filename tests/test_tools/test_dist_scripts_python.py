"""Which interpreter the launch scripts (tools/dist_*.sh, tools/slurm_*.sh) run.

``$PYTHON`` when set; else the repository's ``.venv/bin/python`` when it
exists (``make install`` creates it; ``python`` on ``PATH`` may have no
mmengine); else ``python`` from ``PATH``: one rule, in
``tools/select_python.sh``, which every script sources. Fake interpreters
record their calls, so nothing is launched; the Slurm scripts go through the
``srun`` stub of ``tests/slurm_stub.py`` (one task).
"""

import itertools
import os
import shutil
import stat
import subprocess

import pytest

from tests.scripts import ROOT
from tests.slurm_stub import install_slurm_stubs

#: script: (its arguments, the interpreter's arguments up to the tool, the
#: tool, the tool's arguments)
ARGS = {
    'dist_train.sh': (
        ['CFG.py', '2', '--amp'],
        '-m torch.distributed.run ',
        'train.py',
        ['CFG.py', '--launcher', 'pytorch', '--amp'],
    ),
    'dist_test.sh': (
        ['CFG.py', 'CKPT.pth', '2', '--out', 'o'],
        '-m torch.distributed.run ',
        'test.py',
        ['CFG.py', 'CKPT.pth', '--launcher', 'pytorch', '--out', 'o'],
    ),
    'slurm_train.sh': (
        ['part', 'job', 'CFG.py', 'W', '--amp'],
        '-u ',
        'train.py',
        ['CFG.py', '--work-dir=W', '--launcher', 'slurm', '--amp'],
    ),
    'slurm_test.sh': (
        ['part', 'job', 'CFG.py', 'CKPT.pth', '--out', 'o'],
        '-u ',
        'test.py',
        ['CFG.py', 'CKPT.pth', '--launcher', 'slurm', '--out', 'o'],
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
        'GPUS': '1',  # the Slurm scripts' task count
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
def test_launch_script_interpreter(script, tmp_path):
    repo = tmp_path / 'repo'
    (repo / 'tools').mkdir(parents=True)
    for name in (script, 'select_python.sh'):
        shutil.copy(os.path.join(ROOT, 'tools', name), repo / 'tools' / name)
    calls = tmp_path / 'calls.txt'
    _fake_python(tmp_path / 'bin' / 'python', 'path')
    install_slurm_stubs(tmp_path / 'bin')

    # no .venv, no PYTHON: python from PATH
    who, argv = _run(script, repo, calls, {})
    assert who == 'path'
    _, head, tool, tool_args = ARGS[script]
    assert argv.startswith(head)
    if script.startswith('dist_'):
        assert '--nproc_per_node=2' in argv
    assert argv.endswith(f'{repo}/tools/{tool} ' + ' '.join(tool_args))

    # the repository's .venv wins over PATH
    _fake_python(repo / '.venv' / 'bin' / 'python', 'venv')
    assert _run(script, repo, calls, {})[0] == 'venv'

    # PYTHON wins over both
    _fake_python(tmp_path / 'other' / 'python', 'custom')
    custom = str(tmp_path / 'other' / 'python')
    assert _run(script, repo, calls, {'PYTHON': custom})[0] == 'custom'


@pytest.mark.parametrize('script', sorted(ARGS))
def test_launch_script_header_documents_python(script):
    with open(os.path.join(ROOT, 'tools', script), encoding='utf-8') as f:
        lines = f.read().splitlines()
    header = '\n'.join(itertools.takewhile(lambda line: line.startswith('#'), lines))
    assert 'PYTHON' in header and '.venv/bin/python' in header
    assert f'Usage: tools/{script} ' in header
