"""Fixtures shared by the dataset tests."""

import pytest

from acr_plugin.datasets.fashion_mnist import make_tiny_fashion_mnist


@pytest.fixture(scope='module')
def fashion_mnist_root(tmp_path_factory) -> str:
    """A tiny Fashion-MNIST folder (IDX files), one per test module."""
    return make_tiny_fashion_mnist(str(tmp_path_factory.mktemp('fashion_mnist')))
