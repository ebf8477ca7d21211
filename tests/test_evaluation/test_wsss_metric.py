"""WSSSMetric: one evaluator dict for IoUMetric + CAM metrics, mmseg's --out."""

import os

import numpy as np
import pytest
from mmengine.config import Config
from mmengine.evaluator import Evaluator
from mmseg.evaluation import IoUMetric
from mmseg.registry import METRICS
from PIL import Image

from acr_plugin.evaluation import CAMMetric, WSSSMetric
from tests.scripts import load_script
from tests.test_evaluation.test_cam_metric import CLASSES, make_images, to_sample

SUB_METRICS = [
    dict(type='IoUMetric', iou_metrics=['mIoU']),
    dict(type='CAMMetric', fp_budget=0.2),
]


def samples(names=('a', 'b', 'c', 'd')):
    out = []
    for name, img in zip(names, make_images(seed=3)):
        sample = to_sample(*img)
        sample.set_metainfo(dict(img_path=f'/data/{name}.jpg'))
        out.append(sample.to_dict())
    return out


def evaluate(metric, batch=2):
    evaluator = Evaluator(metric)
    evaluator.dataset_meta = dict(classes=CLASSES)
    data = samples()
    for i in range(0, len(data), batch):
        evaluator.process(data[i : i + batch], {})
    return evaluator.evaluate(len(data))


def test_equals_the_separate_metrics():
    """Same numbers as mmseg's IoUMetric and CAMMetric given separately."""
    separate = evaluate([IoUMetric(iou_metrics=['mIoU']), CAMMetric(fp_budget=0.2)])
    combined = evaluate(METRICS.build(dict(type='WSSSMetric', sub_metrics=SUB_METRICS)))
    assert combined.keys() == separate.keys()
    assert 'mIoU' in combined and 'mIoU_best' in combined
    for key, value in separate.items():
        assert combined[key] == pytest.approx(value), key


def test_dataset_meta_reaches_every_sub_metric():
    metric = WSSSMetric(SUB_METRICS)
    metric.dataset_meta = dict(classes=CLASSES)
    assert all(m.dataset_meta == dict(classes=CLASSES) for m in metric.metrics)


def test_output_dir_as_mmseg_test_sets_it(tmp_path):
    """mmseg's tools/test.py --out: output_dir + keep_results on the one dict."""
    cfg = dict(type='WSSSMetric', sub_metrics=SUB_METRICS)
    cfg['output_dir'] = str(tmp_path)
    cfg['keep_results'] = True
    metric = METRICS.build(cfg)
    results = evaluate(metric)
    assert 'mIoU' in results and 'mIoU_best' in results
    assert sorted(os.listdir(tmp_path)) == ['a.png', 'b.png', 'c.png', 'd.png']
    expected = samples()[1]['pred_sem_seg']['data'][0].numpy()
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / 'b.png')), expected)


def test_format_only_writes_pngs_and_skips_the_cam_metrics(tmp_path):
    metric = WSSSMetric(SUB_METRICS, output_dir=str(tmp_path), format_only=True)
    assert evaluate(metric) == {}
    assert len(os.listdir(tmp_path)) == 4
    assert metric.metrics[1].results == []  # CAMMetric never saw a sample


@pytest.mark.parametrize(
    'kwargs, error, match',
    [
        (dict(sub_metrics=dict(type='IoUMetric')), TypeError, 'non-empty list'),
        (dict(sub_metrics=[]), TypeError, 'non-empty list'),
        (dict(sub_metrics=[dict(iou_metrics=['mIoU'])]), TypeError, 'with a `type`'),
        (dict(sub_metrics=[dict(type='NoSuchMetric')]), KeyError, 'NoSuchMetric'),
        (dict(sub_metrics=SUB_METRICS, prefix='x'), ValueError, 'sub-metrics'),
        (
            dict(sub_metrics=[dict(type='CAMMetric')], output_dir='/tmp/x'),
            ValueError,
            'writes predictions',
        ),
    ],
)
def test_bad_configs_are_refused(kwargs, error, match):
    with pytest.raises(error, match=match):
        WSSSMetric(**kwargs)


def test_key_clash_names_the_metric():
    metric = WSSSMetric([dict(type='CAMMetric'), dict(type='CAMMetric')])
    with pytest.raises(ValueError, match='CAMMetric reports .*give it a prefix'):
        evaluate(metric)


def test_runner_builds_it_as_a_metric_not_an_evaluator():
    """A dict with a ``metrics`` key would be built as an Evaluator by mmengine."""
    from mmengine.runner import Runner

    evaluator = Runner.build_evaluator(
        Runner.__new__(Runner), dict(type='WSSSMetric', sub_metrics=SUB_METRICS)
    )
    assert isinstance(evaluator.metrics[0], WSSSMetric)


def test_tools_test_out_sets_the_writing_metrics_only():
    tool = load_script('tools/test.py')
    cfg = Config(dict(test_evaluator=dict(type='WSSSMetric', sub_metrics=SUB_METRICS)))
    tool.set_output_dir(cfg, 'OUT')
    assert cfg.test_evaluator.output_dir == 'OUT'
    cfg = Config(
        dict(test_evaluator=[dict(type='IoUMetric'), dict(type='MultiLabelF1Metric')])
    )
    tool.set_output_dir(cfg, 'OUT')
    assert cfg.test_evaluator[0].output_dir == 'OUT'
    assert 'output_dir' not in cfg.test_evaluator[1]
    cfg = Config(dict(test_evaluator=[dict(type='CAMMetric')]))
    with pytest.raises(ValueError, match='--out needs'):
        tool.set_output_dir(cfg, 'OUT')


def test_tools_test_out_refuses_a_classifier_evaluator():
    tool = load_script('tools/test.py')
    cfg = Config(dict(test_evaluator=dict(type='MultiLabelF1Metric')))
    with pytest.raises(ValueError, match='--out needs'):
        tool.set_output_dir(cfg, 'OUT')
