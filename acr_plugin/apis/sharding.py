"""Work split over ``torch.distributed`` ranks for the pseudo-label APIs.

Each rank labels a strided shard of the dataset (``DefaultSampler``'s order
without shuffle, :func:`shard_indices`), loads it in order
(:func:`shard_loader`), agrees with the other ranks on a flag
(:func:`all_ranks_true`) and shows progress on rank 0 only. Without
distribution there is one rank holding everything.
"""

import math
import sys
from typing import List, Optional

import torch
from mmengine.dataset import pseudo_collate
from mmengine.dist import all_reduce, get_dist_info
from mmengine.utils import ProgressBar
from torch.utils.data import DataLoader, Dataset, Subset


def shard_indices(
    num_samples: int, rank: int, world_size: int, pad: bool = False
) -> List[int]:
    """Dataset positions of one rank, strided as ``DefaultSampler`` (no shuffle).

    Args:
        num_samples (int): Dataset length.
        rank (int): This process's rank.
        world_size (int): Number of processes.
        pad (bool): Repeat positions from the start so that every rank gets
            ``ceil(num_samples / world_size)`` (what mmengine's result
            collection expects). Defaults to False (each position exactly
            once over all ranks).

    Returns:
        list[int]: Positions ``rank, rank + world_size, ...``.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f'rank {rank} outside world size {world_size}')
    indices = list(range(num_samples))
    if pad and num_samples:
        total = math.ceil(num_samples / world_size) * world_size
        indices = (indices * (total // num_samples + 1))[:total]
    return indices[rank::world_size]


def shard_loader(
    dataset: Dataset, indices: List[int], batch_size: int, num_workers: int
) -> DataLoader:
    """In-order loader of the dataset positions ``indices`` (``pseudo_collate``)."""
    return DataLoader(
        Subset(dataset, indices),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=pseudo_collate,
    )


def all_ranks_true(flag: bool) -> bool:
    """Logical AND of ``flag`` over ranks (identity without distribution)."""
    value = torch.tensor([int(flag)], dtype=torch.long)
    all_reduce(value, op='min')
    return bool(value.item())


def rank0_progress(total: int, enabled: bool) -> Optional[ProgressBar]:
    """A progress bar over ``total`` samples on rank 0 (None elsewhere / disabled)."""
    rank, _ = get_dist_info()
    if not enabled or rank != 0 or total == 0:
        return None
    return ProgressBar(total, file=sys.stdout)


def finish_progress(bar: Optional[ProgressBar]) -> None:
    """End the line of a :func:`rank0_progress` bar (no-op for None)."""
    if bar is not None:
        bar.file.write('\n')
        bar.file.flush()
