"""Helpers to run shipped synthetic configs for a few iterations in tests."""

import os
import socket
import subprocess
import sys
from typing import Dict, List, Optional, Sequence

from mmengine.config import Config

from tests.scripts import ROOT


def tiny_synthetic_cfg(
    path: str, work_dir: str, iters: int = 2, num_train: int = 16, num_val: int = 8
) -> Config:
    """Load a synthetic config and shrink data and schedule for a smoke run."""
    cfg = Config.fromfile(path)
    cfg.work_dir = work_dir
    for key, num in (
        ('train_dataloader', num_train),
        ('val_dataloader', num_val),
        ('test_dataloader', num_val),
    ):
        loader = cfg[key]
        loader.num_workers = 0
        loader.persistent_workers = False
        loader.batch_size = min(loader.batch_size, 8)
        loader.dataset.num_samples = num
    cfg.train_cfg.max_iters = iters
    cfg.train_cfg.val_interval = iters
    for sched in cfg.param_scheduler:
        if sched.get('type') == 'OneCycleLR':
            sched.total_steps = iters
    cfg.default_hooks.checkpoint.interval = iters
    cfg.default_hooks.logger.interval = 1
    cfg.log_level = 'WARNING'
    return cfg


def dist_smoke_options(
    iters: int, num_train: int = 16, batch_size: int = 4, num_val: int = 4
) -> List[str]:
    """``--cfg-options`` that shrink a synthetic config for a run of the
    launch scripts (``tools/dist_*.sh``, ``tools/slurm_*.sh``): ``num_train``
    training samples, ``batch_size`` per process, no random flips (the data
    do not depend on per-rank RNG streams), ``iters`` iterations with one
    validation and one checkpoint at the end, INFO logs (the runtime
    environment: launcher, world size)."""
    return [
        f'train_dataloader.dataset.num_samples={num_train}',
        f'train_dataloader.batch_size={batch_size}',
        'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False',
        'train_dataloader.dataset.pipeline.0.prob=0.0',  # no random flips
        f'val_dataloader.dataset.num_samples={num_val}',
        'val_dataloader.num_workers=0',
        'val_dataloader.persistent_workers=False',
        f'test_dataloader.dataset.num_samples={num_val}',
        'test_dataloader.num_workers=0',
        'test_dataloader.persistent_workers=False',
        f'train_cfg.max_iters={iters}',
        f'train_cfg.val_interval={iters}',
        f'param_scheduler.0.total_steps={iters}',
        f'default_hooks.checkpoint.interval={iters}',
        'log_level=INFO',
    ]


def free_port() -> int:
    """A TCP port that was free a moment ago (for ``MASTER_PORT``)."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def run_launch_script(
    args: Sequence[str],
    options: Sequence[str],
    port_env: str = 'PORT',
    env: Optional[Dict[str, str]] = None,
) -> subprocess.CompletedProcess:
    """``bash SCRIPT ARGS --cfg-options OPTIONS`` from the repository root, on
    CPU processes (gloo, one thread each), with this interpreter as
    ``PYTHON`` and a free port in ``port_env``.

    A port taken between probing and binding: retried once. Fails the test
    with the end of stderr when the script fails.
    """
    cmd = ['bash', *args, '--cfg-options', *options]
    for _ in range(2):
        run_env = dict(os.environ if env is None else env, PYTHON=sys.executable)
        run_env.update(OMP_NUM_THREADS='1', CUDA_VISIBLE_DEVICES='')
        run_env[port_env] = str(free_port())
        out = subprocess.run(cmd, cwd=ROOT, env=run_env, capture_output=True, text=True)
        if out.returncode == 0 or 'address already in use' not in out.stderr.lower():
            break
    assert out.returncode == 0, out.stderr[-4000:]
    return out
