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

A sample is a pure function of ``(spec, seed, index)``: the random generator is
seeded with ``np.random.SeedSequence([seed, index, design_id])``.

Colour order: the returned ``img`` is **BGR** (uint8, ``H x W x 3``), the order
that mmcv/mmseg pipelines assume for images read by ``LoadImageFromFile``.
Use ``img[..., ::-1]`` for RGB.
"""

import colorsys
import dataclasses
import hashlib
import math
import os
import os.path as osp
import tempfile
import zipfile
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

#: bump when the generator's output changes, so on-disk caches are not reused
GENERATOR_VERSION = 1

#: names of the designs and the id mixed into each sample's seed
DESIGN_IDS = {'wsss': 0, 'pretrain': 1}

#: default number of foreground classes per design
DEFAULT_NUM_CLASSES = {'wsss': 6, 'pretrain': 12}

#: keys of a sample and of a cache file
SAMPLE_KEYS = ('img', 'gt_seg_map', 'gt_part_map', 'img_labels')

_HEAD_SHAPES = {
    'wsss': ('disc', 'square', 'triangle'),
    'pretrain': ('ring', 'cross', 'diamond'),
}
_STRIPE_PERIODS = {
    'wsss': (3.0, 4.5, 6.0, 3.5, 5.0, 2.5),
    'pretrain': (2.25, 3.25, 4.25, 5.5),
}
_STRIPE_ANGLES = {
    'wsss': (0.0, 90.0, 45.0, 135.0),
    'pretrain': (22.5, 112.5, 67.5, 157.5),
}


@dataclass(frozen=True)
class HeadStyle:
    """The class-specific look of a head.

    Args:
        shape (str): One of ``disc, square, triangle, ring, cross, diamond``.
        hue (float): Hue in degrees.
        stripe_period (float): Stripe period in pixels.
        stripe_angle (float): Stripe direction in degrees (image frame).
    """

    shape: str
    hue: float
    stripe_period: float
    stripe_angle: float


@dataclass(frozen=True)
class SyntheticSpec:
    """Parameters of the synthetic generator.

    Lengths are in pixels unless they are called ``*_frac`` (a fraction of the
    shorter image side).

    Args:
        img_size (int | tuple[int, int]): Canvas size, an int or ``(h, w)``.
            Sizes 32-96 are the tested range; sides below 32 are rejected.
            Defaults to 64.
        num_classes (int, optional): Number of foreground classes. Defaults to
            None: 6 for ``'wsss'``, 12 for ``'pretrain'``.
        min_objects (int): Fewest objects per image. Defaults to 1.
        max_objects (int): Most objects per image. Defaults to 3.
        design (str): ``'wsss'`` or ``'pretrain'``. Defaults to ``'wsss'``.
        boundary_ignore (bool): Mark a one-pixel boundary inside every object
            with 255 in ``gt_seg_map`` (VOC "void"). Defaults to False.
        body_axis_frac (tuple[float, float]): Range of the body's major
            semi-axis. Defaults to (0.16, 0.24).
        body_scale (tuple[float, float]): Range of an extra body scale.
            Defaults to (0.8, 1.3).
        body_aspect (tuple[float, float]): Range of minor / major semi-axis.
            Defaults to (0.55, 0.9).
        head_radius_ratio (float): Head radius relative to the body's mean
            semi-axis ``sqrt(a * b)``. Defaults to 0.4.
        min_head_radius (float): Smallest head radius. Defaults to 3.5.
        min_head_pixels (int): A layout is rejected when a head has fewer
            visible pixels. Defaults to 12.
        min_head_visible (float): A layout is rejected when a head is less
            visible than this fraction. Defaults to 0.6.
        num_strokes (tuple[int, int]): Inclusive range of clutter strokes.
            Defaults to (2, 5).
        num_decoys (tuple[int, int]): Inclusive range of headless decoy bodies.
            Defaults to (1, 3).
        decoy_axis_frac (tuple[float, float]): Range of a decoy's major
            semi-axis. Defaults to (0.08, 0.16).
        gain (tuple[float, float]): Range of the global photometric gain.
            Defaults to (0.8, 1.2).
        noise_sigma (float): Std of the additive Gaussian noise (0-255 scale).
            Defaults to 8.0.
        max_tries (int): Layout attempts before an object is dropped (never
            below ``min_objects``). Defaults to 200.
    """

    img_size: Union[int, Tuple[int, int]] = 64
    num_classes: Optional[int] = None
    min_objects: int = 1
    max_objects: int = 3
    design: str = 'wsss'
    boundary_ignore: bool = False
    body_axis_frac: Tuple[float, float] = (0.16, 0.24)
    body_scale: Tuple[float, float] = (0.8, 1.3)
    body_aspect: Tuple[float, float] = (0.55, 0.9)
    head_radius_ratio: float = 0.4
    min_head_radius: float = 3.5
    min_head_pixels: int = 12
    min_head_visible: float = 0.6
    num_strokes: Tuple[int, int] = (2, 5)
    num_decoys: Tuple[int, int] = (1, 3)
    decoy_axis_frac: Tuple[float, float] = (0.08, 0.16)
    gain: Tuple[float, float] = (0.8, 1.2)
    noise_sigma: float = 8.0
    max_tries: int = 200

    def __post_init__(self) -> None:
        if self.design not in DESIGN_IDS:
            raise ValueError(
                f'SyntheticSpec.design must be one of {sorted(DESIGN_IDS)}, '
                f'got {self.design!r}'
            )
        size = self.img_size
        if isinstance(size, (int, np.integer)):
            size = (int(size), int(size))
        size = tuple(int(s) for s in size)
        if len(size) != 2 or min(size) < 32:
            raise ValueError(
                'SyntheticSpec.img_size must be an int or (h, w) with sides '
                f'>= 32, got {self.img_size!r}'
            )
        object.__setattr__(self, 'img_size', size)
        num_classes = self.num_classes
        if num_classes is None:
            num_classes = DEFAULT_NUM_CLASSES[self.design]
        if not 1 <= int(num_classes) <= 254:
            raise ValueError(
                f'SyntheticSpec.num_classes must be in [1, 254], got {num_classes}'
            )
        object.__setattr__(self, 'num_classes', int(num_classes))
        if not 1 <= self.min_objects <= self.max_objects:
            raise ValueError(
                'SyntheticSpec needs 1 <= min_objects <= max_objects, got '
                f'min_objects={self.min_objects}, max_objects={self.max_objects}'
            )
        ranges = (
            'body_axis_frac',
            'body_scale',
            'body_aspect',
            'num_strokes',
            'num_decoys',
            'decoy_axis_frac',
            'gain',
        )
        for name in ranges:
            low, high = getattr(self, name)
            if low > high:
                raise ValueError(f'SyntheticSpec.{name} must be (low, high)')
            object.__setattr__(self, name, (low, high))

    @property
    def height(self) -> int:
        """Canvas height in pixels."""
        return self.img_size[0]

    @property
    def width(self) -> int:
        """Canvas width in pixels."""
        return self.img_size[1]

    def cache_key(self) -> str:
        """A short hash of every parameter and of ``GENERATOR_VERSION``."""
        text = repr((GENERATOR_VERSION, dataclasses.astuple(self)))
        return hashlib.sha1(text.encode()).hexdigest()[:12]


def head_style(design: str, class_idx: int, num_classes: int) -> HeadStyle:
    """Look of the heads of foreground class ``class_idx`` (0-based).

    Every class of a design has its own hue, evenly spaced over the colour
    wheel (``'pretrain'`` offsets them by half a step, so with the default 6 /
    12 classes every pretrain hue is >= 15 degrees from every WSSS hue); the
    shape, stripe period and angle cycle through the design's own vocabulary.

    Args:
        design (str): ``'wsss'`` or ``'pretrain'``.
        class_idx (int): Foreground class index in ``[0, num_classes)``.
        num_classes (int): Number of foreground classes.

    Returns:
        HeadStyle: The class's head style.
    """
    if design not in DESIGN_IDS:
        raise ValueError(f'unknown synthetic design {design!r}')
    if not 0 <= class_idx < num_classes:
        raise ValueError(f'class index {class_idx} not in [0, {num_classes})')
    offset = 0.0 if design == 'wsss' else 0.5
    shapes = _HEAD_SHAPES[design]
    periods = _STRIPE_PERIODS[design]
    angles = _STRIPE_ANGLES[design]
    return HeadStyle(
        shape=shapes[class_idx % len(shapes)],
        hue=360.0 * (class_idx + offset) / num_classes,
        stripe_period=periods[class_idx % len(periods)],
        stripe_angle=angles[(class_idx // len(shapes)) % len(angles)],
    )


def class_names(design: str, num_classes: int) -> Tuple[str, ...]:
    """Class names including ``'background'`` at index 0.

    ``'wsss'`` uses the first VOC names (``aeroplane`` ... ``bus``) and then
    ``class_k``; ``'pretrain'`` names classes ``pt_<shape>_<k>``.
    """
    voc = ('aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus')
    names = ['background']
    for k in range(num_classes):
        if design == 'wsss':
            names.append(voc[k] if k < 6 else f'class_{k + 1}')
        else:
            names.append(f'pt_{head_style(design, k, num_classes).shape}_{k + 1}')
    return tuple(names)


def class_palette(design: str, num_classes: int) -> List[List[int]]:
    """Display palette (RGB) with black background and each class's head hue."""
    palette = [[0, 0, 0]]
    for k in range(num_classes):
        hue = head_style(design, k, num_classes).hue
        palette.append([round(255 * c) for c in _hsv(hue, 0.9, 0.95)])
    return palette


# ---------------------------------------------------------------------------
# drawing helpers
# ---------------------------------------------------------------------------


def _hsv(hue_deg: float, sat: float, val: float) -> np.ndarray:
    """RGB in [0, 1] of an HSV colour (hue in degrees)."""
    return np.array(colorsys.hsv_to_rgb((hue_deg / 360.0) % 1.0, sat, val), np.float32)


def _muted_colour(rng: np.random.Generator) -> np.ndarray:
    """A desaturated random colour (bodies, decoys, strokes)."""
    return _hsv(rng.uniform(0, 360), rng.uniform(0.08, 0.4), rng.uniform(0.3, 0.85))


def _value_noise(
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


def _ellipse_rho2(
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


def _segment_dist2(
    yy: np.ndarray, xx: np.ndarray, p0: np.ndarray, p1: np.ndarray
) -> np.ndarray:
    """Squared distance of pixel centres to the segment p0-p1 ((y, x) points)."""
    d = p1 - p0
    length2 = float(d @ d) + 1e-6
    t = np.clip(((yy - p0[0]) * d[0] + (xx - p0[1]) * d[1]) / length2, 0.0, 1.0)
    ey = yy - (p0[0] + t * d[0])
    ex = xx - (p0[1] + t * d[1])
    return ey * ey + ex * ex


def _paint_body(
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


# ---------------------------------------------------------------------------
# layout
# ---------------------------------------------------------------------------


@dataclass
class _Object:
    cls: int
    body: np.ndarray  # bool (H, W)
    rho2: np.ndarray  # float (H, W)
    rim_frac: float
    head: np.ndarray  # bool (H, W)
    head_full: int  # head pixel count without image clipping
    head_centre: Tuple[float, float]
    head_radius: float
    head_angle: float


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
    rho2 = _ellipse_rho2(yy, xx, cy, cx, a, b, ang)
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
        head_radius=r,
        head_angle=head_ang,
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


# ---------------------------------------------------------------------------
# public entry points
# ---------------------------------------------------------------------------


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
    base, tint = _muted_colour(rng), rng.random(3, dtype=np.float32)
    lum, tint_noise = _value_noise(rng, h, w), _value_noise(rng, h, w)
    canvas = base * (0.55 + 0.9 * lum)[..., None]
    canvas += 0.35 * (tint_noise[..., None] - 0.5) * (tint - 0.5)

    # clutter: thin strokes
    for _ in range(int(rng.integers(spec.num_strokes[0], spec.num_strokes[1] + 1))):
        p0 = rng.uniform(-0.1, 1.1, 2) * (h, w)
        p1 = p0 + rng.normal(0, 0.35, 2) * ref
        width = rng.uniform(0.45, 0.9)
        mask = _segment_dist2(yy, xx, p0, p1) <= width * width
        canvas[mask] = _muted_colour(rng)

    # clutter: headless decoy bodies
    for _ in range(int(rng.integers(spec.num_decoys[0], spec.num_decoys[1] + 1))):
        a = rng.uniform(*spec.decoy_axis_frac) * ref
        b = a * rng.uniform(0.55, 1.0)
        rho2 = _ellipse_rho2(
            yy, xx, rng.uniform(0, h), rng.uniform(0, w), a, b, rng.uniform(0, math.pi)
        )
        rim = min(0.5, 1.2 / b)
        _paint_body(canvas, speckle, rho2, rho2 <= 1.0, rim, _muted_colour(rng))

    # objects
    objects = _sample_layout(spec, rng, yy, xx)
    seg = np.zeros((h, w), np.uint8)
    part = np.zeros((h, w), np.uint8)
    for obj in objects:
        colour = _muted_colour(rng)
        _paint_body(canvas, speckle, obj.rho2, obj.body, obj.rim_frac, colour)
        style = head_style(spec.design, obj.cls, spec.num_classes)
        colour = _hsv(
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


def cache_path(cache_dir: str, spec: SyntheticSpec, seed: int, index: int) -> str:
    """Path of the cache file of sample ``(seed, index)`` under ``cache_dir``."""
    folder = osp.join(cache_dir, f'{spec.design}-{spec.cache_key()}')
    return osp.join(folder, f'seed{seed}_{index:06d}.npz')


def load_or_generate(
    spec: SyntheticSpec, seed: int, index: int, cache_dir: Optional[str] = None
) -> Dict[str, np.ndarray]:
    """Read sample ``(seed, index)`` from ``cache_dir`` or generate (and store) it.

    Cache files are ``.npz`` archives written to a temporary file in the same
    folder and moved into place with ``os.replace``, so concurrent workers
    never read half-written files. Unreadable cache files are regenerated.

    Args:
        spec (SyntheticSpec): Generator parameters (part of the cache key).
        seed (int): Split seed.
        index (int): Sample index.
        cache_dir (str, optional): Cache folder; None disables caching.
            Defaults to None.

    Returns:
        dict: The sample, as returned by :func:`generate_sample`.
    """
    if cache_dir is None:
        return generate_sample(spec, seed, index)
    path = cache_path(cache_dir, spec, seed, index)
    if osp.isfile(path):
        try:
            with np.load(path) as archive:
                return {key: archive[key] for key in SAMPLE_KEYS}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            pass  # corrupt or foreign file: regenerate below
    sample = generate_sample(spec, seed, index)
    folder = osp.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, suffix='.tmp')
    try:
        with os.fdopen(fd, 'wb') as f:
            np.savez(f, **sample)
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise
    return sample
