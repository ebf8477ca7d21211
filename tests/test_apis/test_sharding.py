"""Work split over ranks (``acr_plugin.apis.sharding``), single process."""

import pytest
import torch

from acr_plugin.apis import shard_indices
from acr_plugin.apis.sharding import (
    all_ranks_true,
    finish_progress,
    rank0_progress,
    shard_loader,
)


def test_shards_cover_the_dataset():
    for world in (1, 2, 3, 8):
        shards = [shard_indices(7, r, world) for r in range(world)]
        assert sorted(i for s in shards for i in s) == list(range(7))
        padded = [shard_indices(7, r, world, pad=True) for r in range(world)]
        assert len({len(s) for s in padded}) == 1
        assert {i for s in padded for i in s} == set(range(7))
    assert shard_indices(7, 1, 3) == [1, 4]
    assert shard_indices(0, 0, 2, pad=True) == []
    with pytest.raises(ValueError, match='rank'):
        shard_indices(7, 2, 2)


def test_loader_keeps_the_order_and_flags_without_distribution():
    data = [dict(inputs=torch.tensor(i), data_samples=i) for i in range(5)]
    batches = list(shard_loader(data, [4, 0, 2], batch_size=2, num_workers=0))
    assert [b['data_samples'] for b in batches] == [[4, 0], [2]]
    assert all_ranks_true(True) and not all_ranks_true(False)


def test_progress_only_when_enabled(capsys):
    assert rank0_progress(3, enabled=False) is None
    assert rank0_progress(0, enabled=True) is None
    bar = rank0_progress(2, enabled=True)
    bar.update(2)
    finish_progress(bar)
    finish_progress(None)
    assert capsys.readouterr().out.endswith('\n')
