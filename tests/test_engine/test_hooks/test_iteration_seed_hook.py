"""IterationSeedHook (acr_plugin/engine/hooks/iteration_seed_hook.py): the
seeds it derives and the RNG draws it makes repeatable."""

import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch


def test_iteration_seed_hook_reseeds_from_seed_rank_iteration():
    from acr_plugin.engine.hooks.iteration_seed_hook import (
        DATA_STREAM,
        MODEL_STREAM,
        iteration_seed,
        seed_global_rngs,
    )

    seeds = {
        iteration_seed(0, rank, it, stream)
        for rank in range(2)
        for it in range(3)
        for stream in (DATA_STREAM, MODEL_STREAM)
    }
    assert len(seeds) == 12  # all different
    assert iteration_seed(0, 0, 5, DATA_STREAM) == iteration_seed(0, 0, 5, DATA_STREAM)
    draws = []
    for _ in range(2):
        seed_global_rngs(iteration_seed(3, 1, 7, MODEL_STREAM))
        draws.append((np.random.rand(), torch.rand(()).item()))
    assert draws[0] == draws[1]
    with pytest.raises(ValueError, match='non-negative'):
        iteration_seed(0, -1, 0, 0)


def draws():
    return (random.random(), float(np.random.rand()), torch.rand(()).item())


def test_hook_points_repeat_the_draws_of_an_iteration():
    from acr_plugin.engine.hooks.iteration_seed_hook import (
        DATA_STREAM,
        MODEL_STREAM,
        IterationSeedHook,
        iteration_seed,
        seed_global_rngs,
    )

    hook = IterationSeedHook()
    runner = SimpleNamespace(seed=5, rank=0, iter=4)
    hook.before_train_iter(runner, batch_idx=0)
    first = draws()
    torch.rand(10)  # anything drawn in between is forgotten
    hook.before_train_iter(runner, batch_idx=0)
    assert draws() == first
    seed_global_rngs(iteration_seed(5, 0, 4, MODEL_STREAM))
    assert draws() == first
    # before_train and after_val: data stream of this iteration;
    # after_train_iter: data stream of the next one
    hook.before_train(runner)
    data_now = draws()
    hook.after_val(runner)
    assert draws() == data_now
    seed_global_rngs(iteration_seed(5, 0, 4, DATA_STREAM))
    assert draws() == data_now
    hook.after_train_iter(runner, batch_idx=0)
    data_next = draws()
    seed_global_rngs(iteration_seed(5, 0, 5, DATA_STREAM))
    assert draws() == data_next != data_now
    # another rank or a run without a seed (seed 0) draws differently
    hook.before_train_iter(SimpleNamespace(seed=5, rank=1, iter=4), batch_idx=0)
    assert draws() != first
    hook.before_train_iter(SimpleNamespace(seed=None, rank=0, iter=4), batch_idx=0)
    unseeded = draws()
    seed_global_rngs(iteration_seed(0, 0, 4, MODEL_STREAM))
    assert draws() == unseeded
    assert IterationSeedHook.priority == 'LOWEST'
