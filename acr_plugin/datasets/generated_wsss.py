"""Base of the datasets that compose every sample from ``(seed, index)``.

:class:`~acr_plugin.datasets.SyntheticWSSSDataset` and
:class:`~acr_plugin.datasets.FashionMNISTWSSSDataset` read no image files: the
data list holds identifiers, and :meth:`GeneratedWSSSDataset.get_data_info`
renders the sample with what mmseg's transforms expect after
``LoadImageFromFile`` + ``LoadAnnotations`` (plus the part map and the image
labels). Subclasses provide :meth:`sample_id` and :meth:`render`.
"""

from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from mmseg.datasets import BaseSegDataset

from acr_plugin.structures import IMG_LABELS, PART_MAP

#: BaseSegDataset arguments about files on disk: accepted and ignored
FILE_LAYOUT_ARGS = (
    'ann_file',
    'data_root',
    'data_prefix',
    'img_suffix',
    'seg_map_suffix',
    'backend_args',
)


class GeneratedWSSSDataset(BaseSegDataset):
    """Samples rendered per ``(seed, index)``; see the module docstring.

    Subclasses call :meth:`check_generated_args` first in ``__init__`` and
    build their ``metainfo`` with :meth:`merge_metainfo`.
    """

    #: data-info key of the sample index within the split
    INDEX_KEY = 'sample_index'

    def check_generated_args(self, kwargs: dict, num_samples: int, seed: int) -> None:
        """Drop the file-layout arguments from ``kwargs`` (nothing to read),
        refuse ``reduce_zero_label`` and negative sizes / seeds, and keep
        ``num_samples`` and ``seed``."""
        name = type(self).__name__
        for key in FILE_LAYOUT_ARGS:
            kwargs.pop(key, None)
        if kwargs.pop('reduce_zero_label', False):
            raise ValueError(
                f'{name}: reduce_zero_label=True is not supported (label 0 is '
                'the background class)'
            )
        if num_samples < 0:
            raise ValueError(f'{name}: num_samples must be >= 0, got {num_samples}')
        if seed < 0:
            raise ValueError(f'{name}: seed must be >= 0, got {seed}')
        self.num_samples = int(num_samples)
        self.seed = int(seed)

    def build_spec(self, spec_type: type, **args) -> Any:
        """``spec_type(**args)``: the generator's parameters.

        Args:
            spec_type (type): The spec dataclass (``SyntheticSpec``,
                ``FashionMNISTSpec``).
            **args: The spec fields the dataset takes as its own arguments.

        Returns:
            The spec.

        Raises:
            ValueError: The spec refused the arguments (its ``TypeError`` or
                ``ValueError``, prefixed with the dataset's name).
        """
        try:
            return spec_type(**args)
        except (TypeError, ValueError) as err:
            raise ValueError(f'{type(self).__name__}: {err}') from err

    def merge_metainfo(
        self, classes: Sequence[str], palette: Sequence, metainfo: Optional[dict]
    ) -> dict:
        """The dataset's ``classes`` / ``palette`` with ``metainfo``'s
        overrides, which must keep the number of classes and one colour each."""
        name = type(self).__name__
        meta = dict(classes=classes, palette=palette)
        meta.update(metainfo or {})
        if len(meta['classes']) != len(classes):
            raise ValueError(
                f'{name}: metainfo["classes"] must hold background + '
                f'{len(classes) - 1} classes, got {len(meta["classes"])}'
            )
        if len(meta['palette']) != len(meta['classes']):
            raise ValueError(
                f'{name}: metainfo["palette"] must have one colour per class '
                f'({len(meta["classes"])}), got {len(meta["palette"])}'
            )
        return meta

    @classmethod
    def get_label_map(cls, new_classes: Optional[Sequence] = None) -> None:
        """No label remapping: the renderer writes the final class ids."""
        return None

    def sample_id(self, index: int) -> str:
        """Identifier of sample ``index`` of this split (used as a path)."""
        raise NotImplementedError

    def render(self, index: int) -> Dict[str, np.ndarray]:
        """Sample ``index`` as numpy arrays: ``img`` (BGR), ``gt_seg_map``,
        ``gt_part_map``, ``img_labels`` (and whatever else the renderer keeps)."""
        raise NotImplementedError

    def seg_map(self, info: dict, sample: Dict[str, np.ndarray]) -> np.ndarray:
        """The ``gt_seg_map`` of a data info: the rendered one (subclasses may
        read another, e.g. pseudo labels, and update ``info``)."""
        return sample['gt_seg_map']

    def load_data_list(self) -> List[dict]:
        """Light data infos (identifiers only); pixels come in get_data_info.

        Returns:
            list[dict]: One dict per sample with ``img_path``,
            ``seg_map_path``, :attr:`INDEX_KEY`, ``label_map``,
            ``reduce_zero_label`` and ``seg_fields``.
        """
        return [
            {
                'img_path': self.sample_id(index),
                'seg_map_path': self.sample_id(index),
                self.INDEX_KEY: index,
                'label_map': self.label_map,
                'reduce_zero_label': False,
                'seg_fields': [],
            }
            for index in range(self.num_samples)
        ]

    def get_data_info(self, idx: int) -> dict:
        """Data info of position ``idx``, with the rendered sample.

        Args:
            idx (int): Position in the dataset (after ``indices``).

        Returns:
            dict: The data info described in the subclass docstring.
        """
        info = super().get_data_info(idx)
        sample = self.render(info[self.INDEX_KEY])
        h, w = sample['gt_seg_map'].shape
        gt_seg_map = self.seg_map(info, sample)
        info.update(
            img=sample['img'],
            gt_seg_map=gt_seg_map,
            img_shape=(h, w),
            ori_shape=(h, w),
            seg_fields=['gt_seg_map', PART_MAP],
        )
        info[PART_MAP] = sample['gt_part_map']
        info[IMG_LABELS] = sample['img_labels']
        return info
