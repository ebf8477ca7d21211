"""Image-level multi-label classification F1 for WSSS classifiers."""

from typing import Dict, Optional, Sequence

import torch
from mmengine.evaluator import BaseMetric
from mmseg.registry import METRICS

from acr_plugin.structures import IMG_LABELS, PRED_IMG_LOGITS


def multilabel_f1_counts(
    logits: torch.Tensor, labels: torch.Tensor, thr: float = 0.5
) -> torch.Tensor:
    """Per-class ``(tp, fp, fn)`` counts ``(C, 3)`` at sigmoid probability thr."""
    pred = torch.sigmoid(logits.float()) > thr
    gt = labels > 0.5
    tp = (pred & gt).sum(0)
    fp = (pred & ~gt).sum(0)
    fn = (~pred & gt).sum(0)
    return torch.stack([tp, fp, fn], dim=1).to(torch.long)


@METRICS.register_module()
class MultiLabelF1Metric(BaseMetric):
    """Micro / macro F1 of the image-level predictions of a WSSS classifier.

    Reads ``pred_img_logits`` (written by the segmentor's ``predict``) and
    ``img_labels`` from each sample. Keeps one running ``(C, 3)`` count per rank,
    so distributed evaluation works through mmengine's ``collect_results``.
    A class is predicted at sigmoid probability > 0.5.

    Args:
        collect_device (str): ``'cpu'`` or ``'gpu'``. Defaults to ``'cpu'``.
        prefix (str, optional): Metric-name prefix. Defaults to None.
    """

    default_prefix: Optional[str] = None

    def __init__(
        self,
        collect_device: str = 'cpu',
        prefix: Optional[str] = None,
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        for i, sample in enumerate(data_samples):
            if PRED_IMG_LOGITS not in sample or IMG_LABELS not in sample:
                raise KeyError(
                    f'MultiLabelF1Metric: sample {i} lacks "{PRED_IMG_LOGITS}" '
                    f'or "{IMG_LABELS}" (a WSSS segmentor and PackWSSSInputs '
                    'produce both)'
                )
            counts = multilabel_f1_counts(
                sample[PRED_IMG_LOGITS][None].cpu(),
                sample[IMG_LABELS][None].cpu(),
            )
            if self.results:
                self.results[0] += counts
            else:
                self.results.append(counts)

    def compute_metrics(self, results: list) -> Dict[str, float]:
        counts = torch.stack(results).sum(0).double()
        tp, fp, fn = counts.unbind(1)
        micro = 2 * tp.sum() / (2 * tp.sum() + fp.sum() + fn.sum()).clamp(min=1)
        per_class = 2 * tp / (2 * tp + fp + fn).clamp(min=1)
        present = (tp + fn) > 0
        macro = per_class[present].mean() if present.any() else per_class.new_tensor(0)
        return dict(
            cls_f1_micro=round(100 * micro.item(), 2),
            cls_f1_macro=round(100 * macro.item(), 2),
        )
