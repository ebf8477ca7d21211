"""The numpy drawing primitives (acr_plugin/datasets/synthetic/drawing.py)
against analytic shapes and per-pixel loops."""

import math

import numpy as np
import pytest

from acr_plugin.datasets.synthetic.drawing import (
    ellipse_rho2,
    hsv_colour,
    muted_colour,
    paint_body,
    segment_dist2,
    shape_mask,
    value_noise,
)


def centres(h, w):
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    return yy + 0.5, xx + 0.5


def test_hsv_colour_primaries_and_muted_range():
    np.testing.assert_allclose(hsv_colour(0, 1, 1), [1, 0, 0])
    np.testing.assert_allclose(hsv_colour(120, 1, 1), [0, 1, 0])
    np.testing.assert_allclose(hsv_colour(600, 1, 0.5), [0, 0, 0.5])  # 240 deg
    assert hsv_colour(0, 0, 0.25).dtype == np.float32
    colour = muted_colour(np.random.default_rng(0))
    # value (max channel) in [0.3, 0.85], saturation <= 0.4
    assert 0.3 <= colour.max() <= 0.85
    assert (colour.max() - colour.min()) / colour.max() <= 0.4 + 1e-6


def test_value_noise_range_and_one_octave_lattice():
    noise = value_noise(np.random.default_rng(1), 12, 20)
    assert noise.shape == (12, 20) and noise.dtype == np.float32
    assert noise.min() >= 0 and noise.max() <= 1
    # one octave: at the lattice points (every h / n rows) the noise is the grid
    grid = np.random.default_rng(2).random((3, 3), dtype=np.float32)
    single = value_noise(np.random.default_rng(2), 8, 8, cells=(2,))
    np.testing.assert_allclose(single[::4, ::4], grid[:2, :2], rtol=1e-6)


def test_ellipse_rho2_against_the_rotated_axes():
    yy, xx = centres(20, 30)
    ang = math.pi / 6
    rho2 = ellipse_rho2(yy, xx, 10.0, 15.0, 8.0, 3.0, ang)
    # a point on the major axis at distance 8 lies on the boundary
    assert ellipse_rho2(
        np.array(10 + 8 * math.sin(ang)),
        np.array(15 + 8 * math.cos(ang)),
        10.0,
        15.0,
        8.0,
        3.0,
        ang,
    ) == pytest.approx(1.0)
    inside = rho2 < 1
    assert inside.sum() == pytest.approx(math.pi * 8 * 3, rel=0.1)
    assert inside[10, 15] and not inside[0, 0]


@pytest.mark.parametrize(
    'shape,area',
    [
        ('disc', math.pi),
        ('square', (2 * 0.87) ** 2),
        ('diamond', 2 * 1.25**2),
        ('ring', math.pi * (1.1**2 - 0.5**2)),
        ('triangle', 3 * math.sqrt(3) * 0.675**2),
        ('cross', 2 * (2 * 0.38) * (2 * 1.1) - (2 * 0.38) ** 2),
    ],
)
def test_shape_masks_cover_their_analytic_area(shape, area):
    r = 20.0
    yy, xx = centres(100, 100)
    mask = shape_mask(shape, yy - 50, xx - 50, r, 0.3)
    assert mask.dtype == bool and mask.shape == (100, 100)
    assert mask.sum() == pytest.approx(area * r * r, rel=0.03)


def test_disc_is_the_analytic_disc_and_unknown_shape_fails():
    yy, xx = centres(16, 16)
    dy, dx = yy - 8, xx - 8
    np.testing.assert_array_equal(
        shape_mask('disc', dy, dx, 5.0, 1.0), dy * dy + dx * dx <= 25.0
    )
    with pytest.raises(ValueError, match="unknown head shape 'star'"):
        shape_mask('star', dy, dx, 5.0, 0.0)


def test_segment_dist2_per_pixel_loop():
    yy, xx = centres(6, 7)
    p0, p1 = np.array([1.0, 1.0]), np.array([4.0, 6.0])
    got = segment_dist2(yy, xx, p0, p1)
    for (i, j), value in np.ndenumerate(got):
        point = np.array([yy[i, j], xx[i, j]])
        best = min(
            float(np.sum((point - (p0 + t * (p1 - p0))) ** 2))
            for t in np.linspace(0, 1, 2001)
        )
        assert value == pytest.approx(best, abs=1e-4)


def test_paint_body_rim_is_darker():
    canvas = np.zeros((3, 3, 3), np.float32)
    speckle = np.full((3, 3), 0.8, np.float32)
    rho2 = np.array([[0.1, 0.7, 0.95]] * 3)
    mask = np.array([[True, True, True], [False] * 3, [False] * 3])
    colour = np.array([1.0, 0.5, 0.0], np.float32)
    paint_body(canvas, speckle, rho2, mask, rim_frac=0.2, colour=colour)
    # (1 - 0.2)^2 = 0.64: rho2 0.7 and 0.95 are rim pixels
    np.testing.assert_allclose(canvas[0, 0], 0.8 * colour)
    np.testing.assert_allclose(canvas[0, 1], 0.8 * 0.55 * colour)
    np.testing.assert_allclose(canvas[0, 2], 0.8 * 0.55 * colour)
    assert not canvas[1:].any()
