"""CAM quality metric: background-threshold sweep and partial-activation stats."""

import math
from typing import Any, Dict, List, Optional, Sequence

import torch
from mmengine.dist import get_dist_info
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log
from mmengine.structures import BaseDataElement
from mmseg.registry import METRICS
from torch import Tensor

from acr_plugin.evaluation.functional import (
    default_thresholds,
    metrics_from_sweep,
    sweep_histogram,
)
from acr_plugin.structures import PART_MAP

#: relative tolerance when checking that seg_logits channel 0 is a constant plane
#: (bilinear resizing to the original size can move it by one ulp)
_PLANE_RTOL = 1e-5


@METRICS.register_module()
class CAMMetric(BaseMetric):
    """mIoU over a background-threshold sweep plus partial-activation diagnostics.

    Each predicted sample must carry ``seg_logits`` ``(C + 1, H, W)`` at the
    original image size: channel 0 the constant background threshold ``t0``,
    channels ``1..C`` the CAMs normalised to ``[0, 1]``, and ``gt_sem_seg``.
    The prediction at threshold ``t`` is ``argmax([t, cams])`` (background wins
    ties); every threshold is evaluated from one pass over the data (see
    :mod:`acr_plugin.evaluation.functional`). Samples with a ``gt_part_map``
    (synthetic data: 0 background, 1 body, 2 head) add recall of heads and
    bodies (predicted foreground *with the right class*) and the background
    false-positive rate (``gt == 0`` predicted as any class).

    Reported keys (IoU, recall and rates in percent with 2 decimals, like mmseg):

    - ``mIoU_at_thr``: mIoU at ``t0``; equals ``IoUMetric`` on ``pred_sem_seg``
      except for pixels whose CAM value is within rounding noise of ``t0`` (a
      bilinear resize to the original size can move channel 0 by one ulp).
    - ``mIoU_best`` / ``best_thr``: best mIoU over the sweep and its threshold
      (lowest threshold on ties).
    - with part maps: ``head_recall``, ``body_recall``, ``bg_fp`` at ``t0``;
      ``head_recall_at_fp{budget:.2f}`` / ``body_recall_at_fp{budget:.2f}`` (best
      recall among sweep thresholds with bg-FP <= ``fp_budget``, 0 if none);
      ``head_fp_auc`` / ``body_fp_auc`` (area under recall vs bg-FP, see
      :func:`~acr_plugin.evaluation.functional.recall_fp_auc`).

    A per-class IoU table (best threshold and ``t0``) is logged. mIoU is the
    mean over classes excluding those with neither ground truth nor prediction.

    Memory and distributed evaluation: ``self.results`` holds a single running
    accumulator per rank (a dict of int64 count tensors), so memory does not
    grow with the dataset; ``compute_metrics`` sums the ranks' accumulators.
    mmengine's ``collect_results`` truncates the gathered list to the dataset
    size; with one element per rank that keeps every rank unless the dataset is
    smaller than the world size, and then the dropped ranks hold only padding
    samples. ``DefaultSampler`` pads the last round of the dataset with repeated
    samples (as ``collect_results`` assumes, sample ``i`` of rank ``r`` is
    dataset position ``r + i * world_size``); only a rank's last sample can be
    padding, so each rank also keeps its last sample's counts apart and
    ``compute_metrics`` removes them when that position is past the dataset
    size, giving the same numbers as a single process.

    Args:
        thresholds (Sequence[float], optional): Background thresholds of the
            sweep. Defaults to None (``0.00, 0.01, ..., 0.99``).
        bg_thr (float, optional): The configured threshold ``t0``. Defaults to
            None: read from ``seg_logits`` channel 0 (which must then be a
            constant plane with the same value in every sample).
        fp_budget (float): Background false-positive budget for the
            ``*_recall_at_fp`` keys. Defaults to 0.10.
        ignore_index (int): Ground-truth label ignored everywhere.
            Defaults to 255.
        pred_key (str): Sample field holding the CAM seg logits. Models that
            predict with a segmentation decoder (e.g. ``ToCo``) keep the
            decoder's output in ``seg_logits`` (for mmseg's ``IoUMetric``) and
            their CAMs in ``cam_seg_logits``; evaluate those with
            ``pred_key='cam_seg_logits', prefix='cam'``. Defaults to
            ``'seg_logits'``.
        collect_device (str): Device for collecting results across ranks,
            ``'cpu'`` or ``'gpu'``. Defaults to ``'cpu'``.
        prefix (str, optional): Prefix added to the metric names.
            Defaults to None.
    """

    default_prefix: Optional[str] = None

    def __init__(
        self,
        thresholds: Optional[Sequence[float]] = None,
        bg_thr: Optional[float] = None,
        fp_budget: float = 0.10,
        ignore_index: int = 255,
        pred_key: str = 'seg_logits',
        collect_device: str = 'cpu',
        prefix: Optional[str] = None,
        **kwargs,
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix, **kwargs)
        if thresholds is None:
            grid = default_thresholds()
        else:
            grid = torch.as_tensor(list(thresholds), dtype=torch.float64)
            if grid.dim() != 1 or grid.numel() == 0 or bool(grid.isnan().any()):
                raise ValueError(
                    'CAMMetric: thresholds must be a non-empty sequence of '
                    f'numbers, got {thresholds!r}'
                )
            grid = grid.unique(sorted=True)
        if not 0.0 <= fp_budget <= 1.0:
            raise ValueError(f'CAMMetric: fp_budget must be in [0, 1], got {fp_budget}')
        self.thresholds = grid
        self.bg_thr = None if bg_thr is None else float(bg_thr)
        self.fp_budget = float(fp_budget)
        self.ignore_index = ignore_index
        self.pred_key = pred_key
        self._eval_size: Optional[int] = None

    # ------------------------------------------------------------------ process
    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        """Add the counts of a batch of predictions to the rank's accumulator.

        Args:
            data_batch (Any): A batch of data from the dataloader (unused).
            data_samples (Sequence[dict]): Model outputs (``SegDataSample`` or
                their ``to_dict()``) with ``seg_logits`` and ``gt_sem_seg``.
        """
        for i, sample in enumerate(data_samples):
            if isinstance(sample, BaseDataElement):
                sample = sample.to_dict()
            seg_logits = _pixel_data(sample, self.pred_key, i, hint=_LOGITS_HINT)
            gt = _pixel_data(sample, 'gt_sem_seg', i, hint=_GT_HINT)
            part_map = _pixel_data(sample, PART_MAP, i) if PART_MAP in sample else None
            if seg_logits.dim() != 3 or seg_logits.shape[0] < 2:
                raise ValueError(
                    f'CAMMetric: {self.pred_key} must be (C + 1, H, W) with C >= 1, '
                    f'got {tuple(seg_logits.shape)} in data sample {i}'
                )
            num_classes = self._num_classes(seg_logits.shape[0])
            if not self.results:
                self.results.append(self._new_state(seg_logits, num_classes))
            state = self.results[0]
            if self.bg_thr is None:
                self._check_plane(seg_logits[0], state['bg_thr'], i)
            joint, part = sweep_histogram(
                seg_logits[1:],
                gt,
                state['thresholds'],
                num_classes,
                part_map=part_map,
                ignore_index=self.ignore_index,
            )
            joint = joint.cpu()
            if state['joint'].shape != joint.shape:
                raise ValueError(
                    f'CAMMetric: data sample {i} has {num_classes} seg_logits '
                    'channels but earlier samples had '
                    f'{state["joint"].shape[1]}'
                )
            part = torch.zeros_like(state['part']) if part is None else part.cpu()
            state['joint'] += joint
            state['part'] += part
            state['last_joint'], state['last_part'] = joint, part
            state['has_part'] = state['has_part'] or part_map is not None
            state['num_samples'] += 1

    def _num_classes(self, channels: int) -> int:
        """Check ``seg_logits`` channels against ``dataset_meta['classes']``."""
        classes = (self.dataset_meta or {}).get('classes')
        if classes is not None and len(classes) != channels:
            raise ValueError(
                f'CAMMetric: seg_logits has {channels} channels but dataset_meta '
                f'lists {len(classes)} classes (background included)'
            )
        return channels

    def _new_state(self, seg_logits: Tensor, num_classes: int) -> Dict[str, Any]:
        """The rank's accumulator, created on the first processed sample."""
        if self.bg_thr is None:
            # a corner pixel: bilinear resizing copies it exactly
            bg_thr = float(seg_logits[0].reshape(-1)[0])
        else:
            bg_thr = self.bg_thr
        # insert t0 unless a sweep value is the same threshold in CAM precision
        dtype = seg_logits.dtype
        grid_in_dtype = self.thresholds.to(dtype).double()
        t0_in_dtype = float(torch.tensor(bg_thr, dtype=dtype))
        same = (grid_in_dtype == t0_in_dtype).nonzero().flatten()
        if same.numel():
            thresholds = self.thresholds.clone()
            sweep_mask = torch.ones(thresholds.numel(), dtype=torch.bool)
            thr_index = int(same[0])
        else:
            thresholds, order = torch.sort(
                torch.cat([self.thresholds, self.thresholds.new_tensor([bg_thr])])
            )
            sweep_mask = order < self.thresholds.numel()
            thr_index = int((~sweep_mask).nonzero()[0])
        rank, world_size = get_dist_info()
        num_bins = thresholds.numel() + 1
        return dict(
            joint=torch.zeros(num_bins, num_classes, num_classes, dtype=torch.long),
            part=torch.zeros(num_bins, 3, 2, dtype=torch.long),
            last_joint=None,
            last_part=None,
            has_part=False,
            num_samples=0,
            thresholds=thresholds,
            sweep_mask=sweep_mask,
            thr_index=thr_index,
            bg_thr=bg_thr,
            rank=rank,
            world_size=world_size,
        )

    @staticmethod
    def _check_plane(plane: Tensor, bg_thr: float, index: int) -> None:
        """Check that seg_logits channel 0 is the constant plane ``bg_thr``."""
        lo, hi = (float(v) for v in torch.aminmax(plane.float()))
        tol = _PLANE_RTOL * max(1.0, abs(bg_thr))
        if lo < bg_thr - tol or hi > bg_thr + tol:
            raise ValueError(
                'CAMMetric: seg_logits channel 0 must be the constant background '
                f'threshold plane {bg_thr:g}, but data sample {index} spans '
                f'[{lo:g}, {hi:g}]; pass bg_thr= to CAMMetric if the model '
                'writes something else there'
            )

    # ----------------------------------------------------------------- evaluate
    def evaluate(self, size: int) -> dict:
        """Record the dataset size (to drop sampler padding), then evaluate.

        Args:
            size (int): Length of the whole evaluation dataset.

        Returns:
            dict: The metrics (see the class docstring).
        """
        self._eval_size = size
        try:
            return super().evaluate(size)
        finally:
            self._eval_size = None

    def compute_metrics(self, results: list) -> Dict[str, float]:
        """Sum the ranks' accumulators and compute the metrics.

        Args:
            results (list): One accumulator dict per rank.

        Returns:
            Dict[str, float]: The metrics (see the class docstring).
        """
        if not results:
            raise ValueError('CAMMetric: no data sample was processed')
        first = results[0]
        joint = torch.zeros_like(first['joint'])
        part = torch.zeros_like(first['part'])
        has_part = False
        for state in results:
            if not torch.equal(state['thresholds'], first['thresholds']):
                raise ValueError(
                    'CAMMetric: ranks swept different thresholds (different '
                    'background thresholds in seg_logits channel 0?)'
                )
            joint += state['joint']
            part += state['part']
            has_part = has_part or state['has_part']
            if self._is_padding(state):
                joint -= state['last_joint']
                part -= state['last_part']

        out = metrics_from_sweep(
            joint,
            first['thresholds'],
            first['thr_index'],
            part=part if has_part else None,
            fp_budget=self.fp_budget,
            sweep_mask=first['sweep_mask'],
        )
        self._log_table(out, first['bg_thr'], first['thr_index'])

        metrics = dict(
            mIoU_at_thr=_percent(out['miou_at_thr']),
            mIoU_best=_percent(out['miou_best']),
            best_thr=round(out['best_thr'], 4),
        )
        if has_part:
            budget = f'{self.fp_budget:.2f}'
            metrics.update(
                head_recall=_percent(out['head_recall']),
                body_recall=_percent(out['body_recall']),
                bg_fp=_percent(out['bg_fp']),
            )
            metrics[f'head_recall_at_fp{budget}'] = _percent(out['head_recall_at_fp'])
            metrics[f'body_recall_at_fp{budget}'] = _percent(out['body_recall_at_fp'])
            metrics['head_fp_auc'] = _percent(out['head_fp_auc'])
            metrics['body_fp_auc'] = _percent(out['body_fp_auc'])
        return metrics

    def _is_padding(self, state: Dict[str, Any]) -> bool:
        """Whether the rank's last sample is ``DefaultSampler`` padding."""
        size, world_size = self._eval_size, state['world_size']
        if size is None or world_size <= 1 or state['num_samples'] == 0:
            return False
        position = state['rank'] + (state['num_samples'] - 1) * world_size
        return position >= size

    def _log_table(self, out: Dict[str, Any], bg_thr: float, thr_index: int) -> None:
        """Log per-class IoU at the best and the configured threshold."""
        iou: Tensor = out['iou']
        num_classes = iou.shape[1]
        names = list((self.dataset_meta or {}).get('classes') or [])
        if len(names) != num_classes:
            names = [f'class_{c}' for c in range(num_classes)]
        head_best = f'IoU@{out["best_thr"]:.2f}(best)'
        head_thr = f'IoU@{bg_thr:.2f}(thr)'
        rows: List[Sequence[str]] = [('Class', head_best, head_thr)]
        for c, name in enumerate(names):
            rows.append(
                (
                    str(name),
                    f'{_percent(float(iou[out["best_index"], c])):.2f}',
                    f'{_percent(float(iou[thr_index, c])):.2f}',
                )
            )
        widths = [max(len(r[j]) for r in rows) for j in range(3)]
        rule = '+' + '+'.join('-' * (w + 2) for w in widths) + '+'
        lines = [rule]
        for n, row in enumerate(rows):
            cells = [row[0].ljust(widths[0])] + [
                cell.rjust(w) for cell, w in zip(row[1:], widths[1:])
            ]
            lines.append('| ' + ' | '.join(cells) + ' |')
            if n == 0:
                lines.append(rule)
        lines.append(rule)
        print_log('CAMMetric per-class results:', logger='current')
        print_log('\n' + '\n'.join(lines), logger='current')


_LOGITS_HINT = (
    "the model's predict() must fill SegDataSample.seg_logits with the "
    '(C + 1, H, W) CAM logits (channel 0 = background threshold)'
)
_GT_HINT = 'the evaluation pipeline must load annotations (LoadAnnotations)'


def _pixel_data(sample: dict, key: str, index: int, hint: str = '') -> Tensor:
    """``sample[key]['data']`` with an error naming the missing key."""
    field = sample.get(key)
    if field is None:
        raise KeyError(
            f'CAMMetric: data sample {index} has no "{key}" field'
            + (f': {hint}' if hint else '')
        )
    data = field.get('data') if isinstance(field, dict) else field.data
    if not isinstance(data, Tensor):
        raise TypeError(
            f'CAMMetric: "{key}" of data sample {index} must hold a tensor, got '
            f'{type(data).__name__}'
        )
    return data


def _percent(value: float) -> float:
    """Fraction -> percent with 2 decimals (NaN stays NaN)."""
    return value if math.isnan(value) else round(value * 100, 2)
