"""The embedded synthetic WSSS benchmark as an mmseg dataset."""

import os.path as osp
from typing import Dict, Optional, Sequence, Tuple, Union

import numpy as np
from mmseg.registry import DATASETS
from PIL import Image

from acr_plugin.datasets.generated_wsss import GeneratedWSSSDataset
from acr_plugin.datasets.synthetic.cache import load_or_generate
from acr_plugin.datasets.synthetic.spec import (
    SyntheticSpec,
    class_names,
    class_palette,
)


@DATASETS.register_module()
class SyntheticWSSSDataset(GeneratedWSSSDataset):
    """Procedural body + head images, generated lazily per ``(seed, index)``.

    Each object is a class-agnostic body plus a small class-specific head, so
    classifiers only need the head and plain CAMs show partial activation (see
    ``docs/synthetic-data.md``). Nothing is read from disk: the data list holds
    only identifiers, and :meth:`get_data_info` renders the sample (or reads it
    from ``cache_dir``). Every data info already holds what mmseg transforms
    expect after ``LoadImageFromFile`` + ``LoadAnnotations``, so pipelines
    start directly with geometric transforms:

    - ``img``: ``H x W x 3`` uint8 in **BGR** order (as mmcv loads images).
    - ``gt_seg_map``: ``H x W`` uint8, 0 background, ``1..C`` classes.
    - ``gt_part_map``: ``H x W`` uint8, 0 background, 1 body, 2 head.
    - ``img_labels``: ``(C,)`` float32 multi-hot over the foreground classes.
    - ``img_path`` / ``seg_map_path``: identifiers such as
      ``'synthetic://wsss/seed0/000012'``; ``img_shape``, ``ori_shape``,
      ``seg_fields=['gt_seg_map', 'gt_part_map']``, ``reduce_zero_label``,
      ``label_map`` and ``sample_idx``.

    ``gt_part_map`` is listed in ``seg_fields``, so mmseg's ``RandomFlip``,
    ``Resize``, ``RandomResize`` and ``RandomCrop`` move it (nearest) with the
    mask. They must be mmseg's versions: build pipelines under
    ``default_scope='mmseg'`` (mmcv's ``RandomFlip``/``Resize`` only touch
    ``gt_seg_map``).

    ``indices`` selects samples of the split by their index, so a subset keeps
    the samples' identities. Class remapping through ``metainfo`` is not
    supported (``label_map`` is always None); ``metainfo`` may rename classes
    or change the palette if it keeps ``num_classes + 1`` classes.

    Args:
        num_samples (int): Number of samples in the split. Defaults to 1000.
        seed (int): Split seed (>= 0); train/val/test use different seeds.
            Defaults to 0.
        img_size (int | tuple[int, int]): Image size, int or ``(h, w)``
            (32-96 tested). Defaults to 64.
        num_classes (int, optional): Foreground classes. Defaults to None:
            6 for ``design='wsss'``, 12 for ``design='pretrain'``.
        design (str): ``'wsss'`` (the benchmark) or ``'pretrain'`` (other head
            shapes, hues and stripes, for synthetic classification
            pretraining). Defaults to ``'wsss'``.
        cache_dir (str, optional): Folder of an on-disk ``.npz`` cache (keyed
            by every generator parameter, written atomically). Defaults to
            None (no cache).
        metainfo (dict, optional): Overrides of the class names / palette.
            Defaults to None.
        pseudo_label_dir (str, optional): Folder of pseudo labels (second
            stage): ``gt_seg_map`` is then read from ``<dir>/<index:06d>.png``
            (single-channel or palette PNGs, as written by
            ``tools/generate_pseudo_labels.py``) instead of the generator's
            ground truth; ``gt_part_map`` and ``img_labels`` stay real.
            Defaults to None.
        pipeline (list): Processing pipeline. Defaults to [].
        **kwargs: Other :class:`mmengine.dataset.BaseDataset` arguments
            (``indices``, ``serialize_data``, ``test_mode``, ``lazy_init``,
            ``max_refetch``, ``filter_cfg``), plus ``ignore_index``. File
            layout arguments (``ann_file``, ``data_root``, ``data_prefix``,
            suffixes, ``backend_args``) are accepted and ignored.
    """

    METAINFO = dict(
        classes=class_names('wsss', 6),
        palette=class_palette('wsss', 6),
    )

    def __init__(
        self,
        num_samples: int = 1000,
        seed: int = 0,
        img_size: Union[int, Tuple[int, int]] = 64,
        num_classes: Optional[int] = None,
        design: str = 'wsss',
        cache_dir: Optional[str] = None,
        metainfo: Optional[dict] = None,
        pipeline: Sequence[Union[dict, object]] = (),
        pseudo_label_dir: Optional[str] = None,
        **kwargs,
    ) -> None:
        self.check_generated_args(kwargs, num_samples, seed)
        self.spec = self.build_spec(
            SyntheticSpec, img_size=img_size, num_classes=num_classes, design=design
        )
        self.cache_dir = cache_dir
        self.pseudo_label_dir = pseudo_label_dir
        meta = self.merge_metainfo(
            class_names(self.spec.design, self.spec.num_classes),
            class_palette(self.spec.design, self.spec.num_classes),
            metainfo,
        )
        super().__init__(metainfo=meta, pipeline=list(pipeline), **kwargs)

    def sample_id(self, index: int) -> str:
        """Identifier of sample ``index`` of this split (used as a path)."""
        return f'synthetic://{self.spec.design}/seed{self.seed}/{index:06d}'

    #: data-info key of the sample index (kept from before the base class)
    INDEX_KEY = 'synthetic_index'

    def seg_map(self, info: dict, sample: Dict[str, np.ndarray]) -> np.ndarray:
        """The rendered mask, or with ``pseudo_label_dir`` the pseudo label
        of the sample (``info['seg_map_path']`` then names its file)."""
        if self.pseudo_label_dir is None:
            return sample['gt_seg_map']
        path = self.pseudo_label_path(info[self.INDEX_KEY])
        info['seg_map_path'] = path
        return read_label_map(path, sample['gt_seg_map'].shape)

    def pseudo_label_path(self, index: int) -> str:
        """Pseudo-label file of sample ``index`` (``<dir>/<index:06d>.png``)."""
        return osp.join(self.pseudo_label_dir, f'{index:06d}.png')

    def render(self, index: int) -> Dict[str, np.ndarray]:
        """Sample ``index`` of the split as numpy arrays (cached if enabled).

        Args:
            index (int): Sample index within the split (not the position).

        Returns:
            dict: ``img`` (BGR), ``gt_seg_map``, ``gt_part_map``, ``img_labels``.
        """
        return load_or_generate(self.spec, self.seed, index, self.cache_dir)


def read_label_map(path: str, shape: Tuple[int, int]) -> np.ndarray:
    """Read a single-channel or palette label PNG as an ``(H, W)`` uint8 map.

    Args:
        path (str): The PNG file.
        shape (tuple[int, int]): Expected ``(H, W)``.

    Returns:
        np.ndarray: The label indices (palette indices for palette PNGs).
    """
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'SyntheticWSSSDataset: pseudo label {path} does not exist '
            '(generate it with tools/generate_pseudo_labels.py)'
        )
    with Image.open(path) as image:
        if image.mode not in ('P', 'L'):
            raise ValueError(
                f'SyntheticWSSSDataset: pseudo label {path} must be a palette '
                f'or single-channel PNG, got mode {image.mode}'
            )
        label = np.array(image, dtype=np.uint8)
    if label.shape != tuple(shape):
        raise ValueError(
            f'SyntheticWSSSDataset: pseudo label {path} has shape {label.shape}, '
            f'the image is {tuple(shape)}'
        )
    return label
