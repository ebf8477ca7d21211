import numpy as np
import pytest
import torch

from acr_plugin.evaluation.multilabel_f1_metric import MultiLabelF1Metric


def reference_f1(probs, labels, thr):
    pred = probs > thr
    tp = np.logical_and(pred, labels).sum()
    fp = np.logical_and(pred, ~labels).sum()
    fn = np.logical_and(~pred, labels).sum()
    micro = 2 * tp / (2 * tp + fp + fn)
    macro = []
    for c in range(labels.shape[1]):
        if labels[:, c].any():
            t = np.logical_and(pred[:, c], labels[:, c]).sum()
            f = np.logical_and(pred[:, c], ~labels[:, c]).sum()
            n = np.logical_and(~pred[:, c], labels[:, c]).sum()
            macro.append(2 * t / (2 * t + f + n))
    return 100 * micro, 100 * np.mean(macro)


def test_f1_matches_reference_over_batches():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(37, 6)).astype(np.float32)
    labels = rng.random((37, 6)) > 0.6
    labels[:, 5] = False  # a class never present is left out of the macro mean
    metric = MultiLabelF1Metric()
    for start in range(0, 37, 8):
        samples = [
            dict(
                pred_img_logits=torch.from_numpy(logits[i]),
                img_labels=torch.from_numpy(labels[i].astype(np.float32)),
            )
            for i in range(start, min(start + 8, 37))
        ]
        metric.process({}, samples)
    assert len(metric.results) == 1
    out = metric.evaluate(37)
    micro, macro = reference_f1(1 / (1 + np.exp(-logits)), labels, 0.5)
    assert out['cls_f1_micro'] == pytest.approx(micro, abs=0.01)
    assert out['cls_f1_macro'] == pytest.approx(macro, abs=0.01)


def test_f1_needs_predictions():
    metric = MultiLabelF1Metric()
    with pytest.raises(KeyError, match='pred_img_logits'):
        metric.process({}, [dict(img_labels=torch.ones(3))])
