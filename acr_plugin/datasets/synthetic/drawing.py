"""Drawing primitives of the procedural generators (pure numpy).

Used by the synthetic generator (all of them) and by the Fashion-MNIST
composer (colours and value noise).

Colours (HSV to RGB, muted random colours), multi-octave value noise, rotated
ellipse and head-shape rasters, distances to a stroke and the speckled body
paint. Coordinates are pixel centres (``row + 0.5``, ``col + 0.5``); colours
are RGB in ``[0, 1]``.
"""

import colorsys
import math
from typing import Sequence

import numpy as np


def hsv_colour(hue_deg: float, sat: float, val: float) -> np.ndarray:
    """RGB in [0, 1] of an HSV colour (hue in degrees)."""
    return np.array(colorsys.hsv_to_rgb((hue_deg / 360.0) % 1.0, sat, val), np.float32)


def muted_colour(rng: np.random.Generator) -> np.ndarray:
    """A desaturated random colour (bodies, decoys, strokes)."""
    return hsv_colour(
        rng.uniform(0, 360), rng.uniform(0.08, 0.4), rng.uniform(0.3, 0.85)
    )


def value_noise(
    rng: np.random.Generator, h: int, w: int, cells: Sequence[int] = (2, 4, 8)
) -> np.ndarray:
    """Multi-octave value noise in [0, 1]: random lattices, smooth upsampling."""
    out = np.zeros((h, w), np.float32)
    total = 0.0
    for octave, n in enumerate(cells):
        grid = rng.random((n + 1, n + 1), dtype=np.float32)
        ys = np.linspace(0, n, h, endpoint=False, dtype=np.float32)
        xs = np.linspace(0, n, w, endpoint=False, dtype=np.float32)
        y0, x0 = ys.astype(np.int64), xs.astype(np.int64)
        fy, fx = ys - y0, xs - x0
        fy, fx = fy * fy * (3 - 2 * fy), fx * fx * (3 - 2 * fx)  # smoothstep
        rows = grid[:, x0] * (1 - fx) + grid[:, x0 + 1] * fx  # (n + 1, w)
        layer = rows[y0] * (1 - fy)[:, None] + rows[y0 + 1] * fy[:, None]
        amp = 0.5**octave
        out += amp * layer
        total += amp
    return out / total


def ellipse_rho2(
    yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, a: float, b: float, ang: float
) -> np.ndarray:
    """Squared normalised ellipse radius (< 1 inside) of a rotated ellipse."""
    dx, dy = xx - cx, yy - cy
    c, s = math.cos(ang), math.sin(ang)
    u = (dx * c + dy * s) / a
    v = (-dx * s + dy * c) / b
    return u * u + v * v


def shape_mask(shape: str, dy: np.ndarray, dx: np.ndarray, r: float, ang: float):
    """Boolean mask of a head shape of radius ``r`` rotated by ``ang``.

    Args:
        shape (str): ``disc, square, triangle, ring, cross`` or ``diamond``.
        dy (np.ndarray): Row offsets from the centre (pixel centres).
        dx (np.ndarray): Column offsets from the centre, broadcastable to dy.
        r (float): Radius; every shape covers roughly ``3 r^2`` pixels.
        ang (float): Rotation in radians.

    Returns:
        np.ndarray: Boolean mask, the broadcast shape of ``dy`` and ``dx``.
    """
    c, s = math.cos(ang), math.sin(ang)
    u = dx * c + dy * s
    v = -dx * s + dy * c
    if shape == 'disc':
        return u * u + v * v <= r * r
    if shape == 'square':
        return np.maximum(np.abs(u), np.abs(v)) <= 0.87 * r
    if shape == 'triangle':
        # equilateral triangle with circumradius 1.35 r: inradius 0.675 r
        inner = 0.675 * r
        mask = u <= inner
        for k in (1, 2):
            t = 2 * math.pi * k / 3
            mask &= u * math.cos(t) + v * math.sin(t) <= inner
        return mask
    if shape == 'ring':
        d2 = u * u + v * v
        return (d2 <= (1.1 * r) ** 2) & (d2 >= (0.5 * r) ** 2)
    if shape == 'cross':
        au, av = np.abs(u), np.abs(v)
        arm, half = 0.38 * r, 1.1 * r
        return ((au <= arm) & (av <= half)) | ((av <= arm) & (au <= half))
    if shape == 'diamond':
        return np.abs(u) + np.abs(v) <= 1.25 * r
    raise ValueError(f'unknown head shape {shape!r}')


def segment_dist2(
    yy: np.ndarray, xx: np.ndarray, p0: np.ndarray, p1: np.ndarray
) -> np.ndarray:
    """Squared distance of pixel centres to the segment p0-p1 ((y, x) points)."""
    d = p1 - p0
    length2 = float(d @ d) + 1e-6
    t = np.clip(((yy - p0[0]) * d[0] + (xx - p0[1]) * d[1]) / length2, 0.0, 1.0)
    ey = yy - (p0[0] + t * d[0])
    ex = xx - (p0[1] + t * d[1])
    return ey * ey + ex * ex


def paint_body(
    canvas: np.ndarray,
    speckle: np.ndarray,
    rho2: np.ndarray,
    mask: np.ndarray,
    rim_frac: float,
    colour: np.ndarray,
) -> None:
    """Paint a speckled body with a darker rim into ``canvas`` in place."""
    shade = speckle[mask] * np.where(rho2[mask] >= (1.0 - rim_frac) ** 2, 0.55, 1.0)
    canvas[mask] = shade[:, None] * colour
