"""tools/run_synthetic_chain.py: WSSS model -> pseudo labels -> seg net."""

import json
import math
import os
import os.path as osp

import numpy as np
import pytest
from mmengine.config import Config

from acr_plugin.apis import read_label_png
from tests.scripts import load_script

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SEG = 'configs/second_stage/fcn_r18-tiny-d8_1xb16-1k_synthetic-pseudo-64x64.py'


def _chain():
    return load_script('tools/run_synthetic_chain.py')


def test_set_iters_scales_schedules():
    cfg = Config.fromfile(osp.join(ROOT, SEG))
    _chain().set_iters(cfg, 4)
    assert cfg.train_cfg.max_iters == 4 and cfg.train_cfg.val_interval == 4
    assert cfg.default_hooks.checkpoint.interval == 4
    warmup, poly = cfg.param_scheduler
    assert (warmup.begin, warmup.end) == (0, 1)
    assert (poly.begin, poly.end) == (0, 4)


def test_match_num_classes():
    cfg = Config.fromfile(osp.join(ROOT, SEG))
    _chain().match_num_classes(cfg, 4)
    head = cfg.model.decode_head
    assert head.num_classes == 4
    assert head.loss_decode.class_weight == [0.5, 1.0, 1.0, 1.0]


@pytest.mark.slow
def test_whole_chain_tiny(tmp_path, capsys):
    chain = _chain()
    work = str(tmp_path)
    argv = [
        '--work-dir',
        work,
        '--num-train',
        '12',
        '--num-val',
        '6',
        '--wsss-iters',
        '2',
        '--seg-iters',
        '2',
        '--num-workers',
        '0',
    ]
    summary = chain.main(argv)
    printed = capsys.readouterr().out
    for key in ('cam_miou_val_best', 'pseudo_label_miou_train', 'seg_miou_val'):
        assert math.isfinite(summary[key]), key
    assert 0 <= summary['bg_thr'] < 1
    assert summary['bg_thr'] == summary['cam_best_thr_val']  # auto
    assert summary['num_train'] == 12 and summary['num_val'] == 6
    with open(osp.join(work, 'summary.json')) as f:
        assert json.load(f) == summary
    labels = sorted(os.listdir(osp.join(work, 'pseudo_labels')))
    assert labels == [f'{i:06d}.png' for i in range(12)]
    assert read_label_png(osp.join(work, 'pseudo_labels', labels[0])).shape == (64, 64)
    assert 'synthetic WSSS chain' in printed
    assert f'{summary["seg_miou_val"]:.2f}' in printed
    assert f'{summary["pseudo_label_miou_train"]:.2f}' in printed

    # resume: finished stages and files are reused, the numbers repeat
    mtime = os.stat(osp.join(work, 'pseudo_labels', labels[0])).st_mtime
    again = chain.main(argv + ['--resume', '--bg-thr', '0.5'])
    assert 'training skipped' in capsys.readouterr().out
    assert again['bg_thr'] == 0.5 and again['bg_thr_source'] == 'given'
    assert os.stat(osp.join(work, 'pseudo_labels', labels[0])).st_mtime == mtime
    assert again['pseudo_label_miou_train'] == summary['pseudo_label_miou_train']
    np.testing.assert_allclose(again['seg_miou_val'], summary['seg_miou_val'])
