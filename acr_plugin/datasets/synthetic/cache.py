"""On-disk cache of synthetic samples: one ``.npz`` archive per sample.

Files live under ``<cache_dir>/<design>-<spec hash>/seed<seed>_<index>.npz``
(the hash covers every :class:`~.spec.SyntheticSpec` parameter and
``GENERATOR_VERSION``), are written atomically and regenerated when unreadable.
"""

import os
import os.path as osp
import tempfile
import zipfile
from typing import Dict, Optional

import numpy as np

from acr_plugin.datasets.synthetic.generator import generate_sample
from acr_plugin.datasets.synthetic.spec import SyntheticSpec

#: keys of a sample and of a cache file
SAMPLE_KEYS = ('img', 'gt_seg_map', 'gt_part_map', 'img_labels')


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
