"""Procedural images for the embedded synthetic WSSS benchmark (pure numpy).

Every object is a class-agnostic **body** (a large speckled ellipse with a dark
rim) plus a small class-specific **head** (shape, saturated hue, stripes) on the
body's rim, so a classifier only needs the head and plain CAMs show *partial
activation*. The background carries multi-octave value noise, thin strokes and
headless "decoy" bodies. See ``docs/synthetic-data.md`` for the specification.

Two designs share bodies and clutter but use disjoint head vocabularies:

* ``'wsss'``: the segmentation benchmark (disc / square / triangle heads,
  hues ``360 * k / C``; 6 classes by default).
* ``'pretrain'``: a stand-in for ImageNet classification pretraining (ring /
  cross / diamond heads, hues half-way between, other stripe periods and
  angles; 12 classes by default).

This module lays the objects out and renders a sample; the parameters and
class looks are in :mod:`.spec`, the drawing primitives in :mod:`.drawing` and
the on-disk cache in :mod:`.cache`. A sample is a pure function of
``(spec, seed, index)``: the random generator is seeded with
``np.random.SeedSequence([seed, index, design_id])``.

Colour order: the returned ``img`` is **BGR** (uint8, ``H x W x 3``), the order
that mmcv/mmseg pipelines assume for images read by ``LoadImageFromFile``.
Use ``img[..., ::-1]`` for RGB.
"""

import math
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import numpy as np

from acr_plugin.datasets.synthetic.drawing import (
    ellipse_rho2,
    hsv_colour,
    muted_colour,
    paint_body,
    segment_dist2,
    shape_mask,
    value_noise,
)
from acr_plugin.datasets.synthetic.spec import DESIGN_IDS, SyntheticSpec, head_style


@dataclass
class _Object:
    cls: int
    body: np.ndarray  # bool (H, W)
    rho2: np.ndarray  # float (H, W)
    rim_frac: float
    head: np.ndarray  # bool (H, W)
    head_full: int  # head pixel count without image clipping
    head_centre: Tuple[float, float]


def _sample_object(
    spec: SyntheticSpec,
    rng: np.random.Generator,
    yy: np.ndarray,
    xx: np.ndarray,
    cls: int,
) -> _Object:
    """Sample the geometry of one body + head and rasterise its masks."""
    h, w = spec.img_size
    ref = float(min(h, w))
    a = rng.uniform(*spec.body_axis_frac) * ref * rng.uniform(*spec.body_scale)
    b = a * rng.uniform(*spec.body_aspect)
    ang = rng.uniform(0, math.pi)
    cy = rng.uniform(0.15, 0.85) * h
    cx = rng.uniform(0.15, 0.85) * w
    rho2 = ellipse_rho2(yy, xx, cy, cx, a, b, ang)
    body = rho2 <= 1.0
    # head: centred on a random point of the rim
    t = rng.uniform(0, 2 * math.pi)
    u, v = a * math.cos(t), b * math.sin(t)
    hy = cy + u * math.sin(ang) + v * math.cos(ang)
    hx = cx + u * math.cos(ang) - v * math.sin(ang)
    r = max(spec.head_radius_ratio * math.sqrt(a * b), spec.min_head_radius)
    head_ang = rng.uniform(0, 2 * math.pi)
    style = head_style(spec.design, cls, spec.num_classes)
    head = shape_mask(style.shape, yy - hy, xx - hx, r, head_ang)
    # unclipped pixel count: the same raster on a local window
    span = int(math.ceil(1.5 * r)) + 1
    ly = np.arange(math.floor(hy) - span, math.floor(hy) + span + 1) + 0.5
    lx = np.arange(math.floor(hx) - span, math.floor(hx) + span + 1) + 0.5
    full = int(
        shape_mask(style.shape, ly[:, None] - hy, lx[None] - hx, r, head_ang).sum()
    )
    return _Object(
        cls=cls,
        body=body,
        rho2=rho2,
        rim_frac=min(0.5, 1.2 / b),
        head=head,
        head_full=full,
        head_centre=(hy, hx),
    )


def _layout_ok(spec: SyntheticSpec, objects: Sequence[_Object]) -> bool:
    """Every head keeps enough visible pixels after clipping and occlusion."""
    occluder = np.zeros(objects[0].body.shape, bool)
    for obj in reversed(objects):  # later objects occlude earlier ones
        visible = int(np.count_nonzero(obj.head & ~occluder))
        if visible < spec.min_head_pixels:
            return False
        if visible < spec.min_head_visible * obj.head_full:
            return False
        occluder |= obj.body | obj.head
    return True


def _sample_layout(
    spec: SyntheticSpec, rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray
) -> List[_Object]:
    """Draw classes (with repeats) and a layout whose tags are all honest."""
    n = int(rng.integers(spec.min_objects, spec.max_objects + 1))
    classes = [int(c) for c in rng.integers(0, spec.num_classes, n)]
    while True:
        for _ in range(spec.max_tries):
            objects = [_sample_object(spec, rng, yy, xx, c) for c in classes]
            if _layout_ok(spec, objects):
                return objects
        if len(classes) <= spec.min_objects:
            raise RuntimeError(
                f'synthetic generator: no valid layout of {len(classes)} '
                f'object(s) in {spec.max_tries} tries for {spec}'
            )
        classes.pop()


def sample_rng(spec: SyntheticSpec, seed: int, index: int) -> np.random.Generator:
    """The random generator of sample ``(seed, index)``."""
    if seed < 0 or index < 0:
        raise ValueError(f'seed and index must be >= 0, got {seed}, {index}')
    entropy = [int(seed), int(index), DESIGN_IDS[spec.design]]
    return np.random.default_rng(np.random.SeedSequence(entropy))


def generate_sample(
    spec: SyntheticSpec, seed: int, index: int
) -> Dict[str, np.ndarray]:
    """Generate sample ``index`` of split ``seed``.

    Args:
        spec (SyntheticSpec): Generator parameters.
        seed (int): Split seed (>= 0); train/val/test use different seeds.
        index (int): Sample index within the split (>= 0).

    Returns:
        dict: ``img`` (``H x W x 3`` uint8, **BGR**), ``gt_seg_map``
        (``H x W`` uint8: 0 background, ``1..C`` classes, 255 boundary when
        ``spec.boundary_ignore``), ``gt_part_map`` (``H x W`` uint8: 0
        background, 1 body, 2 head) and ``img_labels`` (``(C,)`` float32
        multi-hot over the foreground classes, class ``k`` at ``k - 1``).
    """
    rng = sample_rng(spec, seed, index)
    h, w = spec.img_size
    ref = float(min(h, w))
    yy = np.arange(h, dtype=np.float32)[:, None] + 0.5
    xx = np.arange(w, dtype=np.float32)[None, :] + 0.5
    speckle = 1.0 + 0.12 * rng.standard_normal((h, w), dtype=np.float32)

    # background: tinted value noise
    base, tint = muted_colour(rng), rng.random(3, dtype=np.float32)
    lum, tint_noise = value_noise(rng, h, w), value_noise(rng, h, w)
    canvas = base * (0.55 + 0.9 * lum)[..., None]
    canvas += 0.35 * (tint_noise[..., None] - 0.5) * (tint - 0.5)

    # clutter: thin strokes
    for _ in range(int(rng.integers(spec.num_strokes[0], spec.num_strokes[1] + 1))):
        p0 = rng.uniform(-0.1, 1.1, 2) * (h, w)
        p1 = p0 + rng.normal(0, 0.35, 2) * ref
        width = rng.uniform(0.45, 0.9)
        mask = segment_dist2(yy, xx, p0, p1) <= width * width
        canvas[mask] = muted_colour(rng)

    # clutter: headless decoy bodies
    for _ in range(int(rng.integers(spec.num_decoys[0], spec.num_decoys[1] + 1))):
        a = rng.uniform(*spec.decoy_axis_frac) * ref
        b = a * rng.uniform(0.55, 1.0)
        rho2 = ellipse_rho2(
            yy, xx, rng.uniform(0, h), rng.uniform(0, w), a, b, rng.uniform(0, math.pi)
        )
        rim = min(0.5, 1.2 / b)
        paint_body(canvas, speckle, rho2, rho2 <= 1.0, rim, muted_colour(rng))

    # objects
    objects = _sample_layout(spec, rng, yy, xx)
    seg = np.zeros((h, w), np.uint8)
    part = np.zeros((h, w), np.uint8)
    for obj in objects:
        colour = muted_colour(rng)
        paint_body(canvas, speckle, obj.rho2, obj.body, obj.rim_frac, colour)
        style = head_style(spec.design, obj.cls, spec.num_classes)
        colour = hsv_colour(
            style.hue + rng.uniform(-4, 4), rng.uniform(0.8, 1.0), rng.uniform(0.8, 1.0)
        )
        hy, hx = obj.head_centre
        theta = math.radians(style.stripe_angle + rng.uniform(-8, 8))
        proj = (xx - hx) * math.cos(theta) + (yy - hy) * math.sin(theta)
        phase = rng.uniform(0, 2 * math.pi)
        stripes = np.sin(2 * math.pi * proj / style.stripe_period + phase) >= 0
        shade = np.where(stripes, 1.0, 0.45).astype(np.float32)
        canvas[obj.head] = shade[obj.head][:, None] * colour
        region = obj.body | obj.head
        seg[region] = obj.cls + 1
        part[obj.body] = 1
        part[obj.head] = 2

    # photometric noise
    canvas *= 255.0 * rng.uniform(*spec.gain)
    canvas += rng.normal(0.0, spec.noise_sigma, canvas.shape).astype(np.float32)
    img = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)

    img_labels = np.zeros(spec.num_classes, np.float32)
    img_labels[[obj.cls for obj in objects]] = 1.0
    if spec.boundary_ignore:
        seg = _mark_boundary(seg)
    return dict(
        img=np.ascontiguousarray(img[..., ::-1]),
        gt_seg_map=seg,
        gt_part_map=part,
        img_labels=img_labels,
    )


def _mark_boundary(seg: np.ndarray, ignore_index: int = 255) -> np.ndarray:
    """Set foreground pixels with a differently labelled 4-neighbour to 255.

    The band is one pixel wide on the object side of object/background edges
    (two pixels where two objects touch); the image border is not a boundary.
    """
    diff = np.zeros(seg.shape, bool)
    vert = seg[1:] != seg[:-1]
    horiz = seg[:, 1:] != seg[:, :-1]
    diff[1:] |= vert
    diff[:-1] |= vert
    diff[:, 1:] |= horiz
    diff[:, :-1] |= horiz
    out = seg.copy()
    out[diff & (seg > 0)] = ignore_index
    return out
