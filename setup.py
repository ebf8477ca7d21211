"""Installation script of acr_plugin."""

import os.path as osp

from setuptools import find_packages, setup


def read_version() -> str:
    """Read ``__version__`` from ``acr_plugin/version.py`` without importing."""
    scope: dict = {}
    with open(osp.join(osp.dirname(__file__), 'acr_plugin', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


def read_readme() -> str:
    with open(osp.join(osp.dirname(__file__), 'README.md')) as f:
        return f.read()


def read_requirements(name: str) -> list:
    """Return the requirement lines of ``requirements/<name>.txt``.

    ``install`` holds the abstract dependencies (lower bounds only, no
    distribution of mmseg / mmcv / mmengine / opencv: see that file);
    ``runtime`` is the pinned lock file that ``make install`` installs before
    ``pip install --no-deps -e .`` and is not read here.
    """
    path = osp.join(osp.dirname(__file__), 'requirements', f'{name}.txt')
    with open(path) as f:
        lines = (line.split('#')[0].strip() for line in f)
        return [line for line in lines if line]


setup(
    name='acr_plugin',
    version=read_version(),
    description='All-pairs consistency regularisation (ACR) for weakly '
    'supervised semantic segmentation, as an mmsegmentation 1.x plug-in',
    long_description=read_readme(),
    long_description_content_type='text/markdown',
    packages=find_packages(
        exclude=('tests', 'tests.*', 'configs', 'tools', 'benchmarks')
    ),
    python_requires='>=3.10',
    install_requires=read_requirements('install'),
    extras_require=dict(
        crf=['pydensecrf2>=1.1'],  # dense CRF of pseudo labels (sdist, needs g++)
        coco=['pycocotools>=2.0.7'],  # COCO 2014 -> semantic PNG converter
        tests=read_requirements('tests'),
    ),
    license='Apache-2.0',
    zip_safe=False,
)
