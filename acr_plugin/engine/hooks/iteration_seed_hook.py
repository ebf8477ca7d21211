"""Reseed the global RNGs per iteration so that resumed runs are exact."""

import random
from typing import Optional

import numpy as np
import torch
from mmengine.hooks import Hook
from mmseg.registry import HOOKS

#: stream ids mixed into the seed (data loading vs. the training step)
DATA_STREAM = 0
MODEL_STREAM = 1


def iteration_seed(seed: int, rank: int, iteration: int, stream: int) -> int:
    """A 32-bit seed derived from the run seed, rank, iteration and stream.

    ``numpy.random.SeedSequence`` mixes the four integers, so neighbouring
    iterations, ranks or streams get unrelated seeds.

    Args:
        seed (int): The run's seed (``runner.seed``).
        rank (int): Process rank.
        iteration (int): 0-based index of the iteration the numbers are for.
        stream (int): :data:`DATA_STREAM` or :data:`MODEL_STREAM`.

    Returns:
        int: A seed in ``[0, 2**32)``.
    """
    keys = [int(seed) % 2**32, int(rank), int(iteration), int(stream)]
    if min(keys) < 0:
        raise ValueError(f'iteration_seed needs non-negative keys, got {keys}')
    return int(np.random.SeedSequence(keys).generate_state(1)[0])


def seed_global_rngs(seed: int) -> None:
    """Seed Python's ``random``, numpy's global RNG and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@HOOKS.register_module()
class IterationSeedHook(Hook):
    """Make every iteration's random numbers a function of (seed, iteration).

    mmengine restores weights, optimiser, schedulers and the iteration on
    ``--resume`` but not the global random states, and the data loader is
    fast-forwarded without running the pipeline. Without this hook a resumed
    run therefore draws different augmentations (mmcv transforms use numpy's
    global RNG) and different random views (``ACRSegmentor`` rescale/crop
    views use torch's) from an uninterrupted one.

    The hook reseeds Python ``random``, numpy and torch from
    ``(runner.seed, rank, iteration, stream)`` at points that both runs pass
    through identically:

    * the *data* stream, before the batch of iteration ``i`` is fetched:
      in ``before_train`` (``i`` = the resumed iteration, 0 for a new run),
      ``after_train_iter`` (``i`` = the next iteration) and ``after_val``
      (a validation inside training must not shift the next batch);
    * the *model* stream, in ``before_train_iter`` of iteration ``i``, right
      before ``train_step`` (dropout, drop-path, random views).

    With the lowest priority it runs after every other hook at these points.
    Ranks get different seeds, so augmentations differ across processes.

    Exactness holds when the data pipeline runs in the main process
    (``num_workers=0``). Dataloader workers seed themselves when they start
    (mmengine's ``worker_init_fn``: ``seed + worker id + rank``), so with
    ``num_workers > 0`` the model's randomness still resumes exactly but the
    augmentations drawn inside the workers do not.

    Enabled by default in ``configs/_base_/default_runtime.py``
    (``default_hooks.iteration_seed``).
    """

    priority = 'LOWEST'

    @staticmethod
    def _reseed(runner, iteration: int, stream: int) -> None:
        seed = runner.seed if runner.seed is not None else 0
        seed_global_rngs(iteration_seed(seed, runner.rank, iteration, stream))

    def before_train(self, runner) -> None:
        """Data stream of the first iteration (after any resume)."""
        self._reseed(runner, runner.iter, DATA_STREAM)

    def before_train_iter(
        self, runner, batch_idx: int, data_batch: Optional[dict] = None
    ) -> None:
        """Model stream of the current iteration (``runner.iter``)."""
        self._reseed(runner, runner.iter, MODEL_STREAM)

    def after_train_iter(
        self,
        runner,
        batch_idx: int,
        data_batch: Optional[dict] = None,
        outputs: Optional[dict] = None,
    ) -> None:
        """Data stream of the next iteration."""
        # the loops count runner.iter up after this hook
        self._reseed(runner, runner.iter + 1, DATA_STREAM)

    def after_val(self, runner) -> None:
        """Undo what a validation inside training drew from the data stream."""
        self._reseed(runner, runner.iter, DATA_STREAM)
