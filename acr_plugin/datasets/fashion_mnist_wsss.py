"""Fashion-MNIST items composed into a WSSS benchmark, as an mmseg dataset."""

from typing import Dict, Optional, Sequence, Tuple, Union

import numpy as np
from mmseg.registry import DATASETS

from acr_plugin.datasets.fashion_mnist.composer import (
    FashionMNISTSpec,
    class_names,
    class_palette,
    compose_sample,
)
from acr_plugin.datasets.fashion_mnist.idx import DEFAULT_ROOT, ItemPool, load_item_pool
from acr_plugin.datasets.generated_wsss import GeneratedWSSSDataset


@DATASETS.register_module()
class FashionMNISTWSSSDataset(GeneratedWSSSDataset):
    """Real Fashion-MNIST items on textured canvases, composed per ``(seed, index)``.

    Every image holds 1-3 rescaled, optionally colourised items of
    Fashion-MNIST (Xiao et al., 2017, arXiv:1708.07747: 70,000 28x28 grey
    product photos of 10 classes, MIT licence) on a textured background; the
    mask of an item is its thresholded grey image (see
    :mod:`acr_plugin.datasets.fashion_mnist.composer`). The splits draw their
    items from disjoint pools: ``'train'``, ``'val'`` and ``'pretrain'`` from
    Fashion-MNIST's training file, ``'test'`` from its test file (see
    :mod:`acr_plugin.datasets.fashion_mnist.idx`).

    Like :class:`SyntheticWSSSDataset`, the data list holds identifiers only
    and :meth:`get_data_info` composes the sample, so pipelines start directly
    with geometric transforms. A data info holds:

    - ``img``: ``H x W x 3`` uint8 in **BGR** order (as mmcv loads images).
    - ``gt_seg_map``: ``H x W`` uint8, 0 background, ``1..10`` the
      Fashion-MNIST label + 1 (``metainfo['classes']``).
    - ``gt_part_map``: ``H x W`` uint8, 0 background, 1 item. Fashion-MNIST
      has no part annotation: ``CAMMetric``'s ``body_*`` keys are then the
      recall of whole items (its ``head_*`` keys are NaN).
    - ``img_labels``: ``(10,)`` float32 multi-hot.
    - ``img_path`` / ``seg_map_path``: identifiers such as
      ``'fashion-mnist://wsss/train/seed0/000012'``; ``img_shape``,
      ``ori_shape``, ``seg_fields=['gt_seg_map', 'gt_part_map']``,
      ``reduce_zero_label``, ``label_map`` and ``sample_idx``.

    Build pipelines under ``default_scope='mmseg'`` (mmseg's ``RandomFlip``
    moves ``gt_part_map`` with the mask; mmcv's does not).

    Args:
        split (str): Item pool: ``'train'``, ``'val'``, ``'test'`` or
            ``'pretrain'``. Defaults to ``'train'``.
        num_samples (int): Number of composed images. Defaults to 1000.
        seed (int): Seed of the compositions (>= 0). Defaults to 0.
        img_size (int | tuple[int, int]): Canvas size. Defaults to 64.
        design (str): ``'wsss'`` (1-3 items of 24-48 px) or ``'pretrain'``
            (one item of 32-56 px, for classification pretraining). Defaults
            to ``'wsss'``.
        colourise (bool): Tint items with random colours. Defaults to True.
        data_root (str): Folder of the four IDX files (``.gz`` or raw).
            Defaults to ``/usr/share/datasets/fashion-mnist``, where
            ``apt-get install dataset-fashion-mnist`` puts them.
        cache_dir (str, optional): Accepted for the synthetic dataset's
            interface (benchmark scripts set it) and ignored: composing a
            64x64 sample takes about 3 ms. Defaults to None.
        metainfo (dict, optional): Overrides of the class names / palette
            (11 entries, background first). Defaults to None.
        pipeline (list): Processing pipeline. Defaults to [].
        **kwargs: Other :class:`mmengine.dataset.BaseDataset` arguments
            (``indices``, ``serialize_data``, ``test_mode``, ``lazy_init``,
            ``max_refetch``, ``filter_cfg``), plus ``ignore_index``. File
            layout arguments (``ann_file``, ``data_prefix``, suffixes,
            ``backend_args``) are accepted and ignored.
    """

    METAINFO = dict(classes=class_names(), palette=class_palette())

    def __init__(
        self,
        split: str = 'train',
        num_samples: int = 1000,
        seed: int = 0,
        img_size: Union[int, Tuple[int, int]] = 64,
        design: str = 'wsss',
        colourise: bool = True,
        data_root: str = DEFAULT_ROOT,
        cache_dir: Optional[str] = None,
        metainfo: Optional[dict] = None,
        pipeline: Sequence[Union[dict, object]] = (),
        **kwargs,
    ) -> None:
        name = type(self).__name__
        self.check_generated_args(kwargs, num_samples, seed)
        self.spec = self.build_spec(
            FashionMNISTSpec,
            img_size=img_size,
            design=design,
            colourise=colourise,
        )
        try:
            # read (once per process) now, so missing files fail at build time
            self.pool: ItemPool = load_item_pool(data_root, split)
        except FileNotFoundError as err:
            raise FileNotFoundError(f'{name}: {err}') from err
        self.split = split
        del cache_dir  # nothing to cache
        meta = self.merge_metainfo(class_names(), class_palette(), metainfo)
        super().__init__(metainfo=meta, pipeline=list(pipeline), **kwargs)

    def sample_id(self, index: int) -> str:
        """Identifier of sample ``index`` of this split (used as a path)."""
        return (
            f'fashion-mnist://{self.spec.design}/{self.split}/seed{self.seed}/'
            f'{index:06d}'
        )

    def render(self, index: int) -> Dict[str, np.ndarray]:
        """Sample ``index`` of the split as numpy arrays.

        Args:
            index (int): Sample index within the split (not the position).

        Returns:
            dict: What :func:`compose_sample` returns: ``img`` (BGR),
            ``gt_seg_map``, ``gt_part_map``, ``img_labels``,
            ``gt_instance_map``, ``item_positions``, ``item_classes``.
        """
        return compose_sample(self.spec, self.pool, self.seed, index)
