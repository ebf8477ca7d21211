"""Compose Fashion-MNIST items into weakly-supervised segmentation images.

Each image is a textured canvas (multi-octave value noise in a random muted
colour, a faint woven grating, photometric gain and Gaussian noise) with 1-3
real Fashion-MNIST items (Xiao et al., 2017, arXiv:1708.07747) pasted on it:

- an item is its 28x28 grey image rescaled (bilinear) to ``item_size`` pixels,
  optionally colourised with a random, class-agnostic colour;
- its silhouette is the rescaled grey image above ``silhouette_thr``: only
  silhouette pixels are pasted, so the mask is exactly what is drawn (dark
  enclosed regions such as bag handles or sandal gaps stay background);
- later items occlude earlier ones; a layout is rejected unless every item
  keeps ``min_visible`` of its silhouette (and ``min_item_pixels``), so every
  image-level tag is honest.

Two designs: ``'wsss'`` (1-3 items of 24-48 px, the benchmark) and
``'pretrain'`` (one item of 32-56 px, classification pretraining standing in
for ImageNet). A sample is a pure function of ``(spec, split, seed, index)``
and the IDX files: its random generator is seeded with
``np.random.SeedSequence([seed, index, design_id, split_id])``.

The returned ``img`` is **BGR** (uint8, ``H x W x 3``), the order mmcv/mmseg
pipelines assume for images read from files.
"""

import colorsys
import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image

from acr_plugin.datasets.fashion_mnist.idx import (
    CLASS_NAMES,
    NUM_CLASSES,
    SPLIT_RESIDUES,
    ItemPool,
)
from acr_plugin.datasets.spec_checks import canvas_size, check_design
from acr_plugin.datasets.synthetic.drawing import hsv_colour, value_noise

#: names of the designs and the id mixed into each sample's seed
DESIGN_IDS = {'wsss': 0, 'pretrain': 1}
#: id of each split mixed into each sample's seed
SPLIT_IDS = {name: i for i, name in enumerate(sorted(SPLIT_RESIDUES))}
#: default (fewest, most) items per image of each design
DEFAULT_OBJECTS = {'wsss': (1, 3), 'pretrain': (1, 1)}
#: default (smallest, largest) rescaled item side in pixels of each design
DEFAULT_ITEM_SIZE = {'wsss': (24, 48), 'pretrain': (32, 56)}
#: times a whole set of items is redrawn before giving up
_MAX_REDRAWS = 20


@dataclass(frozen=True)
class FashionMNISTSpec:
    """Parameters of the Fashion-MNIST composer.

    Args:
        img_size (int | tuple[int, int]): Canvas size, an int or ``(h, w)``,
            sides >= 32. Defaults to 64.
        design (str): ``'wsss'`` or ``'pretrain'``. Defaults to ``'wsss'``.
        min_objects (int, optional): Fewest items per image. Defaults to None:
            1.
        max_objects (int, optional): Most items per image. Defaults to None:
            3 for ``'wsss'``, 1 for ``'pretrain'``.
        item_size (tuple[int, int], optional): Inclusive range of the rescaled
            item side (the 28x28 frame, not the silhouette). Defaults to None:
            (24, 48) for ``'wsss'``, (32, 56) for ``'pretrain'``.
        colourise (bool): Tint every item with a random colour (random hue,
            saturation 0.2-0.9); otherwise items stay grey. Defaults to True.
        silhouette_thr (int): Grey value (0-255) above which a rescaled item
            pixel belongs to the item. Defaults to 16.
        min_visible (float): A layout is rejected when an item keeps less than
            this fraction of its silhouette visible. Defaults to 0.6.
        min_item_pixels (int): ... or fewer visible pixels. Defaults to 30.
        gain (tuple[float, float]): Range of the global photometric gain.
            Defaults to (0.8, 1.2).
        noise_sigma (float): Std of the additive Gaussian noise (0-255 scale).
            Defaults to 6.0.
        max_tries (int): Layout attempts before the last item is dropped
            (never below ``min_objects``; at ``min_objects`` the items are
            redrawn). Defaults to 100.
    """

    img_size: Union[int, Tuple[int, int]] = 64
    design: str = 'wsss'
    min_objects: Optional[int] = None
    max_objects: Optional[int] = None
    item_size: Optional[Tuple[int, int]] = None
    colourise: bool = True
    silhouette_thr: int = 16
    min_visible: float = 0.6
    min_item_pixels: int = 30
    gain: Tuple[float, float] = (0.8, 1.2)
    noise_sigma: float = 6.0
    max_tries: int = 100

    def __post_init__(self) -> None:
        check_design('FashionMNISTSpec', self.design, DESIGN_IDS)
        size = canvas_size('FashionMNISTSpec', self.img_size)
        object.__setattr__(self, 'img_size', size)
        low, high = DEFAULT_OBJECTS[self.design]
        low = low if self.min_objects is None else int(self.min_objects)
        high = high if self.max_objects is None else int(self.max_objects)
        if not 1 <= low <= high:
            raise ValueError(
                'FashionMNISTSpec needs 1 <= min_objects <= max_objects, got '
                f'min_objects={low}, max_objects={high}'
            )
        object.__setattr__(self, 'min_objects', low)
        object.__setattr__(self, 'max_objects', high)
        item = self.item_size or DEFAULT_ITEM_SIZE[self.design]
        item = tuple(int(s) for s in item)
        if len(item) != 2 or not 8 <= item[0] <= item[1] <= min(size):
            raise ValueError(
                'FashionMNISTSpec.item_size must be (low, high) with 8 <= low <= '
                f'high <= the shorter image side {min(size)}, got {self.item_size!r}'
            )
        object.__setattr__(self, 'item_size', item)
        if not 0 <= self.silhouette_thr < 255:
            raise ValueError(
                'FashionMNISTSpec.silhouette_thr must be in [0, 255), got '
                f'{self.silhouette_thr}'
            )
        if not 0.0 < self.min_visible <= 1.0:
            raise ValueError(
                'FashionMNISTSpec.min_visible must be in (0, 1], got '
                f'{self.min_visible}'
            )
        low, high = self.gain
        if low > high:
            raise ValueError('FashionMNISTSpec.gain must be (low, high)')
        object.__setattr__(self, 'gain', (float(low), float(high)))


def class_names() -> Tuple[str, ...]:
    """Segmentation class names: ``'background'`` then Fashion-MNIST's ten."""
    return ('background',) + CLASS_NAMES


def class_palette() -> List[List[int]]:
    """Display palette (RGB): black background, ten evenly spaced hues."""
    palette = [[0, 0, 0]]
    for k in range(NUM_CLASSES):
        rgb = colorsys.hsv_to_rgb(k / NUM_CLASSES, 0.85, 0.95)
        palette.append([round(255 * c) for c in rgb])
    return palette


# ---------------------------------------------------------------------------
# drawing helpers
# ---------------------------------------------------------------------------


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Textured RGB canvas in about [0, 1]: tinted value noise + a faint weave."""
    base = hsv_colour(
        rng.uniform(0, 360), rng.uniform(0.05, 0.5), rng.uniform(0.25, 0.8)
    )
    lum = value_noise(rng, h, w, (2, 4, 8))
    tint = rng.uniform(-0.2, 0.2, 3).astype(np.float32)
    tint_map = value_noise(rng, h, w, (3,))
    yy = np.arange(h, dtype=np.float32)[:, None]
    xx = np.arange(w, dtype=np.float32)[None, :]
    theta = rng.uniform(0, math.pi)
    period = rng.uniform(3.0, 8.0)
    weave = rng.uniform(0.0, 0.12) * np.sin(
        2 * math.pi * (xx * math.cos(theta) + yy * math.sin(theta)) / period
        + rng.uniform(0, 2 * math.pi)
    )
    shade = 0.6 + 0.8 * (lum - 0.5) + weave
    return base * shade[..., None] + tint * (tint_map[..., None] - 0.5)


@dataclass
class _Placed:
    position: int  # position of the item in its source file
    cls: int  # Fashion-MNIST label 0..9
    grey: np.ndarray  # (s, s) float32 rescaled grey image
    mask: np.ndarray  # (H, W) bool silhouette on the canvas
    top: int
    left: int


def _rescale(grey: np.ndarray, size: int) -> np.ndarray:
    """Bilinear rescale of a grey item to ``size x size`` (float32, 0-255)."""
    image = Image.fromarray(grey).resize((size, size), Image.BILINEAR)
    return np.asarray(image, dtype=np.float32)


def _place(
    spec: FashionMNISTSpec, rng: np.random.Generator, pool: ItemPool, position: int
) -> _Placed:
    """Rescale item ``position`` and put it at a random place on the canvas."""
    h, w = spec.img_size
    size = int(rng.integers(spec.item_size[0], spec.item_size[1] + 1))
    grey = _rescale(pool.images[position], size)
    top = int(rng.integers(0, h - size + 1))
    left = int(rng.integers(0, w - size + 1))
    mask = np.zeros((h, w), bool)
    mask[top : top + size, left : left + size] = grey > spec.silhouette_thr
    return _Placed(position, int(pool.labels[position]), grey, mask, top, left)


def _layout_ok(spec: FashionMNISTSpec, items: Sequence[_Placed]) -> bool:
    """Every item keeps enough of its silhouette after later items occlude it."""
    occluder = np.zeros(items[0].mask.shape, bool)
    for item in reversed(items):
        full = int(np.count_nonzero(item.mask))
        visible = int(np.count_nonzero(item.mask & ~occluder))
        if visible < spec.min_item_pixels or visible < spec.min_visible * full:
            return False
        occluder |= item.mask
    return True


def _sample_layout(
    spec: FashionMNISTSpec, rng: np.random.Generator, pool: ItemPool
) -> List[_Placed]:
    """Draw items from the pool and a layout in which every tag is honest."""
    num = int(rng.integers(spec.min_objects, spec.max_objects + 1))
    for _ in range(_MAX_REDRAWS):
        picks = [int(p) for p in pool.positions[rng.integers(0, len(pool), num)]]
        while True:
            for _ in range(spec.max_tries):
                items = [_place(spec, rng, pool, p) for p in picks]
                if _layout_ok(spec, items):
                    return items
            if len(picks) <= spec.min_objects:
                break  # e.g. an item too faint at this size: draw new items
            picks.pop()
    raise RuntimeError(
        f'Fashion-MNIST composer: no valid layout of {num} item(s) of split '
        f'{pool.split!r} in {_MAX_REDRAWS} draws of {spec.max_tries} tries '
        f'for {spec}'
    )


# ---------------------------------------------------------------------------
# public entry points
# ---------------------------------------------------------------------------


def sample_rng(
    spec: FashionMNISTSpec, split: str, seed: int, index: int
) -> np.random.Generator:
    """The random generator of sample ``(split, seed, index)``."""
    if seed < 0 or index < 0:
        raise ValueError(f'seed and index must be >= 0, got {seed}, {index}')
    entropy = [int(seed), int(index), DESIGN_IDS[spec.design], SPLIT_IDS[split]]
    return np.random.default_rng(np.random.SeedSequence(entropy))


def compose_sample(
    spec: FashionMNISTSpec, pool: ItemPool, seed: int, index: int
) -> Dict[str, np.ndarray]:
    """Compose sample ``index`` of split ``pool.split`` with seed ``seed``.

    Args:
        spec (FashionMNISTSpec): Composer parameters.
        pool (ItemPool): The split's items (see :func:`load_item_pool`).
        seed (int): Seed of the split's samples (>= 0).
        index (int): Sample index (>= 0).

    Returns:
        dict: ``img`` (``H x W x 3`` uint8, **BGR**); ``gt_seg_map``
        (``H x W`` uint8: 0 background, ``1..10`` Fashion-MNIST label + 1);
        ``gt_part_map`` (``H x W`` uint8: 0 background, 1 item; Fashion-MNIST
        has no part annotation, so every item pixel is "body");
        ``img_labels`` (``(10,)`` float32 multi-hot, class ``k`` at ``k - 1``);
        ``gt_instance_map`` (``H x W`` uint8: 0 background, ``i`` the i-th
        pasted item, 1-based); ``item_positions`` and ``item_classes``
        (``(n,)`` int64: each item's position in its source file and its
        Fashion-MNIST label, in pasting order).
    """
    rng = sample_rng(spec, pool.split, seed, index)
    h, w = spec.img_size
    canvas = _background(rng, h, w)
    items = _sample_layout(spec, rng, pool)
    seg = np.zeros((h, w), np.uint8)
    instance = np.zeros((h, w), np.uint8)
    for number, item in enumerate(items, 1):
        if spec.colourise:
            colour = hsv_colour(
                rng.uniform(0, 360), rng.uniform(0.2, 0.9), rng.uniform(0.75, 1.0)
            )
        else:
            colour = np.full(3, rng.uniform(0.8, 1.0), np.float32)
        size = item.grey.shape[0]
        window = (
            slice(item.top, item.top + size),
            slice(item.left, item.left + size),
        )
        local = item.mask[window]
        shade = 0.15 + 0.85 * item.grey / 255.0
        canvas[window][local] = shade[local][:, None] * colour
        seg[item.mask] = item.cls + 1
        instance[item.mask] = number

    canvas *= 255.0 * rng.uniform(*spec.gain)
    canvas += rng.normal(0.0, spec.noise_sigma, canvas.shape).astype(np.float32)
    img = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)

    img_labels = np.zeros(NUM_CLASSES, np.float32)
    img_labels[[item.cls for item in items]] = 1.0
    return dict(
        img=np.ascontiguousarray(img[..., ::-1]),
        gt_seg_map=seg,
        gt_part_map=(seg > 0).astype(np.uint8),
        img_labels=img_labels,
        gt_instance_map=instance,
        item_positions=np.array([item.position for item in items], np.int64),
        item_classes=np.array([item.cls for item in items], np.int64),
    )
