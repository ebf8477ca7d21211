"""Parameters of the synthetic generator and the look of each class.

:class:`SyntheticSpec` holds every generator parameter (its hash keys the
on-disk cache); :func:`head_style` gives the class-specific head of a design's
class, from which :func:`class_names` and :func:`class_palette` derive the
dataset's metainfo. Two designs share bodies and clutter but use disjoint head
vocabularies: ``'wsss'`` (disc / square / triangle heads, hues
``360 * k / C``) and ``'pretrain'`` (ring / cross / diamond heads, hues half-way
between, other stripe periods and angles).
"""

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import List, Optional, Tuple, Union

from acr_plugin.datasets.spec_checks import canvas_size, check_design
from acr_plugin.datasets.synthetic.drawing import hsv_colour

#: bump when the generator's output changes, so on-disk caches are not reused
GENERATOR_VERSION = 1

#: names of the designs and the id mixed into each sample's seed
DESIGN_IDS = {'wsss': 0, 'pretrain': 1}

#: default number of foreground classes per design
DEFAULT_NUM_CLASSES = {'wsss': 6, 'pretrain': 12}

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
        check_design('SyntheticSpec', self.design, DESIGN_IDS)
        size = canvas_size('SyntheticSpec', self.img_size)
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
        palette.append([round(255 * c) for c in hsv_colour(hue, 0.9, 0.95)])
    return palette
