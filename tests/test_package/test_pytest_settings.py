"""The repository's pytest settings keep a whole ``make test`` run on a small disk.

The end-to-end tests train full-size configs and write their checkpoints into
``tmp_path`` (hundreds of MB each, over 10 GB for the suite). With pytest's
default retention every one of them stays on disk until the session ends, and
a CI machine with a modest disk fills up half-way through the suite: every
later test then errors in its set-up. The ``pyproject.toml`` settings delete a
passing test's ``tmp_path`` at its teardown and keep a failing test's.
"""

import os.path as osp
import subprocess
import sys

from tests.scripts import ROOT

CHILD_TESTS = """
import os


def test_passes(tmp_path):
    (tmp_path / 'checkpoint.pth').write_bytes(b'0' * 1024)


def test_fails(tmp_path):
    (tmp_path / 'checkpoint.pth').write_bytes(b'0' * 1024)
    assert False, 'kept for inspection'
"""


def test_passing_tests_tmp_path_is_deleted_failing_kept(tmp_path):
    (tmp_path / 'test_child.py').write_text(CHILD_TESTS)
    basetemp = tmp_path / 'basetemp'
    run = subprocess.run(
        [
            sys.executable,
            '-m',
            'pytest',
            '-q',
            '-p',
            'no:cacheprovider',
            '-c',
            osp.join(ROOT, 'pyproject.toml'),
            '--rootdir',
            str(tmp_path),
            f'--basetemp={basetemp}',
            str(tmp_path / 'test_child.py'),
        ],
        capture_output=True,
        text=True,
        cwd=str(tmp_path),
        timeout=120,
    )
    assert run.returncode == 1, run.stdout + run.stderr
    assert '1 failed, 1 passed' in run.stdout, run.stdout
    # pytest also links '<name>current' to the newest numbered directory
    left = sorted(p.name for p in basetemp.iterdir() if not p.is_symlink())
    assert left == ['test_fails0'], left
    assert (basetemp / 'test_fails0' / 'checkpoint.pth').is_file()
