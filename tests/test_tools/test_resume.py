"""An interrupted run resumed with --resume equals an uninterrupted one.

Run A trains N iterations. Run B has the same config (the one-cycle schedule
still spans N iterations) but stops after K < N, when the checkpoint hook has
just saved iter_K; run C resumes B's work dir (``resume=True``, what
``tools/train.py --resume`` sets) and trains to N. C must end with exactly
A's weights, optimiser state and validation metrics. The data pipeline runs in
the main process (``num_workers=0``): random flips come from numpy's global
RNG, and the ACR variant draws random rescaled views from torch's, so this
holds only because ``IterationSeedHook`` reseeds both per iteration (mmengine
restores neither on resume).
"""

import os.path as osp

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.runner import Runner

from tests.checkpoints import load_runner_checkpoint
from tests.synthetic_runs import tiny_synthetic_cfg

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
VIT_CAM = 'configs/vit_cam/vit-cam_tiny-p8_1xb64-600it_synthetic-64x64.py'
ACR = 'configs/acr/acr_vit-cam_tiny-p8_1xb64-600it_synthetic-64x64.py'
N, K = 4, 2


class _StopAfter(Hook):
    """Interrupt training after ``iters`` iterations (like a killed job)."""

    def __init__(self, iters: int) -> None:
        self.iters = iters

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 >= self.iters:
            runner.train_loop.stop_training = True


def _cfg(path: str, work_dir: str, name: str, acr_view: bool):
    cfg = tiny_synthetic_cfg(
        osp.join(ROOT, path), work_dir, iters=N, num_train=6, num_val=4
    )
    cfg.train_dataloader.batch_size = 2  # 3 iterations per epoch: N spans two
    cfg.default_hooks.checkpoint.interval = K
    cfg.default_hooks.checkpoint.max_keep_ckpts = 3
    cfg.experiment_name = name  # separate MessageHub/logger instances
    if acr_view:
        # random views exercise torch's RNG inside the training step
        cfg.model.view = dict(type='rescale', scale_range=(0.75, 1.25))
    return cfg


def _val_metrics(runner) -> dict:
    scalars = runner.message_hub.log_scalars
    timing = ('val/time', 'val/data_time')
    return {
        k: v.current()
        for k, v in scalars.items()
        if k.startswith('val/') and k not in timing
    }


def _safe_load(path: str) -> dict:
    return load_runner_checkpoint(path)


@pytest.mark.slow
@pytest.mark.parametrize('path', [VIT_CAM, ACR], ids=['vit_cam', 'acr'])
def test_resume_is_exact(path, tmp_path):
    acr = path == ACR
    full = Runner.from_cfg(_cfg(path, str(tmp_path / 'A'), f'A_{acr}', acr))
    full.train()

    interrupted = Runner.from_cfg(_cfg(path, str(tmp_path / 'B'), f'B_{acr}', acr))
    interrupted.register_hook(_StopAfter(K))
    interrupted.train()
    assert interrupted.iter == K
    assert not osp.exists(tmp_path / 'B' / f'iter_{N}.pth')

    cfg = _cfg(path, str(tmp_path / 'B'), f'C_{acr}', acr)
    cfg.resume = True
    resumed = Runner.from_cfg(cfg)
    resumed.train()
    assert resumed.iter == N

    expected, got = full.model.state_dict(), resumed.model.state_dict()
    assert expected.keys() == got.keys()
    for name, value in expected.items():
        assert torch.equal(value, got[name]), name
    metrics = _val_metrics(full)
    assert 'val/mIoU' in metrics
    assert metrics == _val_metrics(resumed)

    # the saved final checkpoints agree too (optimiser moments included), and
    # they load with weights_only=True: no unsafe fallback on resume
    ckpt_a = _safe_load(str(tmp_path / 'A' / f'iter_{N}.pth'))
    ckpt_c = _safe_load(str(tmp_path / 'B' / f'iter_{N}.pth'))
    for state_a, state_c in zip(
        ckpt_a['optimizer']['state'].values(), ckpt_c['optimizer']['state'].values()
    ):
        for key in state_a:
            assert torch.equal(
                torch.as_tensor(state_a[key]), torch.as_tensor(state_c[key])
            )
    schedulers = ckpt_c['param_schedulers']
    assert schedulers[0]['last_step'] == ckpt_a['param_schedulers'][0]['last_step']
    assert not any(callable(v) for s in schedulers for v in s.values())
    assert ckpt_c['meta']['iter'] == N and ckpt_c['meta']['seed'] == 0
