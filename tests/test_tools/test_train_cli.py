"""tools/train.py's config building: mmseg's flags plus --auto-scale-lr."""

import os.path as osp

import pytest
from mmengine.runner import Runner

from tests.scripts import load_script

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOCO_VOC = 'configs/toco/toco_vit-b16_2xb2-20k_voc12aug-448x448.py'
TINY = 'configs/vit_cam/vit-cam_tiny-p8_1xb64-600it_synthetic-64x64.py'
SHRINK = [
    'train_dataloader.dataset.num_samples=8',
    'train_dataloader.batch_size=4',
    'train_dataloader.num_workers=0',
    'train_dataloader.persistent_workers=False',
    'train_cfg.max_iters=1',
    'train_cfg.val_interval=2',
    'default_hooks.checkpoint.interval=2',
    'log_level=WARNING',
]


def _train_tool():
    return load_script('tools/train.py')


def test_auto_scale_lr_flag_enables_the_config_rule():
    tool = _train_tool()
    cfg = tool.build_config(tool.parse_args([osp.join(ROOT, TOCO_VOC)]))
    assert cfg.auto_scale_lr == dict(enable=False, base_batch_size=4)
    cfg = tool.build_config(
        tool.parse_args([osp.join(ROOT, TOCO_VOC), '--auto-scale-lr'])
    )
    assert cfg.auto_scale_lr == dict(enable=True, base_batch_size=4)


def test_auto_scale_lr_without_a_base_batch_names_the_config():
    tool = _train_tool()
    args = tool.parse_args([osp.join(ROOT, TINY), '--auto-scale-lr'])
    with pytest.raises(KeyError, match='vit-cam_tiny.*auto_scale_lr.base_batch_size'):
        tool.build_config(args)


@pytest.mark.slow
def test_auto_scale_lr_scales_every_param_group(tmp_path):
    """Batch 4 on one process against a base batch of 16: the lr of every
    param group is a quarter (mmengine's rule, reached through the flag)."""
    tool = _train_tool()
    lrs = {}
    for flag in ([], ['--auto-scale-lr']):
        args = tool.parse_args(
            [osp.join(ROOT, TINY), '--work-dir', str(tmp_path / str(len(flag)))]
            + flag
            + ['--cfg-options', 'auto_scale_lr.base_batch_size=16', *SHRINK]
        )
        cfg = tool.build_config(args)
        cfg.param_scheduler = None  # constant lr: what the optimiser holds
        runner = Runner.from_cfg(cfg)
        runner.train()
        lrs[bool(flag)] = [g['lr'] for g in runner.optim_wrapper.param_groups]
    assert len(lrs[True]) == len(lrs[False])
    for scaled, plain in zip(lrs[True], lrs[False]):
        assert scaled == pytest.approx(plain * 4 / 16)
