"""CAM evaluation: the threshold-sweep metric and its pure tensor maths."""

from .cam_metric import CAMMetric
from .functional import (
    confusion_from_sweep,
    default_thresholds,
    foreground_max,
    iou_from_confusion,
    metrics_from_sweep,
    part_rates_from_sweep,
    recall_at_fp_budget,
    recall_fp_auc,
    sweep_histogram,
    threshold_bins,
)
from .multilabel_f1_metric import MultiLabelF1Metric
from .wsss_metric import WSSSMetric

__all__ = [
    'CAMMetric',
    'MultiLabelF1Metric',
    'WSSSMetric',
    'confusion_from_sweep',
    'default_thresholds',
    'foreground_max',
    'iou_from_confusion',
    'metrics_from_sweep',
    'part_rates_from_sweep',
    'recall_at_fp_budget',
    'recall_fp_auc',
    'sweep_histogram',
    'threshold_bins',
]
