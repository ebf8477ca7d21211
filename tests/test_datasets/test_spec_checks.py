"""Checks shared by the generator specs (``acr_plugin.datasets.spec_checks``)."""

import numpy as np
import pytest

from acr_plugin.datasets.fashion_mnist import FashionMNISTSpec
from acr_plugin.datasets.spec_checks import canvas_size, check_design
from acr_plugin.datasets.synthetic import SyntheticSpec


def test_canvas_size_and_design():
    assert canvas_size('S', 40) == (40, 40)
    assert canvas_size('S', np.int64(32)) == (32, 32)
    assert canvas_size('S', [48, 64.0]) == (48, 64)
    for bad in (31, (32, 20), (32, 32, 32)):
        with pytest.raises(ValueError, match=r'S.img_size must be an int or \(h, w\)'):
            canvas_size('S', bad)
    check_design('S', 'wsss', {'wsss': 0})
    with pytest.raises(ValueError, match=r"S.design must be one of \['a', 'b'\]"):
        check_design('S', 'c', {'b': 1, 'a': 0})


@pytest.mark.parametrize('spec', [SyntheticSpec, FashionMNISTSpec])
def test_both_specs_name_themselves(spec):
    name = spec.__name__
    assert spec(img_size=(64, 72)).img_size == (64, 72)
    with pytest.raises(ValueError, match=rf"{name}.design must be one of .*'x'"):
        spec(design='x')
    with pytest.raises(ValueError, match=rf'{name}.img_size .* got 16'):
        spec(img_size=16)
