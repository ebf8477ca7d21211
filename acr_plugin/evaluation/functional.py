"""Pure tensor maths of the CAM background-threshold sweep.

A WSSS model turns class activation maps (CAMs) ``cams`` of shape ``(C, H, W)``
into a pseudo mask by ``argmax([t, cams])`` over ``C + 1`` channels: channel 0
is a constant background score ``t``. Ties go to the background, so a pixel is
foreground at threshold ``t`` exactly when ``fg_max > t`` (``fg_max`` = the
largest CAM value of the pixel), and then its class is ``fg_arg`` (the 1-based
channel of that maximum). The class does not depend on ``t``; only the
foreground/background decision does.

So a whole sweep over sorted thresholds ``t_0 <= ... <= t_{T-1}`` needs one pass:
with ``K`` = number of thresholds strictly below ``fg_max`` (``bucketize``), a
pixel is foreground at threshold index ``k`` iff ``K > k``. One ``bincount``
over ``(K, gt, fg_arg)`` per image (:func:`sweep_histogram`) and a reverse
cumulative sum over ``K`` (:func:`confusion_from_sweep`) give the confusion
matrices at every threshold. Part maps (0 background, 1 body, 2 head) are
counted the same way (:func:`part_rates_from_sweep`).

Comparisons are made in the CAMs' own precision (thresholds are rounded to the
CAM dtype first), so each sweep point equals ``argmax`` over a constant plane of
that threshold concatenated in front of the CAMs.
"""

import math
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor

from acr_plugin.structures import PART_BODY, PART_HEAD

#: regions of the part histogram (second axis of its ``(T + 1, 3, 2)`` shape)
REGION_BACKGROUND, REGION_BODY, REGION_HEAD = 0, 1, 2


def default_thresholds() -> Tensor:
    """The standard sweep ``0.00, 0.01, ..., 0.99`` as a float64 tensor."""
    return torch.arange(100, dtype=torch.float64) / 100


def foreground_max(cams: Tensor) -> Tuple[Tensor, Tensor]:
    """Strongest foreground activation of every pixel and its class.

    Args:
        cams (Tensor): Foreground CAMs ``(C, H, W)`` (channels 1..C of the
            seg logits), C >= 1.

    Returns:
        Tuple[Tensor, Tensor]: ``fg_max`` ``(H, W)`` (same dtype as ``cams``)
        and ``fg_arg`` ``(H, W)`` int64 with the 1-based class of the maximum
        (the lowest class wins ties, as in ``argmax``).
    """
    if cams.dim() != 3 or cams.shape[0] < 1:
        raise ValueError(
            f'foreground_max expects CAMs of shape (C, H, W) with C >= 1, got '
            f'{tuple(cams.shape)}'
        )
    fg_max, fg_arg = cams.max(dim=0)
    return fg_max, fg_arg + 1


def threshold_bins(fg_max: Tensor, thresholds: Tensor) -> Tensor:
    """Number of thresholds strictly below each value.

    The thresholds are first rounded to ``fg_max``'s dtype (half precision is
    then compared in float32, exactly), so ``bins > k`` is the same decision as
    ``argmax`` against a constant plane of ``thresholds[k]`` in that dtype.

    Args:
        fg_max (Tensor): Values of any shape, floating point.
        thresholds (Tensor): 1-D, non-decreasing.

    Returns:
        Tensor: int64 tensor of ``fg_max``'s shape with values in ``[0, T]``.
    """
    if thresholds.dim() != 1 or thresholds.numel() == 0:
        raise ValueError(
            'thresholds must be a non-empty 1-D tensor, got shape '
            f'{tuple(thresholds.shape)}'
        )
    if not fg_max.is_floating_point():
        raise TypeError(f'CAM values must be floating point, got {fg_max.dtype}')
    thr = thresholds.to(device=fg_max.device, dtype=fg_max.dtype)
    values = fg_max
    if fg_max.dtype in (torch.float16, torch.bfloat16):
        thr, values = thr.float(), fg_max.float()
    if bool((thr[1:] < thr[:-1]).any()):
        raise ValueError('thresholds must be sorted in non-decreasing order')
    # right=False: bins[i] = #{k : thr[k] < value[i]}
    return torch.bucketize(values.contiguous(), thr.contiguous(), right=False)


def sweep_histogram(
    cams: Tensor,
    gt: Tensor,
    thresholds: Tensor,
    num_classes: int,
    part_map: Optional[Tensor] = None,
    ignore_index: int = 255,
) -> Tuple[Tensor, Optional[Tensor]]:
    """Per-image counts that give every threshold's confusion matrix.

    Args:
        cams (Tensor): Foreground CAMs ``(C, H, W)`` with
            ``C = num_classes - 1``.
        gt (Tensor): Ground-truth labels ``(H, W)`` or ``(1, H, W)``, values in
            ``[0, num_classes)`` or ``ignore_index``.
        thresholds (Tensor): 1-D non-decreasing background thresholds (T).
        num_classes (int): Number of classes including the background.
        part_map (Tensor, optional): ``(H, W)`` or ``(1, H, W)`` part map
            (0 background, 1 body, 2 head). Defaults to None.
        ignore_index (int): Label excluded everywhere. Defaults to 255.

    Returns:
        Tuple[Tensor, Optional[Tensor]]:

        - ``joint``: int64 ``(T + 1, num_classes, num_classes)``; entry
          ``[K, g, a]`` counts valid pixels with ``K`` thresholds strictly below
          their ``fg_max``, ground truth ``g`` and foreground argmax ``a``
          (``a >= 1``, column 0 stays empty).
        - ``part`` (None without ``part_map``): int64 ``(T + 1, 3, 2)``; entry
          ``[K, r, m]`` counts valid pixels of region ``r`` (0: ``gt == 0``,
          1: body, 2: head; body/head require ``gt > 0``) with ``m = 1`` when
          ``fg_arg == gt``.
    """
    num_fg = num_classes - 1
    if cams.dim() != 3 or cams.shape[0] != num_fg:
        raise ValueError(
            f'expected {num_fg} foreground CAM channels of shape (C, H, W) for '
            f'num_classes={num_classes}, got {tuple(cams.shape)}'
        )
    gt = _as_map(gt, 'gt', cams.shape[1:]).to(cams.device).long()
    fg_max, fg_arg = foreground_max(cams)
    bins = threshold_bins(fg_max, thresholds)
    num_bins = thresholds.numel() + 1

    valid = gt != ignore_index
    gt_v, arg_v, bins_v = gt[valid], fg_arg[valid], bins[valid]
    if gt_v.numel() and (int(gt_v.min()) < 0 or int(gt_v.max()) >= num_classes):
        raise ValueError(
            f'gt labels must lie in [0, {num_classes}) or equal ignore_index '
            f'{ignore_index}; found values in [{int(gt_v.min())}, '
            f'{int(gt_v.max())}]'
        )
    flat = (bins_v * num_classes + gt_v) * num_classes + arg_v
    joint = torch.bincount(flat, minlength=num_bins * num_classes**2)
    joint = joint.view(num_bins, num_classes, num_classes)

    part = None
    if part_map is not None:
        part_v = _as_map(part_map, 'part_map', cams.shape[1:])
        part_v = part_v.to(cams.device).long()[valid]
        region = torch.full_like(gt_v, -1)
        region[gt_v == 0] = REGION_BACKGROUND
        region[(gt_v > 0) & (part_v == PART_BODY)] = REGION_BODY
        region[(gt_v > 0) & (part_v == PART_HEAD)] = REGION_HEAD
        keep = region >= 0
        match = (arg_v == gt_v).long()
        flat = (bins_v[keep] * 3 + region[keep]) * 2 + match[keep]
        part = torch.bincount(flat, minlength=num_bins * 6).view(num_bins, 3, 2)
    return joint, part


def _as_map(x: Tensor, name: str, shape: torch.Size) -> Tensor:
    """Squeeze a ``(1, H, W)`` map to ``(H, W)`` and check its size."""
    if x.dim() == 3 and x.shape[0] == 1:
        x = x[0]
    if tuple(x.shape) != tuple(shape):
        raise ValueError(
            f'{name} has shape {tuple(x.shape)} but the CAMs are '
            f'{tuple(shape)} (expected (H, W) or (1, H, W))'
        )
    return x


def _above(counts: Tensor) -> Tensor:
    """``out[k] = sum over K > k of counts[K]`` for ``k = 0..T-1``."""
    suffix = counts.flip(0).cumsum(0).flip(0)  # suffix[k] = sum_{K >= k}
    return suffix[1:]


def confusion_from_sweep(joint: Tensor) -> Tensor:
    """Confusion matrices at every threshold from an accumulated histogram.

    Args:
        joint (Tensor): ``(T + 1, N, N)`` counts from :func:`sweep_histogram`
            (summed over images).

    Returns:
        Tensor: int64 ``(T, N, N)``, ``[k, gt, pred]`` at threshold ``k``.
    """
    fg = _above(joint)  # predicted foreground: class fg_arg
    total_per_gt = joint.sum(dim=(0, 2))  # (N,)
    conf = fg.clone()
    # everything not foreground at threshold k is predicted background
    conf[:, :, 0] += total_per_gt[None, :] - fg.sum(dim=2)
    return conf


def iou_from_confusion(conf: Tensor) -> Tensor:
    """Per-class IoU; classes with no ground truth and no prediction are NaN.

    Args:
        conf (Tensor): ``(..., N, N)`` confusion matrices ``[gt, pred]``.

    Returns:
        Tensor: float64 ``(..., N)``.
    """
    conf = conf.double()
    inter = conf.diagonal(dim1=-2, dim2=-1)
    union = conf.sum(-1) + conf.sum(-2) - inter
    return inter / union  # 0 / 0 -> NaN, as mmseg


def part_rates_from_sweep(part: Tensor) -> Dict[str, Tensor]:
    """Head/body recall and background false-positive rate at every threshold.

    A head (body) pixel is recalled when it is predicted foreground with its
    ground-truth class; a background pixel (``gt == 0``) is a false positive when
    predicted as any foreground class.

    Args:
        part (Tensor): ``(T + 1, 3, 2)`` counts from :func:`sweep_histogram`
            (summed over images).

    Returns:
        Dict[str, Tensor]: float64 ``head_recall``, ``body_recall``, ``bg_fp``
        of shape ``(T,)`` (NaN where the region has no pixels), and scalars
        ``head_recall_all`` / ``body_recall_all``: the recall when every pixel
        is foreground (threshold ``-inf``), i.e. the share of the region whose
        CAM argmax is the right class.
    """
    part = part.double()
    above = _above(part)  # (T, 3, 2)
    totals = part.sum(dim=(0, 2))  # (3,)
    matched = part[:, :, 1].sum(dim=0)  # (3,)
    return dict(
        head_recall=above[:, REGION_HEAD, 1] / totals[REGION_HEAD],
        body_recall=above[:, REGION_BODY, 1] / totals[REGION_BODY],
        bg_fp=above[:, REGION_BACKGROUND].sum(-1) / totals[REGION_BACKGROUND],
        head_recall_all=matched[REGION_HEAD] / totals[REGION_HEAD],
        body_recall_all=matched[REGION_BODY] / totals[REGION_BODY],
    )


def recall_at_fp_budget(recall: Tensor, fp: Tensor, budget: float) -> float:
    """Highest recall among sweep points whose false-positive rate <= budget.

    Args:
        recall (Tensor): ``(T,)`` recall per threshold.
        fp (Tensor): ``(T,)`` background false-positive rate per threshold.
        budget (float): Largest admissible false-positive rate.

    Returns:
        float: The best admissible recall; 0.0 when no sweep point meets the
        budget (predicting nothing, threshold ``+inf``, always does, with
        recall 0); NaN when ``recall`` or ``fp`` is undefined (empty region).
    """
    if bool(torch.isnan(recall).all() or torch.isnan(fp).all()):
        return math.nan
    ok = fp <= budget
    if not bool(ok.any()):
        return 0.0
    return float(recall[ok].max())


def recall_fp_auc(recall: Tensor, fp: Tensor, recall_all: Tensor) -> float:
    """Area under the recall vs background-FP curve of a threshold sweep.

    Definition: the sweep points ``(fp_k, recall_k)`` for ascending thresholds
    are taken in reverse order (FP and recall both grow as the threshold falls),
    framed by the two extreme operating points of the same predictor family:
    ``(0, 0)`` at threshold ``+inf`` (nothing foreground) and
    ``(1, recall_all)`` at threshold ``-inf`` (every pixel foreground; recall is
    then the share of the region with the right argmax class). The area is the
    trapezoid rule over this polyline, in ``[0, 1]``; a perfect CAM scores 1.

    Args:
        recall (Tensor): ``(T,)`` recall per ascending threshold.
        fp (Tensor): ``(T,)`` false-positive rate per ascending threshold.
        recall_all (Tensor): Scalar recall at threshold ``-inf``.

    Returns:
        float: The area; NaN when the region or the background is empty.
    """
    zero = recall.new_zeros(1)
    xs = torch.cat([zero, fp.flip(0), zero + 1])
    ys = torch.cat([zero, recall.flip(0), recall_all.reshape(1).to(recall)])
    if bool(torch.isnan(xs).any() or torch.isnan(ys).any()):
        return math.nan
    return float(torch.trapezoid(ys, xs))


def metrics_from_sweep(
    joint: Tensor,
    thresholds: Tensor,
    thr_index: int,
    part: Optional[Tensor] = None,
    fp_budget: float = 0.10,
    sweep_mask: Optional[Tensor] = None,
) -> Dict[str, object]:
    """Summarise an accumulated sweep (all values as fractions, not percent).

    Args:
        joint (Tensor): ``(T + 1, N, N)`` summed :func:`sweep_histogram` counts.
        thresholds (Tensor): ``(T,)`` the sorted thresholds used for them.
        thr_index (int): Index of the configured threshold in ``thresholds``.
        part (Tensor, optional): ``(T + 1, 3, 2)`` summed part counts.
            Defaults to None (no part metrics).
        fp_budget (float): Background false-positive budget. Defaults to 0.10.
        sweep_mask (Tensor, optional): ``(T,)`` bool, the thresholds that form
            the sweep (best threshold, budget and AUC use only these; others,
            e.g. an inserted configured threshold, are only read at
            ``thr_index``). Defaults to None (all).

    Returns:
        Dict[str, object]: ``iou`` ``(T, N)`` per-class IoU, ``miou`` ``(T,)``
        (NaN classes excluded), floats ``miou_at_thr``, ``miou_best``,
        ``best_thr`` and int ``best_index``; with ``part`` also floats
        ``head_recall``, ``body_recall``, ``bg_fp`` (at ``thr_index``),
        ``head_recall_at_fp``, ``body_recall_at_fp`` (see
        :func:`recall_at_fp_budget`) and ``head_fp_auc``, ``body_fp_auc`` (see
        :func:`recall_fp_auc`). Best-threshold ties go to the lowest threshold.
    """
    num_thr = thresholds.numel()
    if joint.shape[0] != num_thr + 1:
        raise ValueError(
            f'joint histogram has {joint.shape[0]} bins but {num_thr} thresholds '
            f'were given (expected {num_thr + 1} bins)'
        )
    if sweep_mask is None:
        sweep_mask = torch.ones(num_thr, dtype=torch.bool)
    sweep_mask = sweep_mask.to(torch.bool).cpu()
    iou = iou_from_confusion(confusion_from_sweep(joint)).cpu()
    miou = iou.nanmean(dim=1)
    sweep_idx = sweep_mask.nonzero().flatten()
    scores = miou[sweep_idx].nan_to_num(nan=-math.inf)
    best_index = int(sweep_idx[int(scores.argmax())])  # argmax: first maximum
    out: Dict[str, object] = dict(
        iou=iou,
        miou=miou,
        miou_at_thr=float(miou[thr_index]),
        miou_best=float(miou[best_index]),
        best_thr=float(thresholds[best_index]),
        best_index=best_index,
    )
    if part is not None:
        rates = {k: v.cpu() for k, v in part_rates_from_sweep(part).items()}
        fp = rates['bg_fp'][sweep_mask]
        for region in ('head', 'body'):
            recall = rates[f'{region}_recall']
            out[f'{region}_recall'] = float(recall[thr_index])
            out[f'{region}_recall_at_fp'] = recall_at_fp_budget(
                recall[sweep_mask], fp, fp_budget
            )
            out[f'{region}_fp_auc'] = recall_fp_auc(
                recall[sweep_mask], fp, rates[f'{region}_recall_all']
            )
        out['bg_fp'] = float(rates['bg_fp'][thr_index])
    return out
