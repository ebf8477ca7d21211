"""Pseudo labels from a trained WSSS model (the hand-over to the second stage).

The model's own ``predict`` produces the CAMs (so multi-scale + flip or a
gradient-CAM predictor head apply as configured): every predicted sample holds
``seg_logits`` ``(C + 1, H, W)`` at the original image size, channel 0 a
constant background threshold and channels ``1..C`` the normalised CAMs
(absent classes zero). A pseudo label is ``argmax`` over these with channel 0
set to the chosen threshold (background wins ties), optionally refined by a
dense CRF (:mod:`acr_plugin.utils.dense_crf`).

Files: one palette PNG per image (PIL mode ``P``, the dataset's palette),
named after the image (``<basename>.png``; synthetic samples by their index,
``000012.png``), written atomically (temporary file + ``os.replace``). Files
already present are skipped, so an interrupted run resumes (a killed process
may leave a hidden ``.<name>.png.*.tmp`` file, which is ignored). Under
``torch.distributed`` each rank labels a strided shard of the dataset
(``DefaultSampler``'s order); metrics are gathered across ranks.

Call graph::

    build_model(cfg, ckpt) / build_split_dataset(cfg, key)
    search_bg_threshold(model, dataset)   -> CAMMetric sweep -> best_thr
      '- sweep_edge_warning()            (best_thr at the sweep's edge)
    generate_pseudo_labels(model, dataset, out_dir, bg_thr, crf, crf_sets)
      |- model.test_step(missing samples) -> labels_from_seg_logits()
      |    '- crf_refine_labels()  (optional; once more per crf_sets folder,
      |                             e.g. ACR's low- / high-alpha CRF sets)
      |- save_label_png()                 (atomic)
      '- IoUMetric over the written labels vs ground truth (if any)
"""

import logging
import math
import os
import os.path as osp
import sys
import tempfile
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.device import get_device
from mmengine.dist import all_reduce, barrier, get_dist_info
from mmengine.logging import print_log
from mmengine.registry import init_default_scope
from mmengine.runner import load_checkpoint
from mmengine.utils import ProgressBar, import_modules_from_strings
from mmseg.evaluation import IoUMetric
from mmseg.registry import DATASETS, MODELS
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from acr_plugin.evaluation import CAMMetric
from acr_plugin.utils.dense_crf import background_from_cams, crf_refine_labels

#: colour of label 255 (VOC "void" boundary) in the written palette
VOID_COLOR = (224, 224, 192)
#: suffix of temporary files (never left behind by a finished write)
TMP_SUFFIX = '.tmp'


# ------------------------------------------------------------------ files
def label_palette(palette: Sequence[Sequence[int]]) -> List[int]:
    """A flat 256-colour PIL palette from a dataset's ``[r, g, b]`` list.

    Entries past the dataset's classes are black, except 255 (the ignore
    label) which gets the VOC void colour.

    Args:
        palette (Sequence[Sequence[int]]): One ``[r, g, b]`` per class.

    Returns:
        list[int]: 768 values ``r0, g0, b0, r1, ...``.
    """
    if len(palette) > 255:
        raise ValueError(
            f'a palette PNG holds at most 255 classes (+ ignore), got {len(palette)}'
        )
    colors = [tuple(int(v) for v in color) for color in palette]
    if any(len(c) != 3 for c in colors):
        raise ValueError('palette entries must be [r, g, b] triples')
    colors += [(0, 0, 0)] * (256 - len(colors))
    colors[255] = VOID_COLOR
    return [v for color in colors for v in color]


def label_to_png(label: np.ndarray, palette: Sequence[Sequence[int]]) -> Image.Image:
    """An ``(H, W)`` label map as a palette-mode (``P``) PIL image.

    Args:
        label (np.ndarray): Integer labels in ``[0, 255]``.
        palette (Sequence[Sequence[int]]): One ``[r, g, b]`` per class.

    Returns:
        PIL.Image.Image: Mode ``P`` image whose pixel values are the labels.
    """
    label = np.asarray(label)
    if label.ndim != 2:
        raise ValueError(f'expected an (H, W) label map, got shape {label.shape}')
    if label.size and (int(label.min()) < 0 or int(label.max()) > 255):
        raise ValueError(
            f'labels must lie in [0, 255] for a PNG, got [{label.min()}, {label.max()}]'
        )
    image = Image.fromarray(label.astype(np.uint8))  # mode L ...
    image.putpalette(label_palette(palette))  # ... becomes P, indices kept
    return image


def save_label_png(
    label: np.ndarray, path: str, palette: Sequence[Sequence[int]]
) -> None:
    """Write a palette PNG atomically (temporary file + ``os.replace``).

    A reader (or a resumed run) sees either no file or the complete one; the
    temporary file is removed if writing fails.

    Args:
        label (np.ndarray): ``(H, W)`` labels.
        path (str): Destination ``.png``.
        palette (Sequence[Sequence[int]]): One ``[r, g, b]`` per class.
    """
    image = label_to_png(label, palette)
    folder = osp.dirname(osp.abspath(path))
    fd, tmp = tempfile.mkstemp(
        prefix=f'.{osp.basename(path)}.', suffix=TMP_SUFFIX, dir=folder
    )
    try:
        with os.fdopen(fd, 'wb') as f:
            image.save(f, format='PNG')
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise


def read_label_png(path: str) -> np.ndarray:
    """Label indices ``(H, W)`` uint8 of a palette or single-channel PNG."""
    with Image.open(path) as image:
        if image.mode not in ('P', 'L'):
            raise ValueError(
                f'{path}: expected a palette or single-channel PNG, got mode '
                f'{image.mode}'
            )
        return np.array(image, dtype=np.uint8)


def sample_name(img_path: str) -> str:
    """File stem of a sample: the image's basename without extension.

    ``'data/VOC2012/JPEGImages/2007_000032.jpg'`` gives ``'2007_000032'``;
    a synthetic id ``'synthetic://wsss/seed0/000012'`` gives ``'000012'``.
    """
    name = osp.splitext(osp.basename(str(img_path)))[0]
    if not name:
        raise ValueError(f'cannot derive a file name from img_path "{img_path}"')
    return name


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


def crf_scores(
    seg_logits: Tensor, bg_thr: Optional[float] = None, alpha: Optional[float] = None
) -> np.ndarray:
    """Per-class scores (background first) that a dense CRF refines.

    Args:
        seg_logits (Tensor): ``(C + 1, H, W)`` with CAMs in ``[0, 1]``.
        bg_thr (float, optional): Constant background score. Defaults to None
            (channel 0 as predicted).
        alpha (float, optional): If given, the background score is
            ``(1 - max_c M_c) ** alpha`` instead (Sun et al., arXiv
            2308.04321; ``bg_thr`` is then unused). Defaults to None.

    Returns:
        np.ndarray: float32 ``(C + 1, H, W)``.
    """
    scores = seg_logits.detach().float().cpu()
    if alpha is not None:
        return background_from_cams(scores[1:].numpy(), alpha)
    scores = scores.clone()
    if bg_thr is not None:
        scores[0] = bg_thr
    return scores.numpy()


def image_for_crf(inputs: Tensor, ori_shape: Sequence[int]) -> np.ndarray:
    """``H x W x 3`` uint8 RGB image at ``ori_shape`` from a packed input.

    Args:
        inputs (Tensor): ``(3, h, w)`` image as packed by ``PackSegInputs``
            (BGR, as mmcv loads images).
        ori_shape (Sequence[int]): ``(H, W)`` of the seg logits.

    Returns:
        np.ndarray: The image, resized (bilinear) when ``(h, w)`` differs.
    """
    img = inputs.detach().cpu()
    if img.dim() != 3 or img.shape[0] != 3:
        raise ValueError(
            f'dense CRF needs a 3-channel image (3, H, W), got {tuple(img.shape)}'
        )
    h, w = int(ori_shape[0]), int(ori_shape[1])
    img = img.float()
    if tuple(img.shape[1:]) != (h, w):
        img = torch.nn.functional.interpolate(
            img[None], size=(h, w), mode='bilinear', align_corners=False
        )[0]
    img = img.clamp(0, 255).round().to(torch.uint8).flip(0)  # BGR -> RGB
    return np.ascontiguousarray(img.permute(1, 2, 0).numpy())


# ------------------------------------------------------------------ sharding
def shard_indices(
    num_samples: int, rank: int, world_size: int, pad: bool = False
) -> List[int]:
    """Dataset positions of one rank, strided as ``DefaultSampler`` (no shuffle).

    Args:
        num_samples (int): Dataset length.
        rank (int): This process's rank.
        world_size (int): Number of processes.
        pad (bool): Repeat positions from the start so that every rank gets
            ``ceil(num_samples / world_size)`` (what mmengine's result
            collection expects). Defaults to False (each position exactly
            once over all ranks).

    Returns:
        list[int]: Positions ``rank, rank + world_size, ...``.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f'rank {rank} outside world size {world_size}')
    indices = list(range(num_samples))
    if pad and num_samples:
        total = math.ceil(num_samples / world_size) * world_size
        indices = (indices * (total // num_samples + 1))[:total]
    return indices[rank::world_size]


def _loader(
    dataset: Dataset, indices: List[int], batch_size: int, num_workers: int
) -> DataLoader:
    return DataLoader(
        Subset(dataset, indices),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=pseudo_collate,
    )


def _all_ranks_true(flag: bool) -> bool:
    """Logical AND of ``flag`` over ranks (identity without distribution)."""
    value = torch.tensor([int(flag)], dtype=torch.long)
    all_reduce(value, op='min')
    return bool(value.item())


def _progress(total: int, enabled: bool) -> Optional[ProgressBar]:
    rank, _ = get_dist_info()
    if not enabled or rank != 0 or total == 0:
        return None
    return ProgressBar(total, file=sys.stdout)


def _finish_progress(bar: Optional[ProgressBar]) -> None:
    if bar is not None:
        bar.file.write('\n')
        bar.file.flush()


# ------------------------------------------------------------------ building
def build_model(
    cfg: Config, checkpoint: Optional[str] = None, device: Optional[str] = None
) -> nn.Module:
    """Build ``cfg.model``, load a checkpoint and switch to eval mode.

    Args:
        cfg (Config): A full config (``model``, ``default_scope``,
            ``custom_imports``).
        checkpoint (str, optional): Checkpoint loaded strictly. Defaults to
            None (random weights, for tests).
        device (str, optional): Defaults to mmengine's ``get_device()``.

    Returns:
        nn.Module: The model in eval mode.
    """
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    if cfg.get('custom_imports'):
        import_modules_from_strings(**cfg.custom_imports)
    model = MODELS.build(cfg.model)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint, map_location='cpu', strict=True)
    model.to(device or get_device())
    model.eval()
    return model


def build_split_dataset(
    cfg: Config, split_key: str = 'test_dataloader', pipeline_key: Optional[str] = None
) -> Dataset:
    """Build the dataset of a dataloader config key.

    Args:
        cfg (Config): A full config.
        split_key (str): Dataloader whose dataset is labelled, e.g.
            ``'test_dataloader'`` or ``'train_dataloader'``. Defaults to
            ``'test_dataloader'``.
        pipeline_key (str, optional): Dataloader whose ``dataset.pipeline``
            replaces the split's (e.g. the training images with the test
            pipeline: ``split_key='train_dataloader'``,
            ``pipeline_key='test_dataloader'``). Defaults to None.

    Returns:
        Dataset: The built dataset.
    """
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    if cfg.get('custom_imports'):
        import_modules_from_strings(**cfg.custom_imports)
    for key in (split_key, pipeline_key):
        if key is not None and 'dataset' not in cfg.get(key, {}):
            raise KeyError(f'the config has no "{key}.dataset"')
    dataset_cfg = cfg[split_key]['dataset'].copy()
    if pipeline_key is not None:
        dataset_cfg['pipeline'] = cfg[pipeline_key]['dataset']['pipeline']
    return DATASETS.build(dataset_cfg)


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
    bar = _progress(len(indices), progress)
    with torch.no_grad():
        for data in _loader(dataset, indices, batch_size, num_workers):
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
    _finish_progress(bar)
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
            (``alpha`` + :func:`~acr_plugin.utils.dense_crf.dense_crf`
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
                    images[p] = image_for_crf(data['inputs'][p], logits.shape[1:])
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
        yield from _loader(dataset, indices, batch_size, num_workers)


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
            :func:`~acr_plugin.utils.dense_crf.dense_crf`). Defaults to None
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

    bar = _progress(len(own), progress)
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
    _finish_progress(bar)

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
        if _all_ranks_true(has_gt):
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
