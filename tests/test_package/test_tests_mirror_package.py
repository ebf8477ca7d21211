"""Every package module has its test file at the mirrored path.

``acr_plugin/a/b/c.py`` is tested in ``tests/test_a/test_b/test_c.py``
(the mmengine layout). Adding a module without its test file fails here.
"""

from pathlib import Path

from tests.scripts import ROOT

PACKAGE = Path(ROOT) / 'acr_plugin'
TESTS = Path(ROOT) / 'tests'

#: modules without a test file of their own, by design
COVERED_ELSEWHERE = {
    # the package version string, no behaviour to test
    'version.py',
    # test support: tiny stand-in IDX files for the Fashion-MNIST tests, used
    # by every test under tests/test_datasets/test_fashion_mnist/
    'datasets/fashion_mnist/testing.py',
}


def mirrored_test_path(module: Path) -> Path:
    """``a/b/c.py`` (relative to the package) -> ``tests/test_a/test_b/test_c.py``."""
    return TESTS.joinpath(*(f'test_{part}' for part in module.parts))


def test_mirrored_test_path():
    assert mirrored_test_path(Path('hosts/toco/par.py')) == (
        TESTS / 'test_hosts' / 'test_toco' / 'test_par.py'
    )


def test_every_module_has_its_mirrored_test_file():
    modules = sorted(
        path.relative_to(PACKAGE)
        for path in PACKAGE.rglob('*.py')
        if path.name != '__init__.py'
    )
    assert modules, f'no modules found under {PACKAGE}'
    missing = [
        f'{module} -> {mirrored_test_path(module).relative_to(ROOT)}'
        for module in modules
        if module.as_posix() not in COVERED_ELSEWHERE
        and not mirrored_test_path(module).is_file()
    ]
    assert not missing, 'modules without a test file:\n' + '\n'.join(missing)


def test_allow_list_names_existing_modules():
    stale = [name for name in COVERED_ELSEWHERE if not (PACKAGE / name).is_file()]
    assert not stale, f'allow-list entries without a module: {stale}'
