"""Train a segmentor with an mmseg/acr_plugin config (mmseg's CLI)."""

import argparse
import logging
import os
import os.path as osp
from typing import List, Optional

from mmengine.config import Config, DictAction
from mmengine.logging import print_log
from mmengine.runner import Runner
from mmseg.registry import RUNNERS

from acr_plugin.engine.dist_utils import setup_cpu_distributed, teardown_distributed


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a segmentor')
    parser.add_argument('config', help='config file path')
    parser.add_argument('--work-dir', help='directory for logs and checkpoints')
    parser.add_argument(
        '--resume',
        action='store_true',
        help='resume from the latest checkpoint in the work dir',
    )
    parser.add_argument('--amp', action='store_true', help='automatic mixed precision')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the learning rate by (processes x train batch per process) / '
        'auto_scale_lr.base_batch_size of the config (linear scaling rule)',
    )
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config keys, e.g. train_cfg.max_iters=100 '
        'model.backbone.init_cfg=None',
    )
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher',
    )
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def build_config(args: argparse.Namespace) -> Config:
    """The run's config: the file, then the command-line options."""
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        name = osp.splitext(osp.basename(args.config))[0]
        cfg.work_dir = osp.join('work_dirs', name)

    if args.amp:
        wrapper = cfg.optim_wrapper.get('type', 'OptimWrapper')
        if wrapper == 'AmpOptimWrapper':
            print_log(
                'AMP is already on in the config.',
                logger='current',
                level=logging.WARNING,
            )
        elif wrapper != 'OptimWrapper':
            raise ValueError(
                f'--amp needs optim_wrapper.type "OptimWrapper", got "{wrapper}"'
            )
        else:
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.loss_scale = 'dynamic'
    if args.auto_scale_lr:
        auto_scale_lr = cfg.get('auto_scale_lr') or {}
        if 'base_batch_size' not in auto_scale_lr:
            raise KeyError(
                f'--auto-scale-lr: {args.config} has no '
                'auto_scale_lr.base_batch_size (the total batch its lr is for)'
            )
        cfg.auto_scale_lr.enable = True
    cfg.resume = args.resume
    return cfg


def main() -> None:
    args = parse_args()
    cfg = build_config(args)

    # CPU-only machines: gloo process group, DDP without device_ids
    setup_cpu_distributed(cfg)
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    runner.train()
    del runner  # DDP holds the process group: release it before teardown
    teardown_distributed()


if __name__ == '__main__':
    main()
