"""tools/slurm_train.sh and tools/slurm_test.sh, with stand-ins for Slurm.

The ``srun`` / ``scontrol`` stubs of ``tests/slurm_stub.py`` record their
calls and run every task on this machine with the environment a real
``srun`` gives it. Checked: the srun command line the scripts build (options,
defaults, ``SRUN_ARGS``), usage errors, a failing task failing the script,
the Slurm -> torch.distributed set-up on CPU (``launcher='slurm'``: gloo,
master address from ``scontrol``), and a 2-task CPU training run and its
evaluation end to end.
"""

import glob
import math
import os
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
from mmengine.config import Config

from acr_plugin.engine import dist_utils
from acr_plugin.engine.dist_utils import first_slurm_host, setup_cpu_distributed
from tests.scripts import ROOT, load_script
from tests.slurm_stub import install_slurm_stubs, read_calls
from tests.synthetic_runs import dist_smoke_options, free_port, run_launch_script

SCRIPTS = ('tools/slurm_train.sh', 'tools/slurm_test.sh')
VIT_CAM = 'configs/vit_cam/vit-cam_tiny-p8_1xb64-600it_synthetic-64x64.py'
TORCHRUN_VARIABLES = ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT')


def _slurm_env(tmp_path, **extra):
    """This environment with the stubs first on ``PATH``, logging their
    calls, and without a torchrun / Slurm environment of the caller."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in TORCHRUN_VARIABLES
        and not key.startswith('SLURM_')
        and key not in ('GPUS', 'GPUS_PER_NODE', 'CPUS_PER_TASK', 'SRUN_ARGS')
    }
    stubs = install_slurm_stubs(tmp_path / 'bin')
    env.update(
        PATH=f'{stubs}:{env.get("PATH", "/usr/bin:/bin")}',
        SRUN_STUB_LOG=str(tmp_path / 'srun.log'),
        SCONTROL_STUB_LOG=str(tmp_path / 'scontrol.log'),
        **extra,
    )
    return env


def _run(script, args, env):
    return subprocess.run(
        ['bash', script, *args], cwd=ROOT, env=env, capture_output=True, text=True
    )


# ----------------------------------------------------------------- the scripts
@pytest.mark.parametrize('script', SCRIPTS)
def test_scripts_parse(script):
    subprocess.run(['bash', '-n', osp.join(ROOT, script)], check=True)
    assert os.access(osp.join(ROOT, script), os.X_OK)


@pytest.mark.parametrize('script', SCRIPTS)
def test_usage_errors(script, tmp_path):
    env = _slurm_env(tmp_path, PYTHON='true')
    fourth = 'WORK_DIR' if 'train' in script else 'CHECKPOINT'
    for args in ([], ['part', 'job', 'CFG.py']):
        out = _run(script, args, env)
        assert out.returncode == 2
        assert f'PARTITION JOB_NAME CONFIG {fourth}' in out.stderr
        assert out.stderr.startswith('usage:')
    for gpus in ('two', '0', '-1'):
        out = _run(script, ['p', 'j', 'CFG.py', 'x'], dict(env, GPUS=gpus))
        assert out.returncode == 2
        assert f"GPUS must be a positive integer, got '{gpus}'" in out.stderr
    assert not osp.exists(env['SRUN_STUB_LOG'])  # srun never ran


@pytest.mark.parametrize('script', SCRIPTS)
def test_srun_command_line(script, tmp_path):
    env = _slurm_env(tmp_path, PYTHON='true')  # every task succeeds at once
    tool, fourth = (
        ('train.py', '--work-dir=W') if 'train' in script else ('test.py', 'W')
    )
    tail = [f'{ROOT}/tools/{tool}', 'CFG.py', fourth, '--launcher', 'slurm']
    cases = [
        # defaults: 4 tasks, all on one node, 5 CPUs each
        ({}, ['--gres=gpu:4', '--ntasks=4', '--ntasks-per-node=4'], '5', []),
        # GPUS_PER_NODE is at most 8 by default
        (
            {'GPUS': '16'},
            ['--gres=gpu:8', '--ntasks=16', '--ntasks-per-node=8'],
            '5',
            [],
        ),
        (
            {
                'GPUS': '2',
                'GPUS_PER_NODE': '1',
                'CPUS_PER_TASK': '3',
                'SRUN_ARGS': '--time=00:10:00 --exclusive',
            },
            ['--gres=gpu:1', '--ntasks=2', '--ntasks-per-node=1'],
            '3',
            ['--time=00:10:00', '--exclusive'],
        ),
    ]
    for extra, tasks, cpus, srun_args in cases:
        out = _run(
            script, ['gpu-part', 'acr job', 'CFG.py', 'W', '--amp'], dict(env, **extra)
        )
        assert out.returncode == 0, out.stderr
        assert read_calls(env['SRUN_STUB_LOG'])[-1] == [
            '-p',
            'gpu-part',
            '--job-name=acr job',
            *tasks,
            f'--cpus-per-task={cpus}',
            '--kill-on-bad-exit=1',
            *srun_args,
            'true',
            '-u',
            *tail,
            '--amp',
        ]


@pytest.mark.parametrize('script', SCRIPTS)
def test_a_failing_task_fails_the_script(script, tmp_path):
    env = _slurm_env(tmp_path, PYTHON='false', GPUS='2')
    out = _run(script, ['p', 'j', 'CFG.py', 'W'], env)
    assert out.returncode != 0


# ----------------------------------------------------------------- Slurm -> torch


def test_first_slurm_host_asks_scontrol(tmp_path, monkeypatch):
    env = _slurm_env(tmp_path, SCONTROL_STUB_HOSTS='h-a h-b')
    for key in ('PATH', 'SCONTROL_STUB_LOG', 'SCONTROL_STUB_HOSTS'):
        monkeypatch.setenv(key, env[key])
    assert first_slurm_host('h-[a-b]') == 'h-a'
    assert read_calls(env['SCONTROL_STUB_LOG']) == [['show', 'hostnames', 'h-[a-b]']]


@pytest.fixture
def cpu_only(monkeypatch):
    """A CPU-only machine whose environment has no torchrun / Slurm task."""
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    for key in list(os.environ):
        if key.startswith('SLURM_'):
            monkeypatch.delenv(key)
    for key in TORCHRUN_VARIABLES:
        monkeypatch.delenv(key, raising=False)  # restored after the test
    return monkeypatch


def _slurm_cfg():
    return Config(dict(launcher='slurm', env_cfg=dict(dist_cfg=dict(backend='gloo'))))


def test_slurm_on_cpu_needs_the_srun_environment(cpu_only):
    cpu_only.setenv('SLURM_PROCID', '0')
    with pytest.raises(KeyError, match='SLURM_NTASKS.*SLURM_NODELIST.*slurm_train'):
        setup_cpu_distributed(_slurm_cfg())
    cfg = _slurm_cfg()
    cfg.env_cfg.dist_cfg.backend = 'nccl'
    with pytest.raises(ValueError, match='backend="nccl" needs GPUs'):
        setup_cpu_distributed(cfg)


def test_slurm_variables_become_torchrun_ones(cpu_only):
    cpu_only.setattr(dist_utils.shutil, 'which', lambda name: None)
    cpu_only.setattr(dist_utils.torch_dist, 'init_process_group', lambda **kw: None)
    env = dict(SLURM_PROCID='5', SLURM_LOCALID='1', SLURM_NTASKS='8')
    for key, value in env.items():
        cpu_only.setenv(key, value)
    cpu_only.setenv('SLURM_NODELIST', 'gn[04-07]')
    assert setup_cpu_distributed(_slurm_cfg())
    got = {key: os.environ[key] for key in TORCHRUN_VARIABLES}
    assert got == dict(
        RANK='5',
        WORLD_SIZE='8',
        LOCAL_RANK='1',
        MASTER_ADDR='gn04',
        MASTER_PORT='29500',
    )
    # MASTER_ADDR / MASTER_PORT of the environment are kept; dist_cfg.port wins
    cpu_only.setenv('MASTER_ADDR', '10.0.0.1')
    cpu_only.setenv('MASTER_PORT', '1234')
    cfg = _slurm_cfg()
    assert setup_cpu_distributed(cfg)
    assert (os.environ['MASTER_ADDR'], os.environ['MASTER_PORT']) == (
        '10.0.0.1',
        '1234',
    )
    cfg.env_cfg.dist_cfg.port = 4321
    assert setup_cpu_distributed(cfg)
    assert os.environ['MASTER_PORT'] == '4321'
    assert cfg.model_wrapper_cfg.device_ids is None


def test_pseudo_label_tool_opens_a_slurm_group_on_cpu(cpu_only, tmp_path):
    """``tools/generate_pseudo_labels.py --launcher slurm`` (one task)."""
    tool = load_script('tools/generate_pseudo_labels.py')
    args = tool.parse_args(['C.py', 'K.pth', '--out-dir', 'o', '--launcher', 'slurm'])
    assert args.launcher == 'slurm'
    env = _slurm_env(tmp_path)
    for key in ('PATH', 'SCONTROL_STUB_LOG'):
        cpu_only.setenv(key, env[key])
    slurm = dict(SLURM_PROCID='0', SLURM_LOCALID='0', SLURM_NTASKS='1')
    for key, value in dict(slurm, SLURM_NODELIST='localhost').items():
        cpu_only.setenv(key, value)
    cpu_only.setenv('MASTER_PORT', str(free_port()))
    cfg = _slurm_cfg()
    tool.init_distributed(cfg, args.launcher)
    try:
        assert dist.is_initialized() and dist.get_world_size() == 1
        assert dist.get_backend() == 'gloo' and cfg.launcher == 'slurm'
        assert os.environ['MASTER_ADDR'] == 'localhost'
        assert read_calls(env['SCONTROL_STUB_LOG']) == [
            ['show', 'hostnames', 'localhost']
        ]
    finally:
        dist.destroy_process_group()


# ----------------------------------------------------------------- end to end
@pytest.mark.slow
def test_slurm_train_and_test_two_cpu_tasks(tmp_path):
    iters = 2
    options = dist_smoke_options(iters, num_train=8, batch_size=2, num_val=4)
    env = _slurm_env(
        tmp_path,
        GPUS='2',
        GPUS_PER_NODE='2',
        CPUS_PER_TASK='1',
        SRUN_ARGS='--time=00:05:00',
        SRUN_STUB_NODELIST='acr-node[07-08]',
        SCONTROL_STUB_HOSTS='localhost',  # the stub's answer for acr-node07
    )
    work_dir = str(tmp_path / 'train')
    args = ['tools/slurm_train.sh', 'debug', 'acr-train', VIT_CAM, work_dir]
    run_launch_script(args, options, port_env='MASTER_PORT', env=env)

    (srun,) = read_calls(env['SRUN_STUB_LOG'])
    assert srun[:7] == [
        '-p',
        'debug',
        '--job-name=acr-train',
        '--gres=gpu:2',
        '--ntasks=2',
        '--ntasks-per-node=2',
        '--cpus-per-task=1',
    ]
    assert srun[7:10] == ['--kill-on-bad-exit=1', '--time=00:05:00', sys.executable]
    assert srun[10:16] == [
        '-u',
        f'{ROOT}/tools/train.py',
        VIT_CAM,
        f'--work-dir={work_dir}',
        '--launcher',
        'slurm',
    ]
    # each task found the master address with scontrol
    assert read_calls(env['SCONTROL_STUB_LOG']) == 2 * [
        ['show', 'hostnames', 'acr-node[07-08]']
    ]
    ckpt = osp.join(work_dir, f'iter_{iters}.pth')
    assert osp.isfile(ckpt)
    (log_file,) = glob.glob(osp.join(work_dir, '*', '*.log'))
    with open(log_file) as f:
        log = f.read()
    assert 'Distributed launcher: slurm' in log
    assert 'GPU number: 2' in log  # mmengine's name for the world size
    assert 'mIoU' in log

    test_dir = str(tmp_path / 'test')
    args = ['tools/slurm_test.sh', 'debug', 'acr-test', VIT_CAM, ckpt]
    args += ['--work-dir', test_dir]
    run_launch_script(args, options, port_env='MASTER_PORT', env=env)
    srun = read_calls(env['SRUN_STUB_LOG'])[-1]
    assert srun[2] == '--job-name=acr-test'
    assert srun[10:15] == ['-u', f'{ROOT}/tools/test.py', VIT_CAM, ckpt, '--launcher']
    (test_log,) = glob.glob(osp.join(test_dir, '*', '*.log'))
    with open(test_log) as f:
        test_text = f.read()
    assert 'GPU number: 2' in test_text
    metric = re.search(r'Iter\(test\) \[(\d+)/\1\].*mIoU: ([0-9.]+)', test_text)
    assert metric is not None, test_text[-2000:]
    assert math.isfinite(float(metric.group(2)))
