"""CPU distributed set-up and teardown (acr_plugin/engine/dist_utils.py), one
process: the config it prepares, its errors and the Slurm host list."""

import datetime

import pytest
import torch
import torch.distributed as dist
from mmengine.config import Config

from acr_plugin.engine import dist_utils
from acr_plugin.engine.dist_utils import first_slurm_host, setup_cpu_distributed


def test_cpu_distributed_setup_errors(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    cfg = Config(dict(launcher='none', env_cfg=dict(dist_cfg=dict(backend='gloo'))))
    assert setup_cpu_distributed(cfg) is False
    cfg.launcher = 'mpi'
    with pytest.raises(ValueError, match='launcher "pytorch".*"slurm".*got "mpi"'):
        setup_cpu_distributed(cfg)
    cfg.launcher = 'pytorch'
    cfg.env_cfg.dist_cfg.backend = 'nccl'
    with pytest.raises(ValueError, match='backend="nccl" needs GPUs'):
        setup_cpu_distributed(cfg)
    cfg.env_cfg.dist_cfg.backend = 'gloo'
    for key in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(KeyError, match='RANK.*dist_train.sh'):
        setup_cpu_distributed(cfg)


def test_teardown_distributed_destroys_the_group(tmp_path):
    """The tools end every distributed run with ``teardown_distributed``."""

    from acr_plugin.engine.dist_utils import teardown_distributed

    teardown_distributed()  # no group: nothing to do
    dist.init_process_group(
        'gloo', init_method=f'file://{tmp_path / "init"}', rank=0, world_size=1
    )
    try:
        model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(4, 2))
        model(torch.randn(3, 4)).sum().backward()
        del model
        teardown_distributed()
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


@pytest.mark.parametrize(
    'node_list,first',
    [
        ('node07', 'node07'),
        ('node[07-09,12]', 'node07'),
        ('node[012,3-4]', 'node012'),
        ('gpu-[3-4]-a,cpu1', 'gpu-3-a'),
        ('cpu1,gpu-[3-4]-a', 'cpu1'),
        ('rack[1-2]-n[01-04]', 'rack1-n01'),
        ('localhost', 'localhost'),
    ],
)
def test_first_slurm_host_without_scontrol(node_list, first, monkeypatch):
    monkeypatch.setattr(dist_utils.shutil, 'which', lambda name: None)
    assert first_slurm_host(node_list) == first


def test_pytorch_launch_on_cpu_opens_gloo_and_unsets_device_ids(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    monkeypatch.setattr(dist_utils.torch_dist, 'is_initialized', lambda: False)
    monkeypatch.setattr(
        dist_utils.torch_dist, 'init_process_group', lambda **kw: calls.append(kw)
    )
    env = dict(RANK='1', WORLD_SIZE='2', MASTER_ADDR='127.0.0.1', MASTER_PORT='29511')
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    cfg = Config(
        dict(
            launcher='pytorch',
            find_unused_parameters=True,
            env_cfg=dict(dist_cfg=dict(backend='gloo', timeout=90)),
        )
    )
    assert setup_cpu_distributed(cfg) is True
    assert calls == [dict(backend='gloo', timeout=datetime.timedelta(seconds=90))]
    assert cfg.model_wrapper_cfg == dict(
        type='MMDistributedDataParallel',
        broadcast_buffers=False,
        find_unused_parameters=True,
        device_ids=None,
    )
    # with a GPU nothing is done
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    assert setup_cpu_distributed(Config(dict(launcher='pytorch'))) is False
    assert len(calls) == 1
