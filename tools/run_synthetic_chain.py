"""The whole WSSS chain on the embedded synthetic benchmark, in one command.

1. train the WSSS model (default: ACR on the tiny ViT-CAM, 600 iterations);
2. background threshold: the best of a ``CAMMetric`` sweep on the synthetic
   val split (``--bg-thr auto``, the default) or a given number;
3. pseudo labels (palette PNGs) for the synthetic train split, scored against
   its real masks;
4. train a small mmseg segmentation net on them
   (``configs/second_stage/fcn_r18-tiny-d8_...``) and evaluate it on the real
   masks of the val split.

The second stage uses the WSSS config's train/val splits (seed, size, image
size, classes), so the pseudo labels always match the images. Measured with
the shipped configs on a 2-core machine shared with other jobs (load ~5,
``--threads 1``): 14 min wall, 7.7 min CPU (WSSS training 9.6 min, threshold +
4,000 pseudo labels 1.2 min, segmentation net 2.5 min)::

    python tools/run_synthetic_chain.py [WSSS_CONFIG] --work-dir work_dirs/chain

``--resume`` reuses finished stages (final checkpoints, existing pseudo-label
files); without it every stage runs again and the pseudo-label folder is
emptied first.
"""

import argparse
import json
import os.path as osp
import shutil
from typing import List, Optional

import torch
from mmengine.config import Config, DictAction
from mmengine.runner import Runner

from acr_plugin.apis import (
    build_model,
    build_split_dataset,
    generate_pseudo_labels,
    search_bg_threshold,
)

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEFAULT_WSSS = 'configs/acr/acr_vit-cam_tiny-p8_1xb64-600it_synthetic-64x64.py'
DEFAULT_SEG = 'configs/second_stage/fcn_r18-tiny-d8_1xb16-1k_synthetic-pseudo-64x64.py'
#: dataset keys that define a synthetic split (copied to the second stage)
SPLIT_KEYS = ('num_samples', 'seed', 'img_size', 'num_classes', 'design')


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='WSSS model -> pseudo labels -> segmentation net, on synthetic data'
    )
    parser.add_argument(
        'config', nargs='?', default=DEFAULT_WSSS, help='WSSS model config'
    )
    parser.add_argument('--seg-config', default=DEFAULT_SEG)
    parser.add_argument('--work-dir', default='work_dirs/synthetic_chain')
    parser.add_argument(
        '--bg-thr', default='auto', help='"auto" (val sweep) or a number'
    )
    parser.add_argument('--crf', action='store_true', help='dense CRF on labels')
    parser.add_argument(
        '--crf-alpha',
        type=float,
        help='with --crf: background score (1 - max_c cam_c) ** alpha instead '
        'of the threshold plane (one set; generate_pseudo_labels.py '
        '--crf-alpha LOW HIGH writes two extra sets)',
    )
    parser.add_argument('--num-train', type=int, help='train split size')
    parser.add_argument('--num-val', type=int, help='val split size')
    parser.add_argument('--wsss-iters', type=int, help='WSSS training iterations')
    parser.add_argument('--seg-iters', type=int, help='segmentation iterations')
    parser.add_argument('--num-workers', type=int, help='dataloader workers')
    parser.add_argument('--resume', action='store_true', help='reuse finished stages')
    parser.add_argument(
        '--threads',
        type=int,
        help='torch CPU threads (1 is much faster on a machine shared with '
        'other jobs: busy-waiting OpenMP threads contend)',
    )
    parser.add_argument(
        '--wsss-cfg-options', nargs='+', action=DictAction, default=None
    )
    parser.add_argument('--seg-cfg-options', nargs='+', action=DictAction, default=None)
    return parser.parse_args(argv)


def set_iters(cfg: Config, iters: int) -> None:
    """Change an iteration-based schedule's length (schedulers follow)."""
    old = cfg.train_cfg.max_iters
    cfg.train_cfg.max_iters = iters
    cfg.train_cfg.val_interval = iters
    cfg.default_hooks.checkpoint.interval = iters
    for sched in cfg.get('param_scheduler', []):
        if sched.get('type') == 'OneCycleLR':
            sched.total_steps = iters
        for key in ('begin', 'end'):
            if key in sched:
                sched[key] = min(iters, max(0, round(sched[key] * iters / old)))
        if 'end' in sched and sched['end'] <= sched.get('begin', 0):
            sched['end'] = sched.get('begin', 0) + 1


def shrink_loaders(cfg: Config, args: argparse.Namespace) -> None:
    """Apply --num-train / --num-val / --num-workers to a synthetic config."""
    for key, num in (
        ('train_dataloader', args.num_train),
        ('val_dataloader', args.num_val),
        ('test_dataloader', args.num_val),
    ):
        loader = cfg[key]
        if num is not None:
            loader.dataset.num_samples = num
            loader.batch_size = min(loader.batch_size, num)
        if args.num_workers is not None:
            loader.num_workers = args.num_workers
            loader.persistent_workers = args.num_workers > 0


def match_num_classes(cfg: Config, num_classes: int) -> None:
    """Give the segmentation heads ``num_classes`` outputs (background incl.).

    A ``class_weight`` list keeps its background weight and repeats its
    first foreground weight for the new classes.
    """
    for key in ('decode_head', 'auxiliary_head'):
        head = cfg.model.get(key)
        if not head:
            continue
        head.num_classes = num_classes
        losses = head.get('loss_decode', [])
        for loss in losses if isinstance(losses, list) else [losses]:
            weight = loss.get('class_weight')
            if isinstance(weight, (list, tuple)) and len(weight) != num_classes:
                loss.class_weight = [weight[0]] + [weight[1]] * (num_classes - 1)


def train_stage(cfg: Config, work_dir: str, resume: bool, name: str) -> str:
    """Train with a Runner (unless ``resume`` finds the final checkpoint)."""
    cfg.work_dir = work_dir
    cfg.visualizer.name = f'chain_{name}_visualizer'
    ckpt = osp.join(work_dir, f'iter_{cfg.train_cfg.max_iters}.pth')
    if resume and osp.isfile(ckpt):
        print(f'[{name}] found {ckpt}: training skipped')
        return ckpt
    Runner.from_cfg(cfg).train()
    if not osp.isfile(ckpt):
        raise FileNotFoundError(f'[{name}] training did not write {ckpt}')
    return ckpt


def resolve(path: str) -> str:
    """A config path as given, or relative to the repository root."""
    if not osp.isfile(path) and osp.isfile(osp.join(ROOT, path)):
        return osp.join(ROOT, path)
    return path


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    args.config, args.seg_config = resolve(args.config), resolve(args.seg_config)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    work_dir = args.work_dir
    bg_thr_arg = args.bg_thr
    if bg_thr_arg != 'auto':
        bg_thr_arg = float(bg_thr_arg)

    # 1. WSSS model
    wsss_cfg = Config.fromfile(args.config)
    if args.wsss_cfg_options:
        wsss_cfg.merge_from_dict(args.wsss_cfg_options)
    shrink_loaders(wsss_cfg, args)
    if args.wsss_iters is not None:
        set_iters(wsss_cfg, args.wsss_iters)
    wsss_ckpt = train_stage(wsss_cfg, osp.join(work_dir, 'wsss'), args.resume, 'wsss')

    # 2. threshold (and CAM quality) on the val split
    model = build_model(wsss_cfg, wsss_ckpt)
    val_set = build_split_dataset(wsss_cfg, 'val_dataloader')
    batch_size = wsss_cfg.test_dataloader.batch_size
    workers = wsss_cfg.test_dataloader.num_workers
    best_thr, cam = search_bg_threshold(
        model, val_set, batch_size=batch_size, num_workers=workers
    )
    bg_thr = best_thr if bg_thr_arg == 'auto' else bg_thr_arg

    # 3. pseudo labels for the train split (test pipeline: no augmentation)
    label_dir = osp.join(work_dir, 'pseudo_labels')
    if not args.resume and osp.isdir(label_dir):
        shutil.rmtree(label_dir)
    train_set = build_split_dataset(wsss_cfg, 'train_dataloader', 'test_dataloader')
    crf = None
    if args.crf:
        crf = dict(num_iters=10)
        if args.crf_alpha is not None:
            crf['alpha'] = args.crf_alpha
    labels = generate_pseudo_labels(
        model,
        train_set,
        label_dir,
        bg_thr=bg_thr,
        crf=crf,
        batch_size=batch_size,
        num_workers=workers,
    )

    # 4. segmentation net on the pseudo labels, same splits as the WSSS model
    seg_cfg = Config.fromfile(args.seg_config)
    if args.seg_cfg_options:
        seg_cfg.merge_from_dict(args.seg_cfg_options)
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        source = wsss_cfg[key].dataset
        target = seg_cfg[key].dataset
        for field in SPLIT_KEYS:
            if field in source:
                target[field] = source[field]
        seg_cfg[key].batch_size = min(seg_cfg[key].batch_size, source.num_samples)
        if args.num_workers is not None:
            seg_cfg[key].num_workers = args.num_workers
            seg_cfg[key].persistent_workers = args.num_workers > 0
    seg_cfg.train_dataloader.dataset.pseudo_label_dir = label_dir
    match_num_classes(seg_cfg, len(train_set.metainfo['classes']))
    if args.seg_iters is not None:
        set_iters(seg_cfg, args.seg_iters)
    seg_ckpt = train_stage(seg_cfg, osp.join(work_dir, 'seg'), args.resume, 'seg')
    seg_cfg.load_from = seg_ckpt
    seg_cfg.visualizer.name = 'chain_seg_test_visualizer'
    seg_cfg.work_dir = osp.join(work_dir, 'seg_test')
    seg_metrics = Runner.from_cfg(seg_cfg).test()

    summary = dict(
        wsss_config=args.config,
        wsss_checkpoint=wsss_ckpt,
        cam_miou_val_best=float(cam['mIoU_best']),
        cam_best_thr_val=float(cam['best_thr']),
        cam_miou_val_at_cfg_thr=float(cam['mIoU_at_thr']),
        bg_thr=float(bg_thr),
        bg_thr_source='auto (val sweep)' if bg_thr_arg == 'auto' else 'given',
        crf=bool(args.crf),
        pseudo_label_dir=label_dir,
        num_train=len(train_set),
        num_val=len(val_set),
        pseudo_label_miou_train=float(labels['metrics']['mIoU']),
        seg_checkpoint=seg_ckpt,
        seg_miou_val=float(seg_metrics['mIoU']),
    )
    with open(osp.join(work_dir, 'summary.json'), 'w') as f:
        json.dump(summary, f, indent=2)
    print_summary(summary)
    return summary


def print_summary(s: dict) -> None:
    rows = [
        ('WSSS model', f'{s["wsss_config"]}'),
        (
            f'CAM mIoU, val ({s["num_val"]} images)',
            f'{s["cam_miou_val_best"]:.2f} at best thr {s["cam_best_thr_val"]:.2f} '
            f'({s["cam_miou_val_at_cfg_thr"]:.2f} at the configured thr)',
        ),
        ('background threshold', f'{s["bg_thr"]:.2f} ({s["bg_thr_source"]})'),
        (
            f'pseudo-label mIoU, train ({s["num_train"]} images)',
            f'{s["pseudo_label_miou_train"]:.2f} (crf {"on" if s["crf"] else "off"})',
        ),
        (
            f'segmentation mIoU, val ({s["num_val"]} images)',
            f'{s["seg_miou_val"]:.2f}',
        ),
    ]
    width = max(len(r[0]) for r in rows)
    print('=' * 20 + ' synthetic WSSS chain ' + '=' * 20)
    for key, value in rows:
        print(f'{key.ljust(width)} : {value}')


if __name__ == '__main__':
    main()
