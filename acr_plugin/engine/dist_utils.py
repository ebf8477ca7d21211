"""Distributed training on CPU-only machines (``torchrun`` or Slurm + gloo).

mmengine's ``init_dist('pytorch')`` and ``init_dist('slurm')`` always call
``torch.cuda.set_device`` and ``Runner.wrap_model`` always passes
``device_ids=[LOCAL_RANK]`` to DDP; both fail without a GPU.
:func:`setup_cpu_distributed` prepares a config so that ``tools/dist_train.sh
CONFIG N``, ``tools/dist_test.sh`` and ``tools/slurm_train.sh`` /
``tools/slurm_test.sh`` (``srun``) run on CPU: it opens the process group
itself (``env_cfg.dist_cfg``, gloo by default; the Runner then skips
``init_dist``) and sets the DDP wrapper's ``device_ids`` to None, the value
DDP requires for CPU modules. For Slurm it first turns the task's ``SLURM_*``
variables into the ``torchrun`` ones, as mmengine's ``_init_dist_slurm``
does. On machines with a GPU it does nothing.

:func:`teardown_distributed` ends any distributed run (CPU or GPU) cleanly;
the tools call it once the runner is released.
"""

import datetime
import gc
import os
import re
import shutil
import subprocess
from inspect import isclass
from typing import Optional

import torch
import torch.distributed as torch_dist
from mmengine.config import Config
from mmengine.registry import MODEL_WRAPPERS
from torch.nn.parallel import DistributedDataParallel

SLURM_VARIABLES = ('SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_NODELIST')


def first_slurm_host(node_list: str) -> str:
    """The first host name of a Slurm node list (``SLURM_NODELIST``).

    ``scontrol show hostnames`` expands the list when it is on ``PATH`` (on
    every Slurm node; mmengine's ``_init_dist_slurm`` asks it the same).
    Without it the common forms are expanded here: ``node07``,
    ``node[07-09,12]``, ``gpu-[3-4]-a,cpu1``, ``rack[1-2]-n[01-04]`` (first
    value of every bracket, zero padding kept).

    Args:
        node_list (str): A Slurm host list expression.

    Returns:
        str: The first host, the master address of the job.
    """
    if shutil.which('scontrol'):
        out = subprocess.run(
            ['scontrol', 'show', 'hostnames', node_list],
            capture_output=True,
            text=True,
            check=False,
        )
        hosts = out.stdout.split()
        if out.returncode == 0 and hosts:
            return hosts[0]
    # the first top-level comma ends the first host pattern
    depth, end = 0, len(node_list)
    for i, char in enumerate(node_list):
        depth += {'[': 1, ']': -1}.get(char, 0)
        if char == ',' and depth == 0:
            end = i
            break
    return re.sub(
        r'\[([^\]\-,]*)[^\]]*\]', lambda m: m.group(1), node_list[:end].strip()
    )


def slurm_to_torchrun_env(port: Optional[int] = None) -> None:
    """Set ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
    ``MASTER_PORT`` from the environment ``srun`` gives each task.

    As mmengine's ``_init_dist_slurm``: ``RANK`` / ``WORLD_SIZE`` /
    ``LOCAL_RANK`` from ``SLURM_PROCID`` / ``SLURM_NTASKS`` /
    ``SLURM_LOCALID`` (0 when unset); ``MASTER_ADDR`` kept when set, else the
    first host of ``SLURM_NODELIST``; ``MASTER_PORT`` = ``port``
    (``env_cfg.dist_cfg.port``) when given, else kept when set, else 29500.

    Raises:
        KeyError: If a Slurm variable is missing (not started by ``srun``).
    """
    missing = [key for key in SLURM_VARIABLES if key not in os.environ]
    if missing:
        raise KeyError(
            f'launcher "slurm" needs the srun environment variables {missing}: '
            'start the run with tools/slurm_train.sh / tools/slurm_test.sh or srun'
        )
    rank = int(os.environ['SLURM_PROCID'])
    ntasks = int(os.environ['SLURM_NTASKS'])
    # srun always sets SLURM_LOCALID; on CPU the local rank picks no device
    local_rank = int(os.environ.get('SLURM_LOCALID', 0))
    if port is not None:
        os.environ['MASTER_PORT'] = str(port)
    os.environ.setdefault('MASTER_PORT', '29500')
    if 'MASTER_ADDR' not in os.environ:
        os.environ['MASTER_ADDR'] = first_slurm_host(os.environ['SLURM_NODELIST'])
    os.environ['WORLD_SIZE'] = str(ntasks)
    os.environ['LOCAL_RANK'] = str(local_rank)
    os.environ['RANK'] = str(rank)


def setup_cpu_distributed(cfg: Config) -> bool:
    """Initialise ``torch.distributed`` for a CPU-only ``pytorch`` or
    ``slurm`` launch.

    Args:
        cfg (Config): The run's config; ``cfg.launcher`` must be set. Its
            ``model_wrapper_cfg`` is created or updated in place.

    Returns:
        bool: True when the CPU set-up was applied, False when nothing had
        to be done (no distributed launch, or a GPU is available).

    Raises:
        ValueError: For a launcher other than ``pytorch`` / ``slurm`` on a
            CPU-only machine, or a backend other than gloo.
        KeyError: If the ``torchrun`` environment (``RANK``, ``WORLD_SIZE``,
            ``MASTER_ADDR``, ``MASTER_PORT``) or, for ``slurm``, the ``srun``
            one (``SLURM_PROCID``, ``SLURM_NTASKS``, ``SLURM_NODELIST``) is
            missing.
    """
    launcher = cfg.get('launcher', 'none')
    if launcher == 'none' or torch.cuda.is_available():
        return False
    if launcher not in ('pytorch', 'slurm'):
        raise ValueError(
            f'CPU-only distributed runs support launcher "pytorch" '
            f'(tools/dist_train.sh) and "slurm" (tools/slurm_train.sh), got '
            f'"{launcher}"'
        )
    env_cfg = cfg.get('env_cfg') or {}
    dist_cfg = dict(env_cfg.get('dist_cfg') or {})
    backend = dist_cfg.pop('backend', 'gloo')
    if backend != 'gloo':
        raise ValueError(
            f'env_cfg.dist_cfg.backend="{backend}" needs GPUs; use "gloo" on '
            'CPU-only machines'
        )
    if launcher == 'slurm':
        slurm_to_torchrun_env(dist_cfg.pop('port', None))
    missing = [
        key
        for key in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT')
        if key not in os.environ
    ]
    if missing:
        raise KeyError(
            f'launcher "pytorch" needs the torchrun environment variables '
            f'{missing}: start the run with tools/dist_train.sh or '
            'python -m torch.distributed.run'
        )
    if not torch_dist.is_initialized():
        timeout = dist_cfg.pop('timeout', None)
        if timeout is not None:
            dist_cfg['timeout'] = datetime.timedelta(seconds=timeout)
        torch_dist.init_process_group(backend='gloo', **dist_cfg)

    wrapper = cfg.get('model_wrapper_cfg')
    if wrapper is None:
        # what Runner.wrap_model builds without a model_wrapper_cfg
        wrapper = dict(
            type='MMDistributedDataParallel',
            broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False),
        )
    wrapper_type = wrapper.get('type', 'MMDistributedDataParallel')
    if isinstance(wrapper_type, str):
        wrapper_type = MODEL_WRAPPERS.get(wrapper_type)
    if isclass(wrapper_type) and issubclass(wrapper_type, DistributedDataParallel):
        wrapper['device_ids'] = None  # DDP's value for CPU modules
    cfg.model_wrapper_cfg = wrapper
    return True


def teardown_distributed() -> None:
    """Wait for every rank, then destroy the default process group.

    Call it after the last collective, once the objects that hold the group
    are released (``del runner``: DDP's reducer keeps the group alive). A
    process that exits with a live gloo group can abort during interpreter
    shutdown ("terminate called without an active exception", SIGABRT):
    gloo's worker threads still own finished work items whose tensors need
    the GIL to be freed, and a thread that asks for the GIL while Python
    finalises is killed. In a 2-process gloo script with a DDP model that
    happened in 13 of 40 runs without this call, 4 of 40 with only
    ``destroy_process_group`` while the DDP model was alive, and 0 of 40
    with the model released first. Does nothing outside a distributed run.
    """
    gc.collect()  # runner <-> hook reference cycles hold the DDP model
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.barrier()
        torch_dist.destroy_process_group()
