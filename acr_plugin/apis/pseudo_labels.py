"""Pseudo labels from a trained WSSS model (the hand-over to the second stage).

The model's own ``predict`` produces the CAMs (so multi-scale + flip or a
gradient-CAM predictor head apply as configured): every predicted sample holds
``seg_logits`` ``(C + 1, H, W)`` at the original image size, channel 0 a
constant background threshold and channels ``1..C`` the normalised CAMs
(absent classes zero). A pseudo label is ``argmax`` over these with channel 0
set to the chosen threshold (background wins ties), optionally refined by a
dense CRF (:mod:`acr_plugin.models.utils.crf`).

This module holds the generation (labels from seg logits, the background
threshold search, the labelling loop); the files are
:mod:`acr_plugin.apis.label_io` (one atomic palette PNG per image, named after
it), the split over ranks :mod:`acr_plugin.apis.sharding` and the model /
dataset builders :mod:`acr_plugin.apis.builders`. Files already present are
skipped, so an interrupted run resumes. Under ``torch.distributed`` each rank
labels a strided shard of the dataset (``DefaultSampler``'s order); metrics
are gathered across ranks.

Call graph::

    build_model(cfg, ckpt) / build_split_dataset(cfg, key)   (builders)
    search_bg_threshold(model, dataset)   -> CAMMetric sweep -> best_thr
      '- sweep_edge_warning()            (best_thr at the sweep's edge)
    generate_pseudo_labels(model, dataset, out_dir, bg_thr, crf, crf_sets)
      |- model.test_step(missing samples) -> labels_from_seg_logits()
      |    '- crf_refine_labels()  (optional; once more per crf_sets folder,
      |                             e.g. ACR's low- / high-alpha CRF sets)
      |- save_label_png()                 (label_io; atomic)
      '- IoUMetric over the written labels vs ground truth (if any)
"""

import logging
import os
import os.path as osp
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
from mmengine.dist import barrier, get_dist_info
from mmengine.logging import print_log
from mmseg.evaluation import IoUMetric
from torch import Tensor
from torch.utils.data import Dataset

from acr_plugin.apis.label_io import read_label_png, sample_name, save_label_png
from acr_plugin.apis.sharding import (
    all_ranks_true,
    finish_progress,
    rank0_progress,
    shard_indices,
    shard_loader,
)
from acr_plugin.evaluation import CAMMetric
from acr_plugin.models.utils.crf import (
    crf_refine_labels,
    crf_scores,
    packed_image_for_crf,
)


# ------------------------------------------------------------------ labels
def labels_from_seg_logits(
    seg_logits: Tensor, bg_thr: Optional[float] = None
) -> Tensor:
    """Pseudo label of one sample: ``argmax`` of its seg logits.

    Args:
        seg_logits (Tensor): ``(C + 1, H, W)``: channel 0 the background
            score, channels ``1..C`` the class scores.
        bg_thr (float, optional): Background threshold replacing channel 0
            (a constant plane). Defaults to None (channel 0 as predicted).

    Returns:
        Tensor: int64 ``(H, W)`` labels; the background wins ties (``argmax``
        returns the first maximum).
    """
    if seg_logits.dim() != 3 or seg_logits.shape[0] < 2:
        raise ValueError(
            'seg_logits must be (C + 1, H, W) with C >= 1, got '
            f'{tuple(seg_logits.shape)}'
        )
    if bg_thr is not None:
        seg_logits = seg_logits.clone()
        seg_logits[0] = bg_thr
    return seg_logits.argmax(dim=0)


# ------------------------------------------------------------------ threshold
def sweep_edge_warning(best_thr: float, thresholds: Sequence[float]) -> Optional[str]:
    """The warning for a best threshold at the edge of its sweep, else None.

    A best threshold at the lowest sweep value means the CAMs score best with
    (almost) no background: pseudo labels at it give nearly every pixel a
    class, the sign of CAMs that light up small object parts only (a weak or
    little-trained model). At the highest value (almost) everything is
    background: the CAMs hardly separate objects from background. Either way
    a better value may lie outside the sweep.

    Args:
        best_thr (float): The chosen threshold.
        thresholds (Sequence[float]): The sweep grid.

    Returns:
        str | None: The message, or None inside the sweep.
    """
    grid = [float(t) for t in thresholds]
    low, high = min(grid), max(grid)
    tol = 1e-4  # CAMMetric rounds best_thr to 4 decimals
    sweep = f'sweep {low:.2f}..{high:.2f}'
    if abs(best_thr - low) <= tol:
        return (
            f'background threshold {best_thr:.2f} is the lowest value of the '
            f'{sweep}: the CAMs score best with (almost) no background, so '
            'nearly every pixel of an image gets one of its classes. This is '
            'typical of a weak or little-trained model whose CAMs cover small '
            'object parts only; check the CAMs (tools/test.py --show-dir) or '
            'give --bg-thr a number.'
        )
    if abs(best_thr - high) <= tol:
        return (
            f'background threshold {best_thr:.2f} is the highest value of the '
            f'{sweep}: the CAMs score best with (almost) everything background, '
            'so the pseudo labels will be nearly all background. The CAMs '
            'hardly separate objects from background (an untrained model, '
            'wrong image labels?); check them (tools/test.py --show-dir) or '
            'give --bg-thr a number.'
        )
    return None


def search_bg_threshold(
    model: nn.Module,
    dataset: Dataset,
    batch_size: int = 1,
    num_workers: int = 0,
    thresholds: Optional[Sequence[float]] = None,
    progress: bool = True,
) -> Tuple[float, Dict[str, float]]:
    """Best background threshold of a ``CAMMetric`` sweep over ``dataset``.

    Needs pixel labels: the samples must carry ``gt_sem_seg`` (a test
    pipeline with ``LoadAnnotations`` / ``PackWSSSInputs(keep_pixel_labels=
    True)``) and, when the model restricts CAMs to the image's classes,
    ``img_labels``. Distributed: each rank sweeps a shard; ``CAMMetric``
    gathers the counts, every rank gets the same threshold.

    Args:
        model (nn.Module): A WSSS model in eval mode whose ``predict``
            writes CAM ``seg_logits``.
        dataset (Dataset): Split with ground truth.
        batch_size (int): Defaults to 1.
        num_workers (int): Defaults to 0.
        thresholds (Sequence[float], optional): Sweep grid. Defaults to None
            (``0.00..0.99``).
        progress (bool): Show a progress bar on rank 0. Defaults to True.

    Returns:
        tuple[float, dict]: ``best_thr`` and all ``CAMMetric`` metrics. A
        ``best_thr`` at the lowest or highest sweep value is logged as a
        warning (:func:`sweep_edge_warning`).
    """
    rank, world_size = get_dist_info()
    metric = CAMMetric(thresholds=thresholds)
    metric.dataset_meta = getattr(dataset, 'metainfo', None)
    indices = shard_indices(len(dataset), rank, world_size, pad=True)
    bar = rank0_progress(len(indices), progress)
    with torch.no_grad():
        for data in shard_loader(dataset, indices, batch_size, num_workers):
            for sample in data['data_samples']:
                if 'gt_sem_seg' not in sample:
                    raise KeyError(
                        'search_bg_threshold needs pixel labels ("gt_sem_seg") '
                        'in every sample: use a split with ground truth and a '
                        'test pipeline that keeps them'
                    )
            metric.process(data, model.test_step(data))
            if bar is not None:
                bar.update(len(data['data_samples']))
    finish_progress(bar)
    metrics = metric.evaluate(len(dataset))
    best_thr = float(metrics['best_thr'])
    warning = sweep_edge_warning(best_thr, metric.thresholds.tolist())
    if warning is not None:
        print_log(warning, logger='current', level=logging.WARNING)
    return best_thr, metrics


# ------------------------------------------------------------------ generation
def _label_samples(
    model: nn.Module,
    data: Dict[str, List[Any]],
    wanted: Sequence[Sequence[int]],
    bg_thr: Optional[float],
    crfs: Sequence[Optional[dict]],
) -> List[Dict[int, np.ndarray]]:
    """Label the samples of a collated batch for several label sets.

    The model runs once on the union of the wanted positions; every label set
    then derives its labels from the same seg logits.

    Args:
        model (nn.Module): The WSSS model.
        data (dict): A collated batch (``inputs``, ``data_samples``).
        wanted (Sequence[Sequence[int]]): Per label set, the batch positions
            to label.
        bg_thr (float, optional): Background threshold (see
            :func:`labels_from_seg_logits`).
        crfs (Sequence[dict | None]): Per label set, its dense-CRF options
            (``alpha`` + :func:`~acr_plugin.models.utils.crf.dense_crf`
            arguments) or None (no CRF).

    Returns:
        list[dict[int, np.ndarray]]: Per label set, position -> uint8
        ``(H, W)`` label.
    """
    positions = sorted({p for set_positions in wanted for p in set_positions})
    labels = [{} for _ in wanted]
    if not positions:
        return labels
    sub = dict(
        inputs=[data['inputs'][i] for i in positions],
        data_samples=[data['data_samples'][i] for i in positions],
    )
    seg_logits = {
        p: out.seg_logits.data for p, out in zip(positions, model.test_step(sub))
    }
    images = {}  # the CRF image of a position, shared by the label sets
    for set_labels, set_positions, crf in zip(labels, wanted, crfs):
        crf_kwargs = dict(crf or {})
        alpha = crf_kwargs.pop('alpha', None)
        for p in set_positions:
            logits = seg_logits[p]
            if crf is None:
                label = labels_from_seg_logits(logits, bg_thr).cpu().numpy()
            else:
                if p not in images:
                    images[p] = packed_image_for_crf(
                        data['inputs'][p], logits.shape[1:]
                    )
                scores = crf_scores(logits, bg_thr, alpha)
                label = crf_refine_labels(images[p], scores, **crf_kwargs)
            set_labels[p] = label.astype(np.uint8)
    return labels


def _label_sets(
    out_dir: str, crf: Optional[dict], crf_sets: Optional[Dict[str, dict]]
) -> List[Tuple[str, Optional[dict]]]:
    """``(folder, crf)`` of the main label set and of the extra CRF sets."""
    sets = [(out_dir, crf)]
    for folder, options in (crf_sets or {}).items():
        if not isinstance(options, dict):
            raise TypeError(
                f'crf_sets["{folder}"] must be a dict of dense-CRF options, got '
                f'{type(options).__name__}'
            )
        sets.append((folder, dict(options)))
    folders = [osp.abspath(folder) for folder, _ in sets]
    if len(set(folders)) != len(folders):
        raise ValueError(
            f'the label sets need distinct folders, got out_dir "{out_dir}" and '
            f'crf_sets {list(crf_sets or {})}'
        )
    return sets


def _gt_map(sample) -> Optional[Tensor]:
    if 'gt_sem_seg' not in sample:
        return None
    return sample.gt_sem_seg.data


def _iou_entry(label: np.ndarray, gt: Tensor) -> dict:
    pred = torch.from_numpy(label.astype(np.int64))[None]
    return dict(pred_sem_seg=dict(data=pred), gt_sem_seg=dict(data=gt))


def _iter_shard(
    dataset: Dataset, indices: List[int], batch_size: int, num_workers: int
) -> Iterator[Dict[str, List[Any]]]:
    if indices:
        yield from shard_loader(dataset, indices, batch_size, num_workers)


def generate_pseudo_labels(
    model: nn.Module,
    dataset: Dataset,
    out_dir: str,
    bg_thr: Optional[float] = None,
    crf: Optional[dict] = None,
    batch_size: int = 1,
    num_workers: int = 0,
    evaluate: bool = True,
    progress: bool = True,
    crf_sets: Optional[Dict[str, dict]] = None,
) -> Dict[str, Any]:
    """Write one palette PNG pseudo label per sample of ``dataset``.

    Samples whose file already exists are not recomputed (resume). With
    ground truth in every sample (``gt_sem_seg``), the pseudo labels (the
    files, old and new) are scored with mmseg's ``IoUMetric``, gathered
    across ranks. ``crf_sets`` writes further label sets from the same model
    outputs (one forward per sample), e.g. the low- and high-alpha CRF sets
    of PSA/ACR (``{dir_la: dict(alpha=1.0), dir_ha: dict(alpha=12.0)}``).

    Args:
        model (nn.Module): A WSSS model in eval mode whose ``predict``
            writes CAM ``seg_logits`` ``(C + 1, H, W)``.
        dataset (Dataset): Built with a test pipeline (no random
            augmentation); samples carry ``img_labels`` if the model
            restricts CAMs to the image's classes.
        out_dir (str): Output folder (created).
        bg_thr (float, optional): Background threshold. Defaults to None (the
            model's configured one, i.e. its ``seg_logits`` channel 0).
        crf (dict, optional): Dense-CRF options (``alpha`` for the
            ``(1 - max) ** alpha`` background, else the threshold plane is
            the background score; other keys go to
            :func:`~acr_plugin.models.utils.crf.dense_crf`). Defaults to None
            (no CRF).
        batch_size (int): Defaults to 1.
        num_workers (int): Dataloader workers. Defaults to 0.
        evaluate (bool): Score the labels when ground truth exists.
            Defaults to True.
        progress (bool): Progress bar with ETA on rank 0. Defaults to True.
        crf_sets (dict[str, dict], optional): Further label sets: output
            folder (created; distinct from ``out_dir`` and from each other)
            -> its dense-CRF options (as ``crf``). Each folder is written,
            resumed and scored like ``out_dir``. Defaults to None (none).

    Returns:
        dict: ``num_samples``, ``written`` and ``skipped`` (this rank),
        ``bg_thr``, ``out_dir`` and ``metrics`` (``IoUMetric``'s dict, with
        ``mIoU`` in percent; None without ground truth or evaluation) of the
        main set, and ``crf_sets``: folder -> ``dict(written, skipped,
        metrics)`` of each extra set (empty without ``crf_sets``).
    """
    num_samples = len(dataset)
    if num_samples == 0:
        raise ValueError('generate_pseudo_labels: the dataset is empty')
    meta = getattr(dataset, 'metainfo', {}) or {}
    if 'palette' not in meta or 'classes' not in meta:
        raise KeyError(
            f'{type(dataset).__name__}.metainfo needs "classes" and "palette" '
            'to write palette PNGs'
        )
    sets = _label_sets(out_dir, crf, crf_sets)
    folders = [folder for folder, _ in sets]
    for folder in folders:
        os.makedirs(folder, exist_ok=True)
    rank, world_size = get_dist_info()
    own = shard_indices(num_samples, rank, world_size)
    padded = shard_indices(num_samples, rank, world_size, pad=True)
    iou_metrics = []
    for _ in sets:
        metric = IoUMetric(iou_metrics=['mIoU'])
        metric.dataset_meta = meta
        iou_metrics.append(metric)
    has_gt = True
    written = [0] * len(sets)
    skipped = [0] * len(sets)

    bar = rank0_progress(len(own), progress)
    with torch.no_grad():
        for data in _iter_shard(dataset, own, batch_size, num_workers):
            samples = data['data_samples']
            names = [sample_name(s.img_path) + '.png' for s in samples]
            paths = [[osp.join(folder, n) for n in names] for folder in folders]
            missing = [
                [i for i, p in enumerate(set_paths) if not osp.isfile(p)]
                for set_paths in paths
            ]
            new = _label_samples(model, data, missing, bg_thr, [c for _, c in sets])
            for k, set_labels in enumerate(new):
                for i, label in set_labels.items():
                    save_label_png(label, paths[k][i], meta['palette'])
                written[k] += len(missing[k])
                skipped[k] += len(samples) - len(missing[k])
            for i, sample in enumerate(samples):
                gt = _gt_map(sample)
                has_gt = has_gt and gt is not None
                if evaluate and has_gt:
                    for k, metric in enumerate(iou_metrics):
                        label = new[k].get(i)
                        if label is None:
                            label = read_label_png(paths[k][i])
                        metric.process(data, [_iou_entry(label, gt)])
            if bar is not None:
                bar.update(len(samples))
    finish_progress(bar)

    metrics = [None] * len(sets)
    barrier()  # every rank's files exist before padding samples are read
    if evaluate:
        # the padding positions (at most one per rank) repeat other ranks'
        # samples; IoUMetric's collection drops them again
        for index in padded[len(own) :]:
            sample = dataset[index]['data_samples']
            gt = _gt_map(sample)
            has_gt = has_gt and gt is not None
            if has_gt:
                name = sample_name(sample.img_path) + '.png'
                for folder, metric in zip(folders, iou_metrics):
                    label = read_label_png(osp.join(folder, name))
                    metric.process({}, [_iou_entry(label, gt)])
        if all_ranks_true(has_gt):
            metrics = [metric.evaluate(num_samples) for metric in iou_metrics]
        else:
            print_log(
                'no pixel ground truth ("gt_sem_seg") in the samples: '
                'pseudo-label mIoU skipped',
                logger='current',
                level=logging.WARNING,
            )
    return dict(
        num_samples=num_samples,
        written=written[0],
        skipped=skipped[0],
        bg_thr=bg_thr,
        out_dir=out_dir,
        metrics=metrics[0],
        crf_sets={
            folder: dict(written=written[k], skipped=skipped[k], metrics=metrics[k])
            for k, folder in enumerate(folders)
            if k > 0
        },
    )
