"""Several metrics as one evaluator, with mmseg's ``--out`` options."""

import inspect
from typing import Any, Dict, List, Optional, Sequence, Union

from mmengine.evaluator import BaseMetric
from mmseg.registry import METRICS

#: arguments mmseg's ``tools/test.py --out`` sets on ``test_evaluator``
_OUTPUT_KEYS = ('output_dir', 'format_only')


@METRICS.register_module()
class WSSSMetric(BaseMetric):
    """mmseg's ``IoUMetric`` and the WSSS metrics (CAM sweep, F1) as one metric.

    mmseg's own ``tools/test.py --out DIR`` sets ``output_dir`` and
    ``keep_results`` on ``cfg.test_evaluator`` as on a single dict, which fails
    on a list of evaluators. This metric is that single dict: it builds each
    entry of ``sub_metrics``, feeds every batch to all of them and merges their
    results, so a config keeps mmseg's ``IoUMetric`` (the segmentation mIoU of
    ``pred_sem_seg``) beside :class:`CAMMetric` and
    :class:`MultiLabelF1Metric` and still works with mmseg's tools.

    ``output_dir`` and ``format_only`` are handed to the sub-metrics that take
    them (``IoUMetric`` writes one ``<image name>.png`` of ``pred_sem_seg`` per
    test image). With ``format_only`` the other sub-metrics are skipped (there
    may be no ground truth to score).

    Call graph::

        process(batch, samples) -> metric.process(batch, samples) for each
        evaluate(size) -> metric.evaluate(size) for each -> merged dict

    Args:
        sub_metrics (Sequence[dict | BaseMetric]): The metrics, e.g.
            ``[dict(type='IoUMetric', iou_metrics=['mIoU']),
            dict(type='CAMMetric')]``. Their keys (after each metric's own
            prefix) must not collide. (Not ``metrics``: mmengine's Runner
            builds a dict with a ``metrics`` key as an ``Evaluator``.)
        output_dir (str, optional): Where ``IoUMetric`` writes the predicted
            masks as PNGs. Defaults to None.
        format_only (bool): Only write the PNGs, compute no metric.
            Defaults to False.
        keep_results (bool): Accepted for mmseg's ``tools/test.py --out``,
            which sets it; it has no effect (as in mmseg's ``IoUMetric``).
            Defaults to False.
        collect_device (str): Unused (each sub-metric collects its own
            results). Defaults to ``'cpu'``.
        prefix (str, optional): Not allowed: give prefixes to the sub-metrics.
    """

    def __init__(
        self,
        sub_metrics: Sequence[Union[dict, BaseMetric]],
        output_dir: Optional[str] = None,
        format_only: bool = False,
        keep_results: bool = False,
        collect_device: str = 'cpu',
        prefix: Optional[str] = None,
        **kwargs,
    ) -> None:
        if prefix is not None:
            raise ValueError(
                'WSSSMetric: set a prefix on the sub-metrics in `sub_metrics`, '
                f'not on WSSSMetric (got prefix={prefix!r})'
            )
        # '_' silences BaseMetric's "prefix is not set" message; never used
        super().__init__(collect_device=collect_device, prefix='_', **kwargs)
        if isinstance(sub_metrics, (dict, BaseMetric)) or not sub_metrics:
            raise TypeError(
                'WSSSMetric: `sub_metrics` must be a non-empty list of metric '
                f'configs, got {sub_metrics!r}'
            )
        self.output_dir = output_dir
        self.format_only = format_only
        self.keep_results = keep_results
        self.metrics: List[BaseMetric] = [
            self._build(cfg, output_dir, format_only) for cfg in sub_metrics
        ]
        if (output_dir or format_only) and not any(
            takes_output_args(type(m)) for m in self.metrics
        ):
            names = [type(m).__name__ for m in self.metrics]
            raise ValueError(
                'WSSSMetric: output_dir/format_only need a metric that writes '
                f'predictions (e.g. IoUMetric) in `sub_metrics`, got {names}'
            )

    @staticmethod
    def _build(
        cfg: Union[dict, BaseMetric], output_dir: Optional[str], format_only: bool
    ) -> BaseMetric:
        if isinstance(cfg, BaseMetric):
            return cfg
        if not isinstance(cfg, dict) or 'type' not in cfg:
            raise TypeError(
                f'WSSSMetric: each entry of `sub_metrics` must be a dict with a '
                f'`type`, got {cfg!r}'
            )
        cfg = dict(cfg)
        metric_cls = METRICS.get(cfg['type'])
        if metric_cls is None:
            raise KeyError(f'WSSSMetric: unknown metric type {cfg["type"]!r}')
        if takes_output_args(metric_cls):
            if output_dir is not None:
                cfg['output_dir'] = output_dir
            if format_only:
                cfg['format_only'] = True
        return METRICS.build(cfg)

    @property
    def dataset_meta(self) -> Optional[dict]:
        return self._dataset_meta

    @dataset_meta.setter
    def dataset_meta(self, dataset_meta: dict) -> None:
        self._dataset_meta = dataset_meta
        for metric in getattr(self, 'metrics', ()):
            metric.dataset_meta = dataset_meta

    def _active(self) -> List[BaseMetric]:
        if not self.format_only:
            return self.metrics
        return [m for m in self.metrics if getattr(m, 'format_only', False)]

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        for metric in self._active():
            metric.process(data_batch, data_samples)

    def compute_metrics(self, results: list) -> Dict[str, float]:
        raise NotImplementedError('WSSSMetric.evaluate merges its sub-metrics')

    def evaluate(self, size: int) -> Dict[str, Any]:
        merged: Dict[str, Any] = {}
        for metric in self._active():
            results = metric.evaluate(size)
            clash = sorted(set(results) & set(merged))
            if clash:
                raise ValueError(
                    f'WSSSMetric: {type(metric).__name__} reports {clash}, '
                    'already reported by another metric; give it a prefix'
                )
            merged.update(results)
        return merged


def takes_output_args(metric_cls: type) -> bool:
    """Whether ``metric_cls.__init__`` names ``output_dir`` and ``format_only``.

    ``WSSSMetric`` itself does; so does mmseg's ``IoUMetric``.
    """
    params = inspect.signature(metric_cls.__init__).parameters
    return all(key in params for key in _OUTPUT_KEYS)
