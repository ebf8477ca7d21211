"""The synthetic configs train, save a checkpoint and evaluate (end to end)."""

import math
import os.path as osp
import subprocess
import sys

import pytest
from mmengine.runner import Runner

from tests.synthetic_runs import tiny_synthetic_cfg

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
VIT_CAM = 'configs/vit_cam/vit-cam_tiny-p8_1xb64-600it_synthetic-64x64.py'
ACR = 'configs/acr/acr_vit-cam_tiny-p8_1xb64-600it_synthetic-64x64.py'
PRETRAIN = 'configs/vit_cam/vit-cls_tiny-p8_1xb64-1200it_synthetic-pretrain-64x64.py'


@pytest.mark.slow
@pytest.mark.parametrize('path', [VIT_CAM, ACR, PRETRAIN])
def test_config_trains_and_evaluates(path, tmp_path):
    cfg = tiny_synthetic_cfg(osp.join(ROOT, path), str(tmp_path))
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert osp.isfile(tmp_path / 'iter_2.pth')
    metrics = runner.test()
    if 'pretrain' in path:
        assert 'cls_f1_micro' in metrics
    else:
        for key in ('mIoU', 'mIoU_best', 'body_recall_at_fp0.10'):
            assert math.isfinite(metrics[key]), key
        # CAMMetric at the configured threshold is IoUMetric on the masks
        assert metrics['mIoU_at_thr'] == pytest.approx(metrics['mIoU'], abs=0.01)


@pytest.mark.slow
def test_pretrained_backbone_route(tmp_path):
    """A synthetic-pretraining checkpoint initialises the WSSS model."""
    import torch
    from mmengine.runner import CheckpointLoader

    cfg = tiny_synthetic_cfg(osp.join(ROOT, PRETRAIN), str(tmp_path / 'pre'))
    Runner.from_cfg(cfg).train()
    ckpt = str(tmp_path / 'pre' / 'iter_2.pth')
    cfg = tiny_synthetic_cfg(osp.join(ROOT, ACR), str(tmp_path / 'acr'))
    cfg.model.model.backbone.init_cfg = dict(type='Pretrained', checkpoint=ckpt)
    runner = Runner.from_cfg(cfg)
    runner.model.init_weights()
    state = CheckpointLoader.load_checkpoint(ckpt, map_location='cpu')['state_dict']
    loaded = runner.model.model.backbone.vit.blocks[0].attn.qkv.weight
    torch.testing.assert_close(loaded, state['backbone.vit.blocks.0.attn.qkv.weight'])


@pytest.mark.slow
def test_cli_tools_train_and_test(tmp_path):
    """tools/train.py and tools/test.py with mmseg's flags."""
    work = str(tmp_path)
    opts = [
        'train_dataloader.dataset.num_samples=16',
        'train_dataloader.batch_size=8',
        'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False',
        'val_dataloader.dataset.num_samples=8',
        'val_dataloader.num_workers=0',
        'val_dataloader.persistent_workers=False',
        'test_dataloader.dataset.num_samples=8',
        'test_dataloader.num_workers=0',
        'test_dataloader.persistent_workers=False',
        'train_cfg.max_iters=2',
        'train_cfg.val_interval=2',
        'param_scheduler.0.total_steps=2',
        'default_hooks.checkpoint.interval=2',
    ]
    subprocess.run(
        [
            sys.executable,
            'tools/train.py',
            ACR,
            '--work-dir',
            work,
            '--cfg-options',
            *opts,
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    ckpt = osp.join(work, 'iter_2.pth')
    assert osp.isfile(ckpt)
    out = subprocess.run(
        [
            sys.executable,
            'tools/test.py',
            ACR,
            ckpt,
            '--work-dir',
            osp.join(work, 'test'),
            '--show-dir',
            osp.join(work, 'vis'),
            '--cfg-options',
            *opts,
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    assert 'mIoU' in out.stdout + out.stderr
