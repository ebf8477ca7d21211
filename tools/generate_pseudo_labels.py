"""Write pseudo labels (palette PNGs) of a trained WSSS model for a data split.

By default the *training* images are labelled (``train_dataloader``'s dataset
with ``test_dataloader``'s deterministic pipeline: no random crop or flip,
original size): the second stage trains on them. ``--split val|test`` labels
those splits instead (with their own pipelines); ``--split-cfg-key`` takes any
dataloader key of the config.

Examples::

    # synthetic train split, threshold from a sweep on the synthetic val split
    python tools/generate_pseudo_labels.py CONFIG CKPT --out-dir work_dirs/pl \\
        --bg-thr auto --thr-split-cfg-key val_dataloader

    # VOC train_aug (10,582 images, evaluated against SBD/VOC masks), 4 GPUs,
    # threshold from the sweep on VOC train (1,464 images)
    python -m torch.distributed.run --nproc_per_node 4 \\
        tools/generate_pseudo_labels.py CONFIG CKPT --launcher pytorch \\
        --out-dir data/VOCdevkit/VOC2012/PseudoLabels --crf \\
        --bg-thr auto --thr-split-cfg-key train_cam_dataloader

``--bg-thr auto`` runs a ``CAMMetric`` sweep first and needs pixel labels in
the sweep split (a test pipeline that keeps ``gt_sem_seg``); a best threshold
at the edge of the sweep is logged as a warning. The pseudo-label mIoU
(mmseg's ``IoUMetric``) is printed when the labelled split has ground truth.
Existing files are skipped, so an interrupted run resumes.
"""

import argparse
import os
from typing import List, Optional, Tuple, Union

from mmengine.config import Config, DictAction
from mmengine.dist import get_dist_info, init_dist, is_distributed

from acr_plugin.apis import (
    build_model,
    build_split_dataset,
    generate_pseudo_labels,
    search_bg_threshold,
)
from acr_plugin.engine.dist_utils import setup_cpu_distributed, teardown_distributed
from acr_plugin.utils import crf_available
from acr_plugin.utils.dense_crf import CRF_INSTALL_HINT

#: ``--split`` values: the config's ``<split>_dataloader``
SPLITS = ('train', 'val', 'test')


def parse_bg_thr(value: str) -> Union[str, float]:
    """``'auto'`` or a number (CAMs are normalised to ``[0, 1]``)."""
    if value == 'auto':
        return value
    try:
        thr = float(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f'--bg-thr must be "auto" or a number, got "{value}"'
        ) from err
    return thr


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Generate WSSS pseudo labels. By default the training '
        "images are labelled (train_dataloader's dataset with "
        "test_dataloader's deterministic pipeline): the second stage's "
        'training set.'
    )
    parser.add_argument('config', help='config file of the WSSS model')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out-dir', required=True, help='folder of the PNGs')
    parser.add_argument(
        '--split',
        choices=SPLITS,
        help='images to label: train (default; the training images, with '
        "test_dataloader's pipeline), val or test (the evaluation images of "
        'val_dataloader / test_dataloader, their own pipelines)',
    )
    parser.add_argument(
        '--split-cfg-key',
        help='any dataloader config key whose dataset is labelled, instead of '
        '--split (e.g. train_cam_dataloader)',
    )
    parser.add_argument(
        '--pipeline-cfg-key',
        help='dataloader config key whose dataset.pipeline replaces the '
        "split's. Default: test_dataloader for train_dataloader (whose own "
        "pipeline augments at random), else the split's own",
    )
    parser.add_argument(
        '--bg-thr',
        type=parse_bg_thr,
        help='background threshold, or "auto" for the best one of a CAMMetric '
        'sweep (needs pixel labels; a best value at the edge of the sweep is '
        "warned about). Default: the model's test_cfg.bg_thr",
    )
    parser.add_argument(
        '--thr-split-cfg-key',
        help='dataloader config key of the --bg-thr auto sweep (a split with '
        'ground truth and a test pipeline, its own pipeline). Default: the '
        'labelled split and pipeline',
    )
    parser.add_argument('--crf', action='store_true', help='refine with dense CRF')
    parser.add_argument(
        '--crf-alpha',
        type=float,
        help='dense CRF background score (1 - max_c cam_c) ** alpha '
        '(the ACR release: 1 or 12); default: the background threshold plane',
    )
    parser.add_argument(
        '--batch-size',
        type=int,
        help='default: the batch size of the dataloader that gives the pipeline',
    )
    parser.add_argument('--num-workers', type=int, default=0)
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config keys, e.g. test_dataloader.dataset.num_samples=100',
    )
    parser.add_argument(
        '--launcher', choices=['none', 'pytorch'], default='none', help='job launcher'
    )
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    if args.crf_alpha is not None and not args.crf:
        parser.error('--crf-alpha needs --crf')
    if args.split is not None and args.split_cfg_key is not None:
        parser.error('give --split or --split-cfg-key, not both')
    return args


def resolve_split(args: argparse.Namespace) -> Tuple[str, Optional[str]]:
    """The dataloader keys of the labelled dataset and of its pipeline.

    ``--split train`` (the default) is ``train_dataloader``'s dataset with
    ``test_dataloader``'s pipeline: the training images without random
    augmentation, at their original size, which is what the second stage
    trains on. ``val`` / ``test`` keep their loaders' own (test) pipelines.

    Returns:
        tuple[str, str | None]: ``split_key`` and ``pipeline_key`` (None: the
        split's own pipeline).
    """
    split_key = args.split_cfg_key or f'{args.split or "train"}_dataloader'
    pipeline_key = args.pipeline_cfg_key
    if pipeline_key is None and split_key == 'train_dataloader':
        pipeline_key = 'test_dataloader'
    return split_key, pipeline_key


def init_distributed(cfg: Config) -> None:
    """``torch.distributed.run`` environment -> process group.

    CPU-only machines go through the same set-up as training
    (:func:`setup_cpu_distributed`: gloo, clear errors for a GPU backend or a
    missing torchrun environment); with GPUs, mmengine's ``init_dist``.
    """
    cfg.launcher = 'pytorch'
    if not setup_cpu_distributed(cfg):
        backend = cfg.get('env_cfg', {}).get('dist_cfg', {}).get('backend', 'nccl')
        init_dist('pytorch', backend=backend)


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    if args.crf and not crf_available():
        raise ImportError(f'--crf: {CRF_INSTALL_HINT}')
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    opened_group = args.launcher == 'pytorch' and not is_distributed()
    if opened_group:
        init_distributed(cfg)

    model = build_model(cfg, args.checkpoint)
    split_key, pipeline_key = resolve_split(args)
    loader_key = pipeline_key or split_key
    batch_size = args.batch_size or cfg[loader_key].get('batch_size', 1)
    progress = not args.no_progress

    bg_thr = args.bg_thr
    if bg_thr == 'auto':
        thr_key = args.thr_split_cfg_key or split_key
        thr_pipeline = None if args.thr_split_cfg_key else pipeline_key
        thr_dataset = build_split_dataset(cfg, thr_key, thr_pipeline)
        bg_thr, cam_metrics = search_bg_threshold(
            model,
            thr_dataset,
            batch_size=batch_size,
            num_workers=args.num_workers,
            progress=progress,
        )
        if get_dist_info()[0] == 0:
            print(
                f'auto background threshold: {bg_thr:.2f} (CAM mIoU '
                f'{cam_metrics["mIoU_best"]:.2f} on {thr_key}, '
                f'{len(thr_dataset)} images)'
            )

    dataset = build_split_dataset(cfg, split_key, pipeline_key)
    crf = None
    if args.crf:
        crf = dict(num_iters=10)
        if args.crf_alpha is not None:
            crf['alpha'] = args.crf_alpha
    result = generate_pseudo_labels(
        model,
        dataset,
        args.out_dir,
        bg_thr=bg_thr,
        crf=crf,
        batch_size=batch_size,
        num_workers=args.num_workers,
        progress=progress,
    )
    if get_dist_info()[0] == 0:
        thr = 'model default' if bg_thr is None else f'{bg_thr:.2f}'
        pipeline = f', {pipeline_key} pipeline' if pipeline_key else ''
        print(
            f'pseudo labels: {result["num_samples"]} images of {split_key}'
            f'{pipeline} in {args.out_dir} (bg_thr {thr}, crf '
            f'{"on" if args.crf else "off"}; rank 0 wrote {result["written"]}, '
            f'skipped {result["skipped"]})'
        )
        if result['metrics'] is not None:
            print(f'pseudo-label mIoU: {float(result["metrics"]["mIoU"]):.2f}')
    del model
    if opened_group:  # a group the caller opened stays open
        teardown_distributed()
    return result


if __name__ == '__main__':
    main()
