"""``pip install .`` leaves the torch / mm* stack of the environment alone.

pip's resolver decides from the installed distributions' metadata only, so a
throwaway venv (``--without-pip``) whose site-packages holds bare
``*.dist-info`` directories of an upstream OpenMMLab stack (torch 2.1.2, mmcv
2.1.0, mmengine 0.10.4, mmsegmentation 1.2.2, ...) stands in for a researcher's
environment. The outer pip dry-runs the install into it (``--python``,
``--dry-run --report``) and the report says what it would install: nothing of
that stack, and no onedl-* fork. The same dry run into an empty venv installs
no mmseg / mmcv / mmengine at all (``import acr_plugin`` then says what to
install).

The project is copied first (build metadata is written beside setup.py). The
machine-wide pip constraint file (``PIP_CONSTRAINT`` / ``global.constraint``,
here a cap on torch) is switched off with ``PIP_CONSTRAINT=''`` so that it
can neither hide nor cause an upgrade. The index (or a local mirror) must
answer: without it the tests are skipped. ~45 s on 2 busy CPU cores.
"""

import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import venv

import pytest
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.scripts import ROOT

pytestmark = pytest.mark.slow

#: a torch 2.1 era upstream environment (distribution name -> version)
UPSTREAM_HOST = {
    'torch': '2.1.2',
    'torchvision': '0.16.2',
    'mmcv': '2.1.0',
    'mmengine': '0.10.4',
    'mmsegmentation': '1.2.2',
    'numpy': '1.26.4',
    'scipy': '1.11.4',
    'opencv-python': '4.8.1.78',
    'pillow': '10.0.1',
    'packaging': '23.2',
}
#: never installed by ``pip install acr_plugin`` (either cv2 distribution too)
HOST_STACK = {
    'torch',
    'torchvision',
    'mmcv',
    'mmcv-lite',
    'mmcv-full',
    'mmengine',
    'mmengine-lite',
    'mmsegmentation',
    'opencv-python',
    'opencv-python-headless',
}
#: what a project copy needs to build its metadata
PROJECT_FILES = ('setup.py', 'README.md', 'MANIFEST.in', 'pyproject.toml')
PROJECT_DIRS = ('requirements', 'acr_plugin')


def _pip(*args, timeout=300, **kwargs):
    env = dict(os.environ, PIP_CONSTRAINT='', PIP_DISABLE_PIP_VERSION_CHECK='1')
    return subprocess.run(
        [sys.executable, '-m', 'pip', *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


@pytest.fixture(scope='module')
def project(tmp_path_factory):
    """The packaging files of the repository, copied."""
    root = tmp_path_factory.mktemp('acr_plugin_project')
    for name in PROJECT_FILES:
        shutil.copy2(osp.join(ROOT, name), root / name)
    for name in PROJECT_DIRS:
        shutil.copytree(
            osp.join(ROOT, name),
            root / name,
            ignore=shutil.ignore_patterns('__pycache__'),
        )
    return root


@pytest.fixture(scope='module', autouse=True)
def index_reachable():
    try:
        proc = _pip(
            'index', 'versions', 'timm', '--timeout', '15', '--retries', '1', timeout=90
        )
    except subprocess.TimeoutExpired:
        proc = None
    if proc is None or proc.returncode != 0 or 'timm' not in proc.stdout:
        pytest.skip(
            'the package index does not answer (pip index versions timm failed)'
        )


def _venv(path, distributions):
    """A venv without pip whose site-packages holds bare ``.dist-info`` dirs."""
    venv.EnvBuilder(with_pip=False, symlinks=True).create(path)
    site = osp.join(
        path,
        'lib',
        f'python{sys.version_info[0]}.{sys.version_info[1]}',
        'site-packages',
    )
    assert osp.isdir(site), site
    for name, version in distributions.items():
        info = f'{name.replace("-", "_")}-{version}.dist-info'
        os.makedirs(osp.join(site, info))
        files = {
            'METADATA': f'Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n',
            'INSTALLER': 'pip\n',
        }
        files['RECORD'] = ''.join(f'{info}/{f},,\n' for f in [*files, 'RECORD'])
        for filename, text in files.items():
            with open(osp.join(site, info, filename), 'w') as f:
                f.write(text)
    return osp.join(path, 'bin', 'python')


def _dry_run(python, project, report):
    """``{name: version}`` that ``pip install <project>`` would install."""
    proc = _pip(
        '--python', python, 'install', '--dry-run', '--quiet', '--report', str(report),
        str(project),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(report) as f:
        items = json.load(f)['install']
    return {
        canonicalize_name(i['metadata']['name']): i['metadata']['version']
        for i in items
    }


def _forks(names):
    return sorted(n for n in names if n.startswith('onedl-'))


def test_upstream_stack_is_left_alone(tmp_path, project):
    python = _venv(tmp_path / 'host', UPSTREAM_HOST)
    install = _dry_run(python, project, tmp_path / 'report.json')

    assert install['acr-plugin'] == '0.1.0'
    assert not HOST_STACK & set(install), install  # nothing installed or replaced
    assert not set(map(canonicalize_name, UPSTREAM_HOST)) & set(install), install
    assert _forks(install) == [], install
    # what it adds: timm (and what timm needs), ftfy, regex, safetensors
    assert Version(install['timm']) >= Version('1.0.16')
    assert {'ftfy', 'regex', 'safetensors'} <= set(install)


def test_empty_venv_gets_no_mm_stack(tmp_path, project):
    python = _venv(tmp_path / 'empty', {})
    install = _dry_run(python, project, tmp_path / 'report.json')

    assert 'acr-plugin' in install and 'torch' in install  # a real resolution
    assert not {n for n in HOST_STACK if n.startswith(('mm', 'opencv'))} & set(install)
    assert _forks(install) == [], install
