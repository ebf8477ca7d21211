"""The Fashion-MNIST pilot command runs end to end (tiny stand-in IDX files)."""

import json
import os
import os.path as osp
import subprocess
import sys

import pytest

from acr_plugin.datasets.fashion_mnist import make_tiny_fashion_mnist

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


@pytest.mark.slow
def test_pilot_reports_cam_trivial_and_partial_activation(tmp_path):
    data_root = make_tiny_fashion_mnist(str(tmp_path / 'idx'))
    cmd = [
        sys.executable,
        osp.join(ROOT, 'benchmarks/fashion_mnist_pilot.py'),
        '--work-dir',
        str(tmp_path / 'work'),
        '--data-root',
        data_root,
        '--iters',
        '2',
        '--batch',
        '4',
        '--pretrain-iters',
        '1',
        '--num-train',
        '8',
        '--num-val',
        '4',
        '--pictures',
        '2',
    ]
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    for loc in ('patch', 'grad'):
        cam = report['cam'][loc]
        assert 0 <= cam['mIoU_best'] <= 100
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
