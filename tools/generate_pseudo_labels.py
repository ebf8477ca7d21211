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

    # plus ACR's low- / high-alpha CRF label sets (AffinityNet's la / ha
    # labels) in work_dirs/pl_crf_la1 and work_dirs/pl_crf_ha12
    python tools/generate_pseudo_labels.py CONFIG CKPT --out-dir work_dirs/pl \\
        --crf-alpha 1 12

``--bg-thr auto`` runs a ``CAMMetric`` sweep first and needs pixel labels in
the sweep split (a test pipeline that keeps ``gt_sem_seg``); a best threshold
at the edge of the sweep is logged as a warning. The pseudo-label mIoU
(mmseg's ``IoUMetric``) is printed when the labelled split has ground truth.
Existing files are skipped, so an interrupted run resumes.
"""

import argparse
import math
import os
import os.path as osp
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
from acr_plugin.models.utils.crf import CRF_INSTALL_HINT, crf_available

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


def crf_alpha_dirs(out_dir: str, low: float, high: float) -> Tuple[str, str]:
    """Folders of the low- and high-alpha CRF label sets of ``--crf-alpha``.

    Siblings of the output folder named after it and the powers:
    ``<out-dir>_crf_la<LOW>`` and ``<out-dir>_crf_ha<HIGH>`` (``%g`` format,
    e.g. ``PseudoLabels_crf_la1`` / ``PseudoLabels_crf_ha12``), so sets of
    other powers never resume from each other's files.

    Args:
        out_dir (str): ``--out-dir`` (the main pseudo labels).
        low (float): The low background power.
        high (float): The high background power.

    Returns:
        tuple[str, str]: Absolute paths of the low- and high-alpha folders.
    """
    base = osp.abspath(out_dir)
    return f'{base}_crf_la{low:g}', f'{base}_crf_ha{high:g}'


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
    parser.add_argument(
        '--crf',
        action='store_true',
        help='refine the labels with a dense CRF (background score: the '
        'threshold plane)',
    )
    parser.add_argument(
        '--crf-alpha',
        nargs=2,
        type=float,
        metavar=('LOW', 'HIGH'),
        help="also write ACR's two dense-CRF label sets (AffinityNet's la / ha "
        'labels; the ACR release uses 1 12, PSA 4 32): background score '
        '(1 - max_c cam_c) ** alpha at alpha LOW and at alpha HIGH (0 < LOW < '
        'HIGH; a higher alpha weakens the background), CRF-refined, into '
        '<out-dir>_crf_la<LOW> and <out-dir>_crf_ha<HIGH> (siblings of '
        '--out-dir). Independent of --crf and --bg-thr',
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
        '--launcher',
        choices=['none', 'pytorch', 'slurm'],
        default='none',
        help='job launcher',
    )
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    if args.crf_alpha is not None:
        low, high = args.crf_alpha
        if not all(math.isfinite(a) and a > 0 for a in (low, high)):
            parser.error(
                f'--crf-alpha: LOW and HIGH must be finite numbers > 0, got '
                f'{low:g} {high:g}'
            )
        if not low < high:
            parser.error(
                f'--crf-alpha: LOW must be smaller than HIGH, got {low:g} {high:g}'
            )
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


def init_distributed(cfg: Config, launcher: str = 'pytorch') -> None:
    """``torch.distributed.run`` (``pytorch``) or ``srun`` (``slurm``)
    environment -> process group.

    CPU-only machines go through the same set-up as training
    (:func:`setup_cpu_distributed`: gloo, clear errors for a GPU backend or a
    missing torchrun / srun environment); with GPUs, mmengine's ``init_dist``.
    """
    cfg.launcher = launcher
    if not setup_cpu_distributed(cfg):
        backend = cfg.get('env_cfg', {}).get('dist_cfg', {}).get('backend', 'nccl')
        init_dist(launcher, backend=backend)


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    for flag, used in (('--crf', args.crf), ('--crf-alpha', args.crf_alpha)):
        if used and not crf_available():
            raise ImportError(f'{flag}: {CRF_INSTALL_HINT}')
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    opened_group = args.launcher != 'none' and not is_distributed()
    if opened_group:
        init_distributed(cfg, args.launcher)

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
    # dense_crf's defaults are the ACR kernels (Gaussian sxy 3 / compat 3,
    # bilateral sxy 80 / srgb 13 / compat 10)
    crf = dict(num_iters=10) if args.crf else None
    crf_sets = {}
    if args.crf_alpha is not None:
        for folder, alpha in zip(
            crf_alpha_dirs(args.out_dir, *args.crf_alpha), args.crf_alpha
        ):
            crf_sets[folder] = dict(num_iters=10, alpha=alpha)
    result = generate_pseudo_labels(
        model,
        dataset,
        args.out_dir,
        bg_thr=bg_thr,
        crf=crf,
        batch_size=batch_size,
        num_workers=args.num_workers,
        progress=progress,
        crf_sets=crf_sets,
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
        for folder, out in result['crf_sets'].items():
            miou = out['metrics']
            miou = '' if miou is None else f', mIoU {float(miou["mIoU"]):.2f}'
            print(
                f'CRF labels at alpha {crf_sets[folder]["alpha"]:g} in {folder} '
                f'(rank 0 wrote {out["written"]}, skipped {out["skipped"]}){miou}'
            )
    del model
    if opened_group:  # a group the caller opened stays open
        teardown_distributed()
    return result


if __name__ == '__main__':
    main()
