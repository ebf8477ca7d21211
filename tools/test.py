"""Evaluate a checkpoint with an mmseg/acr_plugin config (mmseg's CLI)."""

import argparse
import os
import os.path as osp

from mmengine.config import Config, DictAction
from mmengine.runner import Runner
from mmseg.registry import METRICS, RUNNERS

from acr_plugin.engine.dist_utils import setup_cpu_distributed, teardown_distributed
from acr_plugin.evaluation.wsss_metric import takes_output_args


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test (evaluate) a segmentor')
    parser.add_argument('config', help='config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='directory for the evaluation logs')
    parser.add_argument(
        '--out', help='directory where predicted masks are written as PNGs'
    )
    parser.add_argument('--show', action='store_true', help='show results in a window')
    parser.add_argument(
        '--show-dir', help='directory where painted predictions are saved'
    )
    parser.add_argument(
        '--wait-time', type=float, default=2, help='seconds per shown image'
    )
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config keys, e.g. test_evaluator.sub_metrics.1.bg_thr=0.4',
    )
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher',
    )
    parser.add_argument('--tta', action='store_true', help="use the config's tta_model")
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def enable_visualisation(cfg: Config, args: argparse.Namespace) -> None:
    """Switch on mmseg's SegVisualizationHook for --show / --show-dir."""
    hooks = cfg.default_hooks
    if 'visualization' not in hooks:
        raise KeyError(
            '--show/--show-dir need default_hooks.visualization '
            '(a SegVisualizationHook) in the config'
        )
    hook = hooks['visualization']
    hook['draw'] = True
    if 'CAMVisualizationHook' in str(hook.get('type')):
        # one picture per test image unless the config limits them
        hook.setdefault('interval', 1)
        hook.setdefault('max_images', None)
    if args.show:
        hook['show'] = True
        hook['wait_time'] = args.wait_time
    if args.show_dir:
        vis = cfg.visualizer
        vis['save_dir'] = args.show_dir


def set_output_dir(cfg: Config, out: str) -> None:
    """Make the test evaluator write prediction PNGs to ``out`` (``--out``).

    As mmseg's tool for one evaluator dict (``IoUMetric``, ``WSSSMetric``);
    in a list of evaluators only those that write predictions get it.
    """
    evaluators = cfg.test_evaluator
    if not isinstance(evaluators, (list, tuple)):
        evaluators = [evaluators]
    evaluators = [e for e in evaluators if takes_output_args(METRICS.get(e['type']))]
    if not evaluators:
        raise ValueError(
            '--out needs a test_evaluator that writes predictions '
            '(IoUMetric or WSSSMetric)'
        )
    for evaluator in evaluators:
        evaluator['output_dir'] = out
        evaluator['keep_results'] = True


def main() -> None:
    args = parse_args()
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        name = osp.splitext(osp.basename(args.config))[0]
        cfg.work_dir = osp.join('work_dirs', name)
    cfg.load_from = args.checkpoint

    if args.show or args.show_dir:
        enable_visualisation(cfg, args)
    if args.tta:
        cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
        cfg.tta_model.module = cfg.model
        cfg.model = cfg.tta_model
    if args.out is not None:
        set_output_dir(cfg, args.out)

    # CPU-only machines: gloo process group, DDP without device_ids
    setup_cpu_distributed(cfg)
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    runner.test()
    del runner  # DDP holds the process group: release it before teardown
    teardown_distributed()


if __name__ == '__main__':
    main()
