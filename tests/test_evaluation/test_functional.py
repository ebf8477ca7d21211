"""Tests for the CAM threshold-sweep maths in acr_plugin/evaluation/functional.py."""

import numpy as np
import pytest
import torch

from acr_plugin.evaluation import (
    confusion_from_sweep,
    default_thresholds,
    iou_from_confusion,
    part_rates_from_sweep,
    recall_fp_auc,
    sweep_histogram,
    threshold_bins,
)
from tests.cam_sweep_reference import GRID, NUM_CLASSES, make_images, reference


def test_sweep_matches_reference_at_every_threshold():
    images = make_images(0)
    thresholds = default_thresholds()
    assert thresholds.numel() == 100 and thresholds[-1] == 0.99
    joint = part = 0
    for cams, gt, pmap in images:
        j, p = sweep_histogram(
            torch.from_numpy(cams),
            torch.from_numpy(gt),
            thresholds,
            NUM_CLASSES,
            part_map=torch.from_numpy(pmap),
        )
        assert j.shape == (101, NUM_CLASSES, NUM_CLASSES) and p.shape == (101, 3, 2)
        joint, part = joint + j, part + p
    ref = reference(images, GRID)
    conf = confusion_from_sweep(joint)
    np.testing.assert_array_equal(conf.numpy(), ref['conf'])
    np.testing.assert_allclose(iou_from_confusion(conf).numpy(), ref['iou'])
    rates = part_rates_from_sweep(part)
    np.testing.assert_allclose(rates['bg_fp'].numpy(), ref['rates'][:, 0])
    np.testing.assert_allclose(rates['body_recall'].numpy(), ref['rates'][:, 1])
    np.testing.assert_allclose(rates['head_recall'].numpy(), ref['rates'][:, 2])
    # threshold -inf: every pixel foreground with its argmax class
    ref_all = reference(images, [-1.0])['rates'][0]
    assert float(rates['body_recall_all']) == pytest.approx(ref_all[1])
    assert float(rates['head_recall_all']) == pytest.approx(ref_all[2])


def test_threshold_bins_ties_go_to_background():
    thr = torch.tensor([0.0, 0.25, 0.5], dtype=torch.float64)
    values = torch.tensor([0.0, 0.1, 0.25, 0.3, 0.5, 1.0])
    assert threshold_bins(values, thr).tolist() == [0, 1, 1, 2, 2, 3]
    # rounded to the CAM precision first: 0.45 in half precision ties with 0.45
    half = torch.tensor([0.45], dtype=torch.float16)
    assert threshold_bins(half, torch.tensor([0.45], dtype=torch.float64)).item() == 0
    with pytest.raises(ValueError, match='sorted'):
        threshold_bins(values, torch.tensor([0.5, 0.1]))


def test_sweep_histogram_rejects_bad_shapes():
    cams = torch.rand(NUM_CLASSES - 1, 4, 5)
    with pytest.raises(ValueError, match='gt has shape'):
        sweep_histogram(cams, torch.zeros(4, 4).long(), default_thresholds(), 5)
    with pytest.raises(ValueError, match='foreground CAM channels'):
        sweep_histogram(cams, torch.zeros(4, 5).long(), default_thresholds(), 7)
    with pytest.raises(ValueError, match='gt labels'):
        sweep_histogram(cams, torch.full((4, 5), 9), default_thresholds(), 5)


def test_recall_fp_auc_definition():
    # ascending thresholds: fp (0.5, 0.2, 0.0), recall (0.9, 0.6, 0.3)
    recall = torch.tensor([0.9, 0.6, 0.3], dtype=torch.float64)
    fp = torch.tensor([0.5, 0.2, 0.0], dtype=torch.float64)
    xs = [0.0, 0.0, 0.2, 0.5, 1.0]
    ys = [0.0, 0.3, 0.6, 0.9, 0.95]
    expected = sum(
        (xs[i + 1] - xs[i]) * (ys[i + 1] + ys[i]) / 2 for i in range(len(xs) - 1)
    )
    got = recall_fp_auc(recall, fp, torch.tensor(0.95, dtype=torch.float64))
    assert got == pytest.approx(expected)
