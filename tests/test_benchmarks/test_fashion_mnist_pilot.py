"""The Fashion-MNIST pilot command runs end to end (tiny stand-in IDX files)."""

import math
import os.path as osp

import pytest

from acr_plugin.datasets.fashion_mnist import make_tiny_fashion_mnist
from tests.scripts import TINY_PROTOCOL_ARGS, run_benchmark


@pytest.mark.slow
def test_pilot_reports_cam_trivial_and_partial_activation(tmp_path):
    data_root = make_tiny_fashion_mnist(str(tmp_path / 'idx'))
    args = ['--work-dir', str(tmp_path / 'work'), '--data-root', data_root]
    args += [*TINY_PROTOCOL_ARGS, '--pictures', '2']
    report = run_benchmark('benchmarks/fashion_mnist_pilot.py', args, timeout=600)
    for loc in ('patch', 'grad'):
        cam = report['cam'][loc]
        assert math.isfinite(cam['mIoU_best']), loc
        assert 'object_recall_at_fp0.10' in cam
        assert not any(key.startswith(('head_', 'body_')) for key in cam)
    assert set(report['trivial']) == {'all_background', 'whole_image_labels'}
    partial = report['partial_activation']
    assert partial['all_items']['items'] > 0
    # the per-item diagnosis uses CAMMetric's threshold rule
    assert partial['all_items']['pixel_recall'] == pytest.approx(
        report['cam']['patch']['object_recall_at_fp0.10'], abs=0.02
    )
    assert set(partial['per_class']) == {
        'tshirt_top',
        'trouser',
        'pullover',
        'dress',
        'coat',
        'sandal',
        'shirt',
        'sneaker',
        'bag',
        'ankle_boot',
    }
    assert osp.isfile(partial['picture'])
